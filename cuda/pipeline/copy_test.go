package pipeline

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// parallelCopy copies every byte whatever the split: below one piece, across pieces with an odd
// remainder, with more threads than pieces.
func TestParallelCopy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, copyPiece - 1, copyPiece, 3*copyPiece + 12345} {
		src := make([]byte, n)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		for _, threads := range []int{1, 2, 3, 8} {
			dst := make([]byte, n)
			parallelCopy(dst, src, threads)
			if !bytes.Equal(dst, src) {
				t.Errorf("%d bytes with %d threads: the copy differs", n, threads)
			}
		}
	}
}
