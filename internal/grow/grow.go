package grow

// To is s with capacity for at least n elements, its elements kept: s itself when it has the
// room, else a copy into a new array of max(n, 2·cap(s)). A nil s stays nil (an absent column).
func To[T any](s []T, n int) []T {
	if s == nil || cap(s) >= n {
		return s
	}
	ns := make([]T, len(s), max(n, 2*cap(s)))
	adviseHuge(ns)
	copy(ns, s)
	return ns
}

// Len is s with length n: s's array when it has the room, else a new one (contents not kept,
// not cleared when reused).
func Len[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s[:n]
	}
	ns := make([]T, n)
	adviseHuge(ns)
	return ns
}

// Cap is To for a column that is always present: a nil s gets a new array of n too.
func Cap[T any](s []T, n int) []T {
	if s == nil {
		ns := make([]T, 0, n)
		adviseHuge(ns)
		return ns
	}
	return To(s, n)
}
