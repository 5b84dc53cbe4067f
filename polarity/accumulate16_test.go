package polarity

import (
	"math"
	"math/rand/v2"
	"testing"
)

// bits16 is a random 16-bit logit: bfloat16 (the top half of a float32) or float16, finite and
// moderate mostly, subnormal sometimes, with the specials the case asks for.
func bits16(rng *rand.Rand, bf16 bool, special uint16, rate int) uint16 {
	if special != 0 && rng.IntN(rate) == 0 {
		return special
	}
	if bf16 {
		return uint16(math.Float32bits(float32(rng.NormFloat64()*4)) >> 16)
	}
	exp := uint16(max(0, min(30, 15+int(rng.NormFloat64()*3))))
	return uint16(rng.IntN(2))<<15 | exp<<10 | uint16(rng.IntN(1024))
}

// TestAccumulate16: every kernel's accumulate16 gives what decoding the block and then
// accumulate give, bit for bit, and the same decoded block: at every length up to a block,
// with −Inf, NaN and +Inf among the values and blocks of −Inf only (AVX-512 takes the lane
// maxima while it decodes; the others decode and accumulate).
func TestAccumulate16(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	type special struct {
		name     string
		f16, b16 uint16
		rate     int
	}
	specials := []special{{"finite", 0, 0, 1}, {"with −Inf", 0xfc00, 0xff80, 5}, {"all −Inf", 0xfc00, 0xff80, 1},
		{"with NaN", 0x7e00, 0x7fc0, 3000}, {"with +Inf", 0x7c00, 0x7f80, 3000}, {"with −0", 0x8000, 0x8000, 7}}
	for _, k := range Kernels() {
		for _, n := range []int{1, 15, 16, 17, 63, 64, 65, 100, 4095, 4096} {
			for _, bf16 := range []bool{false, true} {
				for _, sp := range specials {
					for _, tau := range []float64{1, 0.7} {
						src := make([]uint16, n)
						for i := range src {
							s := sp.f16
							if bf16 {
								s = sp.b16
							}
							src[i] = bits16(rng, bf16, s, sp.rate)
						}
						bk := newBlockKernel(k, 1/tau)
						got := make([]float32, n)
						gs := bk.accumulate16(got, src, bf16)
						want := make([]float32, n)
						if bf16 {
							decodeBFloat16Generic(want, src)
						} else {
							decodeFloat16Generic(want, src)
						}
						ws := newBlockKernel(k, 1/tau).accumulate(want)
						for i := range want {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%v, n %d, bf16 %v, %s: element %d decoded as %v; want %v", k, n, bf16, sp.name, i, got[i], want[i])
							}
						}
						same := math.Float32bits(gs.Max) == math.Float32bits(ws.Max)
						if math.Abs(float64(ws.Max)) <= math.MaxFloat32 { // else only Max is used
							for _, q := range [][2]float64{{gs.Rest, ws.Rest}, {gs.S1, ws.S1}, {gs.S2, ws.S2}, {gs.S3, ws.S3}} {
								same = same && math.Float64bits(q[0]) == math.Float64bits(q[1])
							}
						}
						if !same {
							t.Fatalf("%v, n %d, bf16 %v, %s, τ %v: %+v; want %+v", k, n, bf16, sp.name, tau, gs, ws)
						}
					}
				}
			}
		}
	}
}
