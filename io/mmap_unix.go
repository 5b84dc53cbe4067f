//go:build unix

package papoio

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// mapFile maps the first size bytes of f read-only. The mapping shares the page cache: reading
// a record batch from it neither copies nor allocates, whatever the batch's size. The function
// it returns removes the mapping (unmapFile).
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	if size <= 0 || int64(int(size)) != size {
		return nil, nil, syscall.EINVAL
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return unmapFile(data, runtime.GOMAXPROCS(0)) }, nil
}

// Removing a large mapping is serial work in the kernel, one page-table entry per 4 KiB page
// that the page cache does not hold in 2 MiB folios: 21 ms for a 622 MB file on the Zen 5
// machine of bench/RESULTS.md when two thirds of it were mapped in 4 KiB pages, as much as
// papo analyze's compute on 2 threads. unmapFile splits that work: up to n goroutines drop
// the entries of their piece with madvise(MADV_DONTNEED), which runs concurrently (the
// pieces lie in different page-table pages; on a shared file mapping it only unmaps, the page
// cache keeps the data), and munmap then finds the entries gone. Mappings below
// parallelUnmapMin are unmapped directly.
const (
	parallelUnmapMin   = 64 << 20
	parallelUnmapAlign = 2 << 20 // a page-table page's span on amd64 and arm64 (4 KiB pages)
)

// unmapFile removes the mapping data, on up to n goroutines (see parallelUnmapMin).
func unmapFile(data []byte, n int) error {
	if pieces := unmapPieces(len(data), n); len(pieces) > 1 {
		var wg sync.WaitGroup
		for _, p := range pieces {
			wg.Go(func() {
				// An error leaves the entries for munmap to remove, as without the split.
				_ = syscall.Madvise(data[p[0]:p[1]], syscall.MADV_DONTNEED)
			})
		}
		wg.Wait()
	}
	if err := syscall.Munmap(data); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}

// unmapPieces splits [0, size) into at most n consecutive pieces [start, end) whose inner
// boundaries are multiples of parallelUnmapAlign; none below parallelUnmapMin or for n < 2.
func unmapPieces(size, n int) [][2]int {
	if size < parallelUnmapMin || n < 2 {
		return nil
	}
	piece := (size/n + parallelUnmapAlign - 1) &^ (parallelUnmapAlign - 1)
	var pieces [][2]int
	for start := 0; start < size; start += piece {
		pieces = append(pieces, [2]int{start, min(start+piece, size)})
	}
	return pieces
}
