package polarity

import "math"

// blockLen is the number of logits the CPU engine hands to a kernel at a time: 16 KiB of
// float32, so that the block's second read (the accumulation after the max) hits L1, the
// per-block float64 merge (one math.Exp) and the call are amortised over 4,096 elements, and one
// assembly call (which Go cannot preempt) stays near a microsecond.
const blockLen = 4096

// blockSums is the docs/MATH.md §3 state of one block of raw logits x, relative to the block's own
// maximum. See accumulateBlock.
type blockSums struct {
	Max  float32 // max_j x_j; −Inf when every x_j is −Inf
	Rest float64 // Σ_{j≠j*} e^{v_j}, v_j = (x_j − Max)/τ; j* is one index with x_j* = Max
	S1   float64 // Σ e^{v_j}·v_j (≤ 0)
	S2   float64 // Σ e^{2v_j}, the 1 of j* included
	S3   float64 // Σ e^{2v_j}·v_j (≤ 0)
}

// accumulateBlockGeneric is the pure-Go implementation of accumulateBlock, the CPU engine's
// hot loop, and the reference any other implementation is tested against (TestBlockVariant).
//
// The contract of accumulateBlock(x, invTau), for every Kernel: it computes the docs/MATH.md §3
// sums of one block of raw logits x (1 ≤ len(x), normally blockLen) at invTau = 1/τ. The
// assembly kernels (kernel_amd64.go/.s, built unless the noasm tag is set) are chosen at run
// time by the processor's features (kernel.go); tests run every kernel the processor has
// against this one.
//
//   - Max is the block maximum of x. A NaN or +Inf in x must show in the result: Max is NaN or
//     +Inf, or Rest is NaN (the caller then finds the element and reports it). If every element
//     is −Inf (and none is NaN), Max = −Inf and the sums are ignored: the block is empty.
//   - v_j = (x_j − Max)/τ, clamped below at −104 (so −Inf elements give 0, never NaN). Here v and
//     the exponential's range reduction are float64, so v's size adds no error. A float32
//     variant rounds v: each rounding moves e^{v} by |v|·2^-24 relative, ~1e-6 for the |v| ≈ 40
//     that carry H on a peaked row; it must not use a plain float32(1/τ), whose error has the
//     same sign for every element (2.4e-6 of H, systematic, on the peaked row at τ = 0.7), but
//     1/τ as float32 Hi + Lo, or d·(1/τ) with d = x − Max in float64 lanes.
//   - e^{v} within 3·2^-24 relative and e^{2v} within 7·2^-24 (TestBlockExponential), each
//     exactly 0 where it would be below 2^-125 (v ≲ −86.6 for e^{v}, v ≲ −43.3 for e^{2v}): no
//     subnormal ever reaches the arithmetic (slow on some CPUs), −Inf elements contribute exactly
//     0, and the dropped terms move s0 ≥ 1 and S2 ≥ 1 by less than V·2^-118.
//   - Rest excludes exactly one element attaining Max (other ties each add e^0 = 1), so that the
//     caller keeps s0 = 1 + Rest and takes log1p(Rest): on a peaked row Rest ≈ 1e-10 would be
//     lost in a float32 sum that included the 1.
//   - Partial sums in float64 (as here and in the assembly variants); float32 lanes would add a
//     relative error of up to n·2^-24 for n terms per lane (~√n·2^-24 typical).
//
// The caller merges the block state into the row's float64 Sums (M = Max/τ in float64).
//
// Speed (2-core CI machine, one core): this pure-Go version ~0.17 G logits/s (0.7 GB/s of
// float32): its exponential costs ~15–20 cycles per element (several interleaved accumulator
// sets spill registers and measured slower). The AVX2 kernel is ~6.5× faster (bench/RESULTS.md).
func accumulateBlockGeneric(x []float32, invTau float64) blockSums {
	if len(x) == 0 {
		panic("polarity: accumulateBlock of an empty block")
	}
	mx, at := blockArgMax(x)
	switch {
	case mx > math.MaxFloat32 || mx != mx:
		return blockSums{Max: mx}
	case mx < -math.MaxFloat32: // every element −Inf, or −Inf and NaN (NaN never wins a >)
		for _, z := range x {
			if z != z {
				return blockSums{Max: z}
			}
		}
		return blockSums{Max: mx}
	}
	lo := accumulateRange(x[:at], mx, invTau)
	hi := accumulateRange(x[at+1:], mx, invTau)
	return blockSums{
		Max:  mx,
		Rest: lo.s0 + hi.s0,
		S1:   lo.s1 + hi.s1,
		S2:   1 + lo.s2 + hi.s2,
		S3:   lo.s3 + hi.s3,
	}
}

