//go:build amd64 && !noasm

package polarity

import (
	"math"

	"golang.org/x/sys/cpu"
)

// The AVX2+FMA kernel (kernel_amd64.s), for processors with AVX2, FMA and F16C.
//
// It keeps accumulateBlockGeneric's contract with float32 arithmetic throughout, eight logits
// at a time, and is accurate as follows (TestBlockExponential, TestBlockAgainstFloat64):
//
//   - s = x − Max is exact as the float32 pair s + err (Knuth's TwoSum), so v carries no
//     error from the size of x or Max: r = v − n·ln2 is formed with every product exact inside
//     an FMA and rounded at the size of r (|r| ≤ ln2/2), an absolute error of v below 2^-25.
//     At τ ≠ 1 the products s·(1/τ) use 1/τ as float32 Hi + Lo: no systematic error.
//   - e^r = 1 + r(1 + r(c2 + r(c3 + r(c4 + r(c5 + r·c6))))), a minimax fit on |r| ≤ 0.35 within
//     0.33·2^-24 of e^r with its float32 coefficients; with the roundings, e^{v} is within
//     3·2^-24 relative and e^{2v} = e^{v}·e^{v} within 7·2^-24, as for the generic kernel.
//   - e^{v} is 0 where v ≤ −86.5 (e^{v} < 2^-124.8) and e^{2v} where v ≤ −43.5 (e^{2v} <
//     2^-125.5): no subnormal reaches the arithmetic and −Inf contributes exactly 0.
//   - The sums run in float32 lanes for 64 logits (eight terms a lane), then are widened to
//     float64: the lane sums add at most 7·2^-24 relative (a sum of eight same-sign terms),
//     which is what float32 accumulation costs and float64 lanes (half the width) would not.
//   - Elements equal to Max (v = +0) are counted, not summed, as in the generic kernel, so
//     Rest keeps its relative precision on peaked rows.
//
// A NaN is passed over by the maximum and makes S1 (and so Rest) NaN; +Inf makes Max +Inf.

func kernelSupported(k Kernel) bool {
	switch k {
	case KernelGo:
		return true
	case KernelAVX2:
		return cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C
	}
	return false
}

// Cutoffs of v below which e^{v} and e^{2v} are taken as 0 (see above).
const (
	asmCutoff  = -86.5
	asmCutoff2 = -43.5
)

// avx2Params are the kernel's constants, eight lanes each; the layout is kernel_amd64.s's.
type avx2Params struct {
	M, NegM      [8]float32 // the block maximum, set per block
	Log2e        [8]float32 // log2(e)/τ
	T1, T2       [8]int32   // bits of the cutoffs of s = x − Max, less 1 (signed comparison)
	Clamp        [8]float32 // lower clamp of s: asmCutoff·τ
	Magic        [8]float32 // 1.5·2^23 + 127
	NegLn2Hi     [8]float32 // −ln2 as float32 Hi + Lo
	NegLn2Lo     [8]float32
	C6, C5, C4   [8]float32 // e^r ≈ 1 + r(1 + r(C2 + r(C3 + r(C4 + r(C5 + r·C6)))))
	C3, C2, One  [8]float32
	TauHi, TauLo [8]float32 // 1/τ as float32 Hi + Lo
	NegLn2Short  [8]float32 // −ln2 to 16 bits (n·ln2_short exact), and the rest
	NegLn2Rest   [8]float32
}

// avx2Sums is what sumsAVX2 writes: the float64 lane sums of e, e·v, e², e²·v, and the count
// of elements equal to the block maximum per lane.
type avx2Sums struct {
	S    [4][4]float64
	Ties [8]int32
}

//go:noescape
func sumsAVX2(x *float32, n int, p *avx2Params, out *avx2Sums, unitTau bool)

//go:noescape
func maxAVX2(x *float32, n int, lanes *[8]float32)

//go:noescape
func decodeFloat16F16C(dst *float32, src *uint16, n int)

//go:noescape
func decodeBFloat16AVX2(dst *float32, src *uint16, n int)

// asmState is the AVX2 kernel's per-worker state.
type asmState struct {
	p       avx2Params
	unitTau bool
}

func fill[T any](a *[8]T, v T) {
	for i := range a {
		a[i] = v
	}
}

