package polarity

import "math"

// Sums is the streaming state of docs/MATH.md §3 for one row (or one chunk of a row), in float64.
//
// With M the running maximum of u and v_j = u_j − M ≤ 0 it holds
//
//	s0 = Σ e^{v} = 1 + Rest     S1 = Σ e^{v}·v  (≤ 0)
//	S2 = Σ e^{2v}               S3 = Σ e^{2v}·v (≤ 0)
//
// s0 is kept as 1 + Rest, where the 1 is the contribution of one element that attains M and
// Rest that of all the others, so that log s0 = log1p(Rest) keeps its full relative precision
// on a peaked row (there Rest ≈ 1e-10 and 1 + Rest would round it away).
//
// The empty state has M = −Inf and every sum 0; use EmptySums (the zero value is not empty: it
// is the state of the single element u = 0). Elements equal to −Inf contribute nothing.
// Sums are merged associatively (Merge), in any order and grouping, which is what blocks,
// warps and vocabulary shards of the engines do.
type Sums struct {
	M      float64 // running maximum of u; −Inf for the empty state
	Rest   float64 // s0 − 1 ≥ 0
	S1, S2 float64 // Σ e^{v}·v, Σ e^{2v}
	S3     float64 // Σ e^{2v}·v
}

// EmptySums is the state of no elements (M = −Inf).
func EmptySums() Sums { return Sums{M: math.Inf(-1)} }

// Empty reports whether s holds no element with u > −Inf.
func (s Sums) Empty() bool { return math.IsInf(s.M, -1) }

// Add folds the element u into s. u = −Inf contributes nothing; u must not be NaN or +Inf
// (engines check their input before it reaches the sums).
func (s *Sums) Add(u float64) {
	if math.IsInf(u, -1) {
		return
	}
	if s.Empty() {
		*s = Sums{M: u, S2: 1}
		return
	}
	if u <= s.M {
		v := u - s.M
		e := math.Exp(v)
		e2 := e * e
		s.Rest += e
		s.S1 += e * v
		s.S2 += e2
		s.S3 += e2 * v
		return
	}
	// New maximum: rescale the old sums to the new shift (d = M − u < 0), then add u with v = 0.
	d := s.M - u
	r := math.Exp(d)
	s0 := 1 + s.Rest
	s.S1 = r * (s.S1 + d*s0)
	s.S3 = r * r * (s.S3 + d*s.S2)
	s.S2 = r*r*s.S2 + 1
	s.Rest = r * s0
	s.M = u
}

// Merge folds the state o (of a disjoint set of elements) into s.
func (s *Sums) Merge(o Sums) {
	if o.Empty() {
		return
	}
	if s.Empty() {
		*s = o
		return
	}
	hi, lo := *s, o
	if lo.M > hi.M {
		hi, lo = lo, hi
	}
	// The 1 of hi's s0 stays the row's "1"; lo's whole s0 = 1 + Rest joins Rest.
	d := lo.M - hi.M // ≤ 0
	r := math.Exp(d)
	r2 := r * r
	lo0 := 1 + lo.Rest
	*s = Sums{
		M:    hi.M,
		Rest: hi.Rest + r*lo0,
		S1:   hi.S1 + r*(lo.S1+d*lo0),
		S2:   hi.S2 + r2*lo.S2,
		S3:   hi.S3 + r2*(lo.S3+d*lo.S2),
	}
}

// RowStats are the row quantities of docs/MATH.md §1–§3 that do not depend on the sampled token.
type RowStats struct {
	M         float64 // max_j u_j
	LogS0     float64 // log Σ e^{u_j − M} = L − M ≥ 0
	MeanShift float64 // μ − M = s1/s0 ≤ 0
	L         float64 // logsumexp(u)
	Mu        float64 // μ = E_π[u]
	H         float64 // entropy, nats
	C         float64 // distributional correction Σ π_j² (u_j − μ)
	SumPi2    float64 // Σ π_j²
}

// Finalize turns the sums into the row statistics. The state must not be empty: a row with no
// element above −Inf has no distribution (engines report it as a data error).
//
// H = log s0 − s1/s0 is the sum of two non-negative terms, so it keeps its relative precision
// even where H ≈ 1e-10. C = (S3 − (s1/s0)·S2)/s0² subtracts two terms of the same sign: its
// absolute error is a few ulps of (|S3| + |s1/s0|·S2)/s0².
func (s Sums) Finalize() RowStats {
	s0 := 1 + s.Rest
	logS0 := vlog1p(s.Rest) // vlog1p and vexp, as statsRun (bit for bit)
	shift := s.S1 / s0
	return RowStats{
		M:         s.M,
		LogS0:     logS0,
		MeanShift: shift,
		L:         s.M + logS0,
		Mu:        s.M + shift,
		H:         logS0 - shift,
		C:         (s.S3 - shift*s.S2) / (s0 * s0),
		SumPi2:    s.S2 / (s0 * s0),
	}
}

// Sampled returns log π_a and S_a = π_a (u_a − μ) for the sampled token's scaled logit
// ua = z_a/τ. Both are computed from ua − M (exact when u_a attains the maximum) so that on a
// peaked row S_a of the dominant token is not lost to cancellation in u_a − μ. ua = −Inf gives
// log π_a = −Inf and S_a = 0, its limit.
func (r RowStats) Sampled(ua float64) (logpi, sampled float64) {
	if math.IsInf(ua, -1) {
		return math.Inf(-1), 0
	}
	va := ua - r.M
	logpi = va - r.LogS0
	return logpi, vexp(logpi) * (va - r.MeanShift)
}
