package papoio

import (
	"math/rand/v2"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/bitutil"
)

// TestUnpackBits: every bit of random bitmaps at every offset and length up to a few bytes
// past a word, against bitutil.BitIsSet, without writing past dst.
func TestUnpackBits(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	bm := make([]byte, 40)
	for i := range bm {
		bm[i] = byte(rng.Uint32())
	}
	bm[3], bm[4] = 0xff, 0 // all-ones and all-zeros bytes
	for off := range 17 {
		for n := range 8*len(bm) - off {
			dst := make([]bool, n+1)
			dst[n] = true // the guard: unpackBits must not touch it
			unpackBits(dst[:n], bm, off)
			for i := range n {
				if want := bitutil.BitIsSet(bm, off+i); dst[i] != want {
					t.Fatalf("off %d, n %d: bit %d is %v; want %v", off, n, i, dst[i], want)
				}
			}
			if !dst[n] {
				t.Fatalf("off %d, n %d: wrote past the end", off, n)
			}
		}
	}
}