// minimax coefficients of e^r (kernel_amd64.go's comment), float32 bits.
var expPoly = [...]uint32{0x3efffffe, 0x3e2aaa06, 0x3d2aac20, 0x3c093726, 0x3ab5706f} // C2 … C6

func (a *asmState) init(invTau float64) {
	p := &a.p
	tau := 1 / invTau
	a.unitTau = invTau == 1
	fill(&p.Log2e, float32(math.Log2E*invTau))
	clamp, c2 := float32(asmCutoff*tau), float32(asmCutoff2*tau)
	fill(&p.Clamp, clamp)
	fill(&p.T1, int32(math.Float32bits(clamp))-1)
	fill(&p.T2, int32(math.Float32bits(c2))-1)
	fill(&p.Magic, 0x1.8p23+127)
	hi := float32(math.Ln2)
	fill(&p.NegLn2Hi, -hi)
	fill(&p.NegLn2Lo, -float32(math.Ln2-float64(hi)))
	short := math.Float32frombits(math.Float32bits(hi) &^ 0xff)
	fill(&p.NegLn2Short, -short)
	fill(&p.NegLn2Rest, -float32(math.Ln2-float64(short)))
	for i, c := range []*[8]float32{&p.C2, &p.C3, &p.C4, &p.C5, &p.C6} {
		fill(c, math.Float32frombits(expPoly[i]))
	}
	fill(&p.One, 1)
	th := float32(invTau)
	fill(&p.TauHi, th)
	fill(&p.TauLo, float32(invTau-float64(th)))
}

func (a *asmState) accumulate(x []float32, invTau float64) blockSums {
	n := len(x) &^ 7
	if n == 0 {
		return accumulateBlockGeneric(x, invTau)
	}
	ninf := float32(math.Inf(-1))
	var lanes [8]float32
	fill(&lanes, ninf)
	maxAVX2(&x[0], n, &lanes)
	mx := ninf
	for _, z := range lanes {
		mx = max(mx, z)
	}
	for _, z := range x[n:] {
		if z > mx {
			mx = z
		}
	}
	switch {
	case mx > math.MaxFloat32:
		return blockSums{Max: mx}
	case mx < -math.MaxFloat32: // every element −Inf or NaN
		for _, z := range x {
			if z != z {
				return blockSums{Max: z}
			}
		}
		return blockSums{Max: mx}
	}
	fill(&a.p.M, mx)
	fill(&a.p.NegM, -mx)
	var out avx2Sums
	sumsAVX2(&x[0], n, &a.p, &out, a.unitTau)
	var s [4]float64
	ties := 0
	add := func(o *avx2Sums) {
		for k := range s {
			s[k] += (o.S[k][0] + o.S[k][1]) + (o.S[k][2] + o.S[k][3])
		}
		for _, t := range o.Ties {
			ties += int(t)
		}
	}
	add(&out)
	if n < len(x) { // the tail, padded with −Inf (which contributes exactly 0)
		var tail [8]float32
		fill(&tail, ninf)
		copy(tail[:], x[n:])
		sumsAVX2(&tail[0], 8, &a.p, &out, a.unitTau)
		add(&out)
	}
	bs := blockSums{Max: mx, Rest: s[0] + float64(ties-1), S1: s[1], S2: s[2] + float64(ties), S3: s[3]}
	if bs.S1 != bs.S1 {
		bs.Rest = bs.S1 // a NaN among the logits
	}
	return bs
}

func asmDecodeFloat16(dst []float32, src []uint16) {
	decodeBulk(dst, src, decodeFloat16F16C, decodeFloat16Generic)
}

func asmDecodeBFloat16(dst []float32, src []uint16) {
	decodeBulk(dst, src, decodeBFloat16AVX2, decodeBFloat16Generic)
}

// decodeBulk converts the multiple-of-8 head of src with the assembly loop and the rest in Go.
func decodeBulk(dst []float32, src []uint16, head func(*float32, *uint16, int), tail func([]float32, []uint16)) {
	src = src[:len(dst)]
	n := len(dst) &^ 7
	if n > 0 {
		head(&dst[0], &src[0], n)
	}
	tail(dst[n:], src[n:])
}