// blockArgMax returns the maximum of x (ignoring NaN unless x[0] is NaN) and an index attaining it.
// Two running maxima halve the compare-and-branch chain.
func blockArgMax(x []float32) (float32, int) {
	m0, m1 := x[0], x[0]
	i0, i1 := 0, 0
	j := 0
	for ; j+2 <= len(x); j += 2 {
		if x[j] > m0 {
			m0, i0 = x[j], j
		}
		if x[j+1] > m1 {
			m1, i1 = x[j+1], j+1
		}
	}
	if j < len(x) && x[j] > m0 {
		m0, i0 = x[j], j
	}
	if m1 > m0 {
		m0, i0 = m1, i1
	}
	return m0, i0
}

type rangeSums struct{ s0, s1, s2, s3 float64 }

// The exponential: e^v = 2^q · 2^(j/64) · e^r with k = round(v·64/ln2) = 64q + j and
// r = v − k·ln2/64 ∈ [−ln2/128, ln2/128]. The reduction runs in float64 (Cody-Waite: ln2/64 split
// into expLn2Hi, whose 21 significant bits make k·expLn2Hi exact, and expLn2Lo), so r carries no
// error from v's size; e^r is the float32 Taylor polynomial 1 + r + r²/2 + r³/6 (within
// r⁴/24 < 4e-11 of e^r) times the float32 table entry 2^(j/64). The error is three float32
// roundings of values in [1, 2): ≤ 3·2^-24, whatever v.
const (
	expTableBits = 6
	expTableLen  = 1 << expTableBits
	expScaleK    = 92.33248261689366 // 64/ln2
	expRound     = 0x1.8p52          // (x + expRound) − expRound rounds |x| < 2^51 to an integer
	expFloor     = -104              // lower clamp of v: e^{-104} < 2^-149; −Inf becomes −104
	expMinBiased = 2                 // 2^q with a biased exponent below this is taken as 0 (result < 2^-124)
)

var (
	expLn2Hi, expLn2Lo float64
	expTable           [expTableLen]float32 // 2^(j/64), rounded to float32
)

func init() {
	ln2k := math.Ln2 / expTableLen
	expLn2Hi = math.Float64frombits(math.Float64bits(ln2k) &^ (1<<32 - 1))
	expLn2Lo = ln2k - expLn2Hi
	for j := range expTable {
		expTable[j] = float32(math.Exp2(float64(j) / expTableLen))
	}
}

// accumulateRange adds e^{v}, e^{v}·v, e^{2v}, e^{2v}·v over x with v = (x − mx)/τ.
// v = (float64(x) − mx)·(1/τ) is exact but for one float64 rounding. One element per iteration:
// in pure Go, several interleaved accumulator sets spill registers and run slower (measured);
// out-of-order execution overlaps consecutive elements anyway.
func accumulateRange(x []float32, mx float32, invTau float64) rangeSums {
	var s0, s1, s2, s3 float64
	hiLn2, loLn2 := expLn2Hi, expLn2Lo
	table := &expTable
	m := float64(mx)
	for _, z := range x {
		v := (float64(z) - m) * invTau
		if v < expFloor {
			v = expFloor
		}
		kf := v*expScaleK + expRound - expRound
		r := float32(v - kf*hiLn2 - kf*loLn2)
		p := (r*(1.0/6)+0.5)*(r*r) + r + 1
		k := int32(kf)
		t := table[k&(expTableLen-1)] * p
		q := k >> expTableBits
		e := float64(t * pow2(q+127))
		e2 := float64((t * t) * pow2(2*q+127))
		s0 += e
		s1 += e * v
		s2 += e2
		s3 += e2 * v
	}
	return rangeSums{s0, s1, s2, s3}
}

// pow2 is 2^(b−127) for a biased exponent b ≤ 254, and 0 for b < expMinBiased.
func pow2(b int32) float32 {
	keep := ^((b - expMinBiased) >> 31) // all ones when b ≥ expMinBiased
	return math.Float32frombits(uint32(b&keep) << 23)
}
