//go:build goexperiment.simd && amd64

package polarity

import (
	"math"
	"math/bits"
	"simd/archsimd"
)

// The AVX2+FMA accumulateBlock (GOEXPERIMENT=simd builds). Same contract and same arithmetic as
// accumulateBlockGeneric, eight logits at a time: v and the argument reduction in two float64×4
// halves, the exponential's polynomial and table in float32×8, the sums in float64×4. It differs
// from the generic one only in the table step (2^(j/8), with a degree-4 polynomial on
// |r| ≤ ln2/16, within r⁵/120 < 2e-9 of e^r) and the order of the additions; ~2.5–3× its speed.

// haveBlockVariant: TestBlockVariant compares this with accumulateBlockGeneric.
const haveBlockVariant = true

var useAVX2 = archsimd.X86.AVX2() && archsimd.X86.FMA()

func accumulateBlock(x []float32, invTau float64) blockSums {
	if !useAVX2 || len(x) < 8 {
		return accumulateBlockGeneric(x, invTau)
	}
	mx, bad := simdMax(x)
	switch {
	case bad: // a NaN
		return blockSums{Max: float32(math.NaN())}
	case mx > math.MaxFloat32: // +Inf
		return blockSums{Max: mx}
	case mx < -math.MaxFloat32: // every element −Inf
		return blockSums{Max: mx}
	}
	n := len(x) &^ 7
	s, ties := simdSums(x[:n], mx, invTau)
	if n < len(x) { // the tail, padded with −Inf (which contributes exactly 0)
		var tail [8]float32
		for j := range tail {
			tail[j] = float32(math.Inf(-1))
		}
		copy(tail[:], x[n:])
		t, tt := simdSums(tail[:], mx, invTau)
		s.s0, s.s1, s.s2, s.s3 = s.s0+t.s0, s.s1+t.s1, s.s2+t.s2, s.s3+t.s3
		ties += tt
	}
	// Elements equal to Max were left out of the sums (their 1 would swamp Rest in a lane);
	// one of them is the 1 of s0 = 1 + Rest, the others join Rest.
	return blockSums{
		Max:  mx,
		Rest: s.s0 + float64(ties-1),
		S1:   s.s1,
		S2:   s.s2 + float64(ties),
		S3:   s.s3,
	}
}

// simdMax is the maximum of x (len(x) ≥ 8) and whether x holds a NaN.
func simdMax(x []float32) (float32, bool) {
	m := archsimd.LoadFloat32x8Slice(x)
	nan := m.IsNaN()
	j := 8
	for ; j+8 <= len(x); j += 8 {
		v := archsimd.LoadFloat32x8Slice(x[j:])
		nan = nan.Or(v.IsNaN())
		m = m.Max(v)
	}
	if j < len(x) { // the last 8, overlapping
		v := archsimd.LoadFloat32x8Slice(x[len(x)-8:])
		nan = nan.Or(v.IsNaN())
		m = m.Max(v)
	}
	if nan.ToBits() != 0 {
		return 0, true
	}
	var lanes [8]float32
	m.Store(&lanes)
	mx := lanes[0]
	for _, v := range lanes[1:] {
		if v > mx {
			mx = v
		}
	}
	return mx, false
}

var (
	simdLn2Hi, simdLn2Lo float64    // ln2/8 split: k·simdLn2Hi exact
	simdTable            [8]float32 // 2^(j/8)
)

func init() {
	ln2k := math.Ln2 / 8
	simdLn2Hi = math.Float64frombits(math.Float64bits(ln2k) &^ (1<<32 - 1))
	simdLn2Lo = ln2k - simdLn2Hi
	for j := range simdTable {
		simdTable[j] = float32(math.Exp2(float64(j) / 8))
	}
}

