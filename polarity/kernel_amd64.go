//go:build amd64 && !noasm

package polarity

import (
	"math"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// The AVX2+FMA kernel (kernel_amd64.s), for processors with AVX2, FMA and F16C, and the AVX-512F
// kernel, the same arithmetic in sixteen lanes with its constants in registers and its cutoffs
// as opmasks (for processors with AVX-512F and POPCNT).
//
// Each keeps accumulateBlockGeneric's contract with float32 arithmetic throughout, eight logits
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
//   - The sums run in float32 lanes for 64 logits (AVX-512: 128), eight terms a lane, then are
//     widened to float64: the lane sums add at most 7·2^-24 relative (a sum of eight same-sign terms),
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
	case KernelAVX512:
		return cpu.X86.HasAVX512F && cpu.X86.HasPOPCNT
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

// asmSums is what the sums kernels write: the float64 lane sums of e, e·v, e², e²·v (the AVX2
// kernel fills lanes 0–3), and the count of elements equal to the block maximum (per lane for
// AVX2; the AVX-512 kernel writes its total to Ties[0]). Lanes a kernel does not write stay 0.
type asmSums struct {
	S    [4][8]float64
	Ties [16]int32
}

//go:noescape
func sumsAVX2(x *float32, n int, p *avx2Params, out *asmSums, pf uintptr, unitTau bool)

//go:noescape
func maxAVX2(x *float32, n int, lanes *[16]float32)

//go:noescape
func decodeFloat16F16C(dst *float32, src *uint16, n int)

//go:noescape
func decodeBFloat16AVX2(dst *float32, src *uint16, n int)

//go:noescape
func sumsAVX512(x *float32, n int, p *avx2Params, out *asmSums, pf uintptr, unitTau bool)

//go:noescape
func maxAVX512(x *float32, n int, lanes *[16]float32)

//go:noescape
func decodeFloat16AVX512(dst *float32, src *uint16, n int)

//go:noescape
func decodeBFloat16AVX512(dst *float32, src *uint16, n int)

//go:noescape
func decodeMax16AVX512(dst *float32, src *uint16, n int, lanes *[16]float32, bf16 bool)

// asmState is an assembly kernel's per-worker state.
type asmState struct {
	p       avx2Params
	unitTau bool
	wide    bool    // the AVX-512 kernel (sixteen lanes), else AVX2 (eight)
	next    uintptr // where the block after this one starts (prefetched during the sums)
}

func fill[T any](a []T, v T) {
	for i := range a {
		a[i] = v
	}
}

// minimax coefficients of e^r (kernel_amd64.go's comment), float32 bits.
var expPoly = [...]uint32{0x3efffffe, 0x3e2aaa06, 0x3d2aac20, 0x3c093726, 0x3ab5706f} // C2 … C6

func (a *asmState) init(k Kernel, invTau float64) {
	a.wide = k == KernelAVX512
	p := &a.p
	tau := 1 / invTau
	a.unitTau = invTau == 1
	fill(p.Log2e[:], float32(math.Log2E*invTau))
	clamp, c2 := float32(asmCutoff*tau), float32(asmCutoff2*tau)
	fill(p.Clamp[:], clamp)
	fill(p.T1[:], int32(math.Float32bits(clamp))-1)
	fill(p.T2[:], int32(math.Float32bits(c2))-1)
	fill(p.Magic[:], 0x1.8p23+127)
	hi := float32(math.Ln2)
	fill(p.NegLn2Hi[:], -hi)
	fill(p.NegLn2Lo[:], -float32(math.Ln2-float64(hi)))
	short := math.Float32frombits(math.Float32bits(hi) &^ 0xff)
	fill(p.NegLn2Short[:], -short)
	fill(p.NegLn2Rest[:], -float32(math.Ln2-float64(short)))
	for i, c := range []*[8]float32{&p.C2, &p.C3, &p.C4, &p.C5, &p.C6} {
		fill(c[:], math.Float32frombits(expPoly[i]))
	}
	fill(p.One[:], 1)
	th := float32(invTau)
	fill(p.TauHi[:], th)
	fill(p.TauLo[:], float32(invTau-float64(th)))
}

func (a *asmState) accumulate(x []float32, invTau float64) blockSums {
	width := 8
	if a.wide {
		width = 16
	}
	n := len(x) &^ (width - 1)
	next := a.next
	a.next = 0
	if n == 0 {
		return accumulateBlockGeneric(x, invTau)
	}
	var lanes [16]float32
	fill(lanes[:], float32(math.Inf(-1)))
	if a.wide { // direct calls: through a func value, lanes and out would escape to the heap
		maxAVX512(&x[0], n, &lanes)
	} else {
		maxAVX2(&x[0], n, &lanes)
	}
	return a.fromLanes(x, n, invTau, next, &lanes)
}

// accumulate16 decodes the float16 (bf16 false) or bfloat16 block src into dst and returns
// accumulate(dst): with AVX-512 the decode also takes the block's lane maxima
// (decodeMax16AVX512), so that the block is not read again for them; the same lanes, so the
// same sums bit for bit (TestAccumulate16).
func (a *asmState) accumulate16(dst []float32, src []uint16, bf16 bool, invTau float64) blockSums {
	n := len(dst) &^ 15
	if !a.wide || n == 0 {
		a.decode16(dst, src, bf16)
		return a.accumulate(dst, invTau)
	}
	src = src[:len(dst)]
	var lanes [16]float32
	fill(lanes[:], float32(math.Inf(-1)))
	decodeMax16AVX512(&dst[0], &src[0], n, &lanes, bf16)
	decode16Generic(dst[n:], src[n:], bf16)
	next := a.next
	a.next = 0
	return a.fromLanes(dst, n, invTau, next, &lanes)
}

// fromLanes is accumulate after the maximum pass: lanes are the lane maxima of x[:n] (n > 0,
// a multiple of the width), and next the block to prefetch (0: none).
func (a *asmState) fromLanes(x []float32, n int, invTau float64, next uintptr, lanes *[16]float32) blockSums {
	width := 8
	if a.wide {
		width = 16
	}
	ninf := float32(math.Inf(-1))
	mx := maxLanes(lanes)
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
	fill(a.p.M[:], mx)
	fill(a.p.NegM[:], -mx)
	var out asmSums
	if next == 0 {
		next = uintptr(unsafe.Pointer(&x[0])) // already in L1
	}
	a.sums(&x[0], n, &out, next)
	var s [4]float64
	ties := 0
	add := func(o *asmSums) {
		for k := range s {
			l := &o.S[k]
			s[k] += ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
		}
		for _, t := range o.Ties {
			ties += int(t)
		}
	}
	add(&out)
	if n < len(x) { // the tail, padded with −Inf (which contributes exactly 0)
		var tail [16]float32
		fill(tail[:], ninf)
		copy(tail[:], x[n:])
		out = asmSums{}
		a.sums(&tail[0], width, &out, uintptr(unsafe.Pointer(&tail[0])))
		add(&out)
	}
	bs := blockSums{Max: mx, Rest: s[0] + float64(ties-1), S1: s[1], S2: s[2] + float64(ties), S3: s[3]}
	if bs.S1 != bs.S1 {
		bs.Rest = bs.S1 // a NaN among the logits
	}
	return bs
}

// maxLanes is the largest of the 16 lanes, as the builtin max folds them (NaN wins, +0 over
// −0: the result does not depend on the order), in a tree of depth 4 instead of a chain of 16
// dependent maxima (half of accumulate's own time in a papo analyze profile).
func maxLanes(l *[16]float32) float32 {
	var m [8]float32
	for i := range m {
		m[i] = max(l[i], l[i+8])
	}
	a, b, c, d := max(m[0], m[4]), max(m[1], m[5]), max(m[2], m[6]), max(m[3], m[7])
	return max(max(a, c), max(b, d))
}

func (a *asmState) sums(x *float32, n int, out *asmSums, pf uintptr) {
	if a.wide {
		sumsAVX512(x, n, &a.p, out, pf, a.unitTau)
	} else {
		sumsAVX2(x, n, &a.p, out, pf, a.unitTau)
	}
}

// prefetch names the start of the block the caller reads after the next accumulate, which
// that call's sums then prefetch: the maximum pass of a block read from memory is otherwise
// memory-bound while the sums (from L1) leave the memory idle (bench/RESULTS.md).
func (a *asmState) prefetch(next unsafe.Pointer) { a.next = uintptr(next) }

// decode16 is blockKernel.decode16 in assembly.
func (a *asmState) decode16(dst []float32, src []uint16, bf16 bool) {
	switch {
	case bf16 && a.wide:
		decodeBulk(dst, src, 16, decodeBFloat16AVX512, decodeBFloat16Generic)
	case bf16:
		decodeBulk(dst, src, 8, decodeBFloat16AVX2, decodeBFloat16Generic)
	case a.wide:
		decodeBulk(dst, src, 16, decodeFloat16AVX512, decodeFloat16Generic)
	default:
		decodeBulk(dst, src, 8, decodeFloat16F16C, decodeFloat16Generic)
	}
}

// decodeBulk converts the multiple-of-width head of src with the assembly loop and the rest in
// Go.
func decodeBulk(dst []float32, src []uint16, width int, head func(*float32, *uint16, int), tail func([]float32, []uint16)) {
	src = src[:len(dst)]
	n := len(dst) &^ (width - 1)
	if n > 0 {
		head(&dst[0], &src[0], n)
	}
	tail(dst[n:], src[n:])
}
