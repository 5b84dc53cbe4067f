package grow

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeBytes is the smallest array that is offered transparent huge pages.
const hugeBytes = 8 << 20

// adviseHuge asks the kernel to back the 2 MiB pages inside s's array with transparent huge
// pages (madvise MADV_HUGEPAGE; with THP set to "madvise", as on most distributions, memory is
// otherwise faulted in 4 KiB at a time: a 4M-row step's 243 MB is about 60,000 page faults). The array
// is fresh from make, not touched yet. Advice refused is advice not taken: the memory works the same.
func adviseHuge[T any](s []T) {
	var zero T
	n := uintptr(cap(s)) * unsafe.Sizeof(zero)
	if n < hugeBytes {
		return
	}
	const page = 2 << 20
	p := unsafe.Pointer(unsafe.SliceData(s[:1]))
	start := uintptr(p)
	lo, hi := (start+page-1)&^(page-1), (start+n)&^(page-1)
	if hi <= lo {
		return
	}
	_ = unix.Madvise(unsafe.Slice((*byte)(unsafe.Add(p, lo-start)), hi-lo), unix.MADV_HUGEPAGE)
}