// simdSums accumulates x (len(x) a multiple of 8) relative to mx, leaving out the elements equal
// to mx and returning their count.
func simdSums(x []float32, mx float32, invTau float64) (rangeSums, int) {
	m4 := archsimd.BroadcastFloat64x4(float64(mx))
	inv4 := archsimd.BroadcastFloat64x4(invTau)
	floor4 := archsimd.BroadcastFloat64x4(expFloor)
	k4 := archsimd.BroadcastFloat64x4(8 / math.Ln2)
	negHi := archsimd.BroadcastFloat64x4(-simdLn2Hi)
	negLo := archsimd.BroadcastFloat64x4(-simdLn2Lo)
	c4 := archsimd.BroadcastFloat32x8(1.0 / 24)
	c3 := archsimd.BroadcastFloat32x8(1.0 / 6)
	c2 := archsimd.BroadcastFloat32x8(0.5)
	one := archsimd.BroadcastFloat32x8(1)
	table := archsimd.LoadFloat32x8(&simdTable)
	seven := archsimd.BroadcastInt32x8(7)
	bias := archsimd.BroadcastInt32x8(127)
	tooSmall := archsimd.BroadcastInt32x8(expMinBiased - 1)
	mx8 := archsimd.BroadcastFloat32x8(mx)
	var s0l, s0h, s1l, s1h, s2l, s2h, s3l, s3h archsimd.Float64x4
	ties := 0
	for j := 0; j+8 <= len(x); j += 8 {
		xv := archsimd.LoadFloat32x8Slice(x[j:])
		other := xv.NotEqual(mx8)
		ties += 8 - bits.OnesCount8(other.ToBits())
		vl := xv.GetLo().ConvertToFloat64().Sub(m4).Mul(inv4).Max(floor4)
		vh := xv.GetHi().ConvertToFloat64().Sub(m4).Mul(inv4).Max(floor4)
		kl := vl.Mul(k4).RoundToEven()
		kh := vh.Mul(k4).RoundToEven()
		rl := kl.MulAdd(negLo, kl.MulAdd(negHi, vl))
		rh := kh.MulAdd(negLo, kh.MulAdd(negHi, vh))
		var r archsimd.Float32x8
		r = r.SetLo(rl.ConvertToFloat32()).SetHi(rh.ConvertToFloat32())
		var k archsimd.Int32x8
		k = k.SetLo(kl.ConvertToInt32()).SetHi(kh.ConvertToInt32())
		p := r.MulAdd(c4, c3).MulAdd(r, c2).MulAdd(r, one).MulAdd(r, one) // e^r
		t := table.Permute(k.And(seven).AsUint32x8()).Mul(p)
		q := k.ShiftAllRight(3)
		b1 := q.Add(bias)
		b1 = b1.Masked(b1.Greater(tooSmall))
		b2 := q.Add(q).Add(bias)
		b2 = b2.Masked(b2.Greater(tooSmall))
		e := t.Mul(b1.ShiftAllLeft(23).AsFloat32x8()).Masked(other)
		e2 := t.Mul(t).Mul(b2.ShiftAllLeft(23).AsFloat32x8()).Masked(other)
		el, eh := e.GetLo().ConvertToFloat64(), e.GetHi().ConvertToFloat64()
		e2l, e2h := e2.GetLo().ConvertToFloat64(), e2.GetHi().ConvertToFloat64()
		s0l, s0h = s0l.Add(el), s0h.Add(eh)
		s1l, s1h = el.MulAdd(vl, s1l), eh.MulAdd(vh, s1h)
		s2l, s2h = s2l.Add(e2l), s2h.Add(e2h)
		s3l, s3h = e2l.MulAdd(vl, s3l), e2h.MulAdd(vh, s3h)
	}
	sum := func(a, b archsimd.Float64x4) float64 {
		var lanes [4]float64
		a.Add(b).Store(&lanes)
		return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
	}
	return rangeSums{sum(s0l, s0h), sum(s1l, s1h), sum(s2l, s2h), sum(s3l, s3h)}, ties
}

// decodeBFloat16 widens eight bfloat16 at a time to the upper halves of binary32.
func decodeBFloat16(dst []float32, src []uint16) {
	if !useAVX2 {
		decodeBFloat16Generic(dst, src)
		return
	}
	j := 0
	for ; j+8 <= len(dst); j += 8 {
		archsimd.LoadUint16x8Slice(src[j:]).ExtendToUint32().ShiftAllLeft(16).AsFloat32x8().StoreSlice(dst[j:])
	}
	decodeBFloat16Generic(dst[j:], src[j:])
}

// decodeFloat16 is decodeFloat16Generic eight at a time (AVX2 has no F16C conversion in archsimd).
func decodeFloat16(dst []float32, src []uint16) {
	if !useAVX2 {
		decodeFloat16Generic(dst, src)
		return
	}
	magMask := archsimd.BroadcastUint32x8(0x7fff)
	expMask := archsimd.BroadcastUint32x8(0x7c00)
	signMask := archsimd.BroadcastUint32x8(0x8000)
	infExp := archsimd.BroadcastUint32x8(0x7f800000)
	rebias := archsimd.BroadcastFloat32x8(0x1p112)
	j := 0
	for ; j+8 <= len(dst); j += 8 {
		h := archsimd.LoadUint16x8Slice(src[j:]).ExtendToUint32()
		mag := h.And(magMask).ShiftAllLeft(13)
		f := mag.AsFloat32x8().Mul(rebias).AsUint32x8()
		finite := h.And(expMask).NotEqual(expMask)
		f = f.Merge(mag.Or(infExp), finite)
		f.Or(h.And(signMask).ShiftAllLeft(16)).AsFloat32x8().StoreSlice(dst[j:])
	}
	decodeFloat16Generic(dst[j:], src[j:])
}
