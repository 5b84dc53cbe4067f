package polarity

import "math"

// blockLen is the number of logits the CPU engine hands to accumulateBlock at a time: 2 KiB of
// float32, so the block's second read (the accumulation after the max) hits L1.
const blockLen = 512

// blockSums is the MATH.md §3 state of one block, relative to the block's own maximum, in the
// block's raw (unscaled) logits. See accumulateBlock.
type blockSums struct {
	Max  float32 // max_j x_j of the raw logits; −Inf when every x_j is −Inf
	Rest float32 // Σ_{j≠j*} e^{v_j}, v_j = (x_j − Max)·scale; j* is one index with x_j* = Max
	S1   float32 // Σ e^{v_j}·v_j
	S2   float32 // Σ e^{2v_j}, the 1 of x_j* included
	S3   float32 // Σ e^{2v_j}·v_j
}

// accumulateBlock computes the MATH.md §3 sums of one block of raw logits x (len(x) ≥ 1,
// normally blockLen) at scale = 1/τ. It is the CPU engine's hot loop; this comment is the
// contract for every implementation of it (the pure-Go accumulateBlockGeneric, and a SIMD or
// assembly variant behind a build tag, which must match the generic one within the accuracy
// stated below and fall back to it where the CPU lacks the instructions):
//
//   - Max is the block maximum of x. If x holds a NaN or +Inf, the result must show it: Max is
//     NaN or +Inf, or Rest is NaN (the caller then finds and reports the element). If every
//     element is −Inf, Max = −Inf and the sums are unspecified (the block is empty).
//   - v_j = (x_j − Max)·scale in float32, clamped below so that −Inf elements give v = −104,
//     never NaN. e^{v} is a float32 exponential with relative error ≤ 2 ulp for v ≥ −87 that
//     returns exactly 0 where the result would be below 2^-125 (v ≲ −86.6), and e^{2v} likewise
//     0 below 2^-125 (v ≲ −43.3): no subnormal operand ever reaches the arithmetic (they are
//     slow on some CPUs) and −Inf elements contribute exactly 0. Dropping terms < 2^-125 changes
//     s0 ≥ 1 and S2 ≥ 1 by less than V·2^-125 ≈ 1e-32 relative.
//   - Rest excludes exactly one element attaining Max (ties each add their e^0 = 1), so that the
//     caller can keep s0 = 1 + Rest in float64 and take log1p(Rest).
//   - The sums are float32 with at least 4 independent partial accumulators (so each adds at most
//     len(x)/4 terms): relative error ≤ ~(len(x)/4)·2^-24 worst case, ~1e-7 typical.
//
// The caller merges the block state into the float64 row state with Sums.Merge (the block
// maximum becomes M = Max·(1/τ) in float64).
func accumulateBlock(x []float32, scale float32) blockSums { return accumulateBlockGeneric(x, scale) }

// Constants of the float32 exponential: Cody-Waite reduction e^v = 2^k·e^r with
// r = v − k·ln2 ∈ [−ln2/2, ln2/2] split as k·ln2Hi (exact for |k| < 2^15) + k·ln2Lo, and
// Cephes' expf minimax polynomial for e^r (relative error < 1 ulp of float32 on that interval).
const (
	expLog2E  = 1.44269504088896341
	expLn2Hi  = 0.693359375
	expLn2Lo  = -2.12194440e-4
	expRound  = 12582912 // 1.5·2^23: x + expRound − expRound rounds |x| < 2^22 to an integer
	expFloor  = -104     // clamp for v: below it e^{v} is 0 anyway; keeps −Inf from making NaN
	expP0     = 1.9875691500e-4
	expP1     = 1.3981999507e-3
	expP2     = 8.3334519073e-3
	expP3     = 4.1665795894e-2
	expP4     = 1.6666665459e-1
	expP5     = 5.0000001201e-1
	expMinBia = 2 // biased exponents below this give 0 (results < 2^-125, possibly subnormal)
)

// accumulateBlockGeneric is the pure-Go accumulateBlock and the reference for any other
// implementation of it.
func accumulateBlockGeneric(x []float32, scale float32) blockSums {
	if len(x) == 0 {
		panic("polarity: accumulateBlock of an empty block")
	}
	// Block maximum with four independent running maxima. The builtin max propagates NaN, so a
	// NaN anywhere makes Max NaN (and +Inf makes it +Inf).
	m0, m1, m2, m3 := x[0], x[0], x[0], x[0]
	j := 0
	for ; j+4 <= len(x); j += 4 {
		m0 = max(m0, x[j])
		m1 = max(m1, x[j+1])
		m2 = max(m2, x[j+2])
		m3 = max(m3, x[j+3])
	}
	for ; j < len(x); j++ {
		m0 = max(m0, x[j])
	}
	mx := max(max(m0, m1), max(m2, m3))
	if !(mx > float32(math.Inf(-1))) || mx > math.MaxFloat32 {
		return blockSums{Max: mx}
	}

	var acc [4]lane
	j = 0
	for ; j+4 <= len(x); j += 4 {
		acc[0].add((x[j] - mx) * scale)
		acc[1].add((x[j+1] - mx) * scale)
		acc[2].add((x[j+2] - mx) * scale)
		acc[3].add((x[j+3] - mx) * scale)
	}
	for ; j < len(x); j++ {
		acc[0].add((x[j] - mx) * scale)
	}
	ties := acc[0].ties + acc[1].ties + acc[2].ties + acc[3].ties
	return blockSums{
		Max:  mx,
		Rest: (acc[0].s0 + acc[1].s0) + (acc[2].s0 + acc[3].s0) + float32(ties-1),
		S1:   (acc[0].s1 + acc[1].s1) + (acc[2].s1 + acc[3].s1),
		S2:   (acc[0].s2 + acc[1].s2) + (acc[2].s2 + acc[3].s2) + float32(ties),
		S3:   (acc[0].s3 + acc[1].s3) + (acc[2].s3 + acc[3].s3),
	}
}

// lane is one of accumulateBlockGeneric's independent partial accumulators. Elements with
// v = 0 (those attaining the block max) are counted in ties instead of s0 and s2.
type lane struct {
	s0, s1, s2, s3 float32
	ties           int32
}

func (l *lane) add(v float32) {
	v = max(v, expFloor)
	if v == 0 {
		l.ties++
		return
	}
	kf := v*expLog2E + expRound - expRound
	r := v - kf*expLn2Hi - kf*expLn2Lo
	p := ((((expP0*r+expP1)*r+expP2)*r+expP3)*r+expP4)*r + expP5
	p = p*(r*r) + r + 1 // e^r
	k := int32(kf)
	e := p * pow2(k+127)
	e2 := (p * p) * pow2(2*k+127)
	l.s0 += e
	l.s1 += e * v
	l.s2 += e2
	l.s3 += e2 * v
}

// pow2 is 2^(b−127) for a biased exponent b ≤ 254, and 0 for b < expMinBia.
func pow2(b int32) float32 {
	keep := ^((b - expMinBia) >> 31) // all ones when b ≥ expMinBia
	return math.Float32frombits(uint32(b&keep) << 23)
}
