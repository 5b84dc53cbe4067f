//go:build amd64 && !noasm

package polarity

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMaxLanes: the tree of maxLanes gives the chained builtin max bit for bit, NaN, ±0 and
// ±Inf included, wherever in the 16 lanes they sit.
func TestMaxLanes(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	negZero := float32(math.Copysign(0, -1))
	specials := []float32{nan, inf, -inf, 0, negZero, 1, -1, math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}
	rng := rand.New(rand.NewPCG(3, 4))
	var cases [][16]float32
	for _, s := range specials {
		for lane := range 16 {
			for _, fill := range []float32{-inf, 0, negZero, -1} {
				var l [16]float32
				for i := range l {
					l[i] = fill
				}
				l[lane] = s
				cases = append(cases, l)
			}
		}
	}
	for range 2000 {
		var l [16]float32
		for i := range l {
			if rng.IntN(8) == 0 {
				l[i] = specials[rng.IntN(len(specials))]
			} else {
				l[i] = float32(rng.NormFloat64() * 3)
			}
		}
		cases = append(cases, l)
	}
	for _, l := range cases {
		want := float32(math.Inf(-1))
		for _, z := range l {
			want = max(want, z)
		}
		if got := maxLanes(&l); math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
			t.Errorf("maxLanes(%v) = %v, the chain of max gives %v", l, got, want)
		}
	}
}
