package polarity

import "math"

// BFloat16ToFloat32 decodes bfloat16 bits: bfloat16 is the upper half of a binary32.
func BFloat16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float16ToFloat32 decodes IEEE binary16 bits exactly, subnormals, ±Inf and NaN (payload kept)
// included.
func Float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch exp {
	case 0: // ±0 and subnormals: mant·2^-24, exact in binary32
		f := float32(mant) * 0x1p-24
		return math.Float32frombits(math.Float32bits(f) | sign)
	case 0x1f: // ±Inf (mant = 0) and NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// Float32ToBFloat16 rounds x to the nearest bfloat16 (ties to even); NaN stays a (quiet) NaN.
func Float32ToBFloat16(x float32) uint16 {
	b := math.Float32bits(x)
	if x != x {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// Float32ToFloat16 rounds x to the nearest IEEE binary16 (ties to even): values beyond the
// largest half (65504, rounding included) become ±Inf, tiny ones subnormals or ±0; NaN stays
// a (quiet) NaN.
func Float32ToFloat16(x float32) uint16 {
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	switch {
	case exp == 0xff:
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	case exp-127 > 15:
		return sign | 0x7c00
	case exp-127 >= -14: // normal half (or rounding up into the next binade / Inf)
		h := uint32(exp-127+15)<<10 | mant>>13
		rest := mant & 0x1fff
		if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
			h++ // a carry into the exponent is the right result, up to 0x7c00 = Inf
		}
		return sign | uint16(h)
	case exp-127 >= -25: // subnormal half: value = m·2^-24 with m = round(1.mant · 2^(e+24))
		full := mant | 0x800000 // 24-bit significand, value = full·2^(e−23)
		shift := uint32(-(exp - 127) - 24 + 23)
		h := full >> shift
		rest := full & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || (rest == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	return sign
}

// decodeBFloat16Generic and decodeFloat16Generic convert len(dst) values of src to float32;
// the kernels' decoders (blockKernel) use them or assembly twins.
func decodeBFloat16Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for j, h := range src {
		dst[j] = math.Float32frombits(uint32(h) << 16)
	}
}

// decodeFloat16Generic places the half's exponent and mantissa in a binary32 and multiplies by
// 2^112 (rebiasing 15 → 127, and turning subnormal halves into normal floats exactly); the
// exponent 31 of ±Inf and NaN is patched instead. 1.5× the speed of Float16ToFloat32's switch.
func decodeFloat16Generic(dst []float32, src []uint16) {
	src = src[:len(dst)]
	for j, h := range src {
		mag := uint32(h&0x7fff) << 13
		f := math.Float32frombits(mag) * 0x1p112
		if h&0x7c00 == 0x7c00 {
			f = math.Float32frombits(mag | 0x7f800000)
		}
		dst[j] = math.Float32frombits(math.Float32bits(f) | uint32(h&0x8000)<<16)
	}
}

// EncodeLogits stores row-major values z (rows of length v) as Logits of type dt, rounding to
// the nearest float16 or bfloat16. Float32 logits share z.
func EncodeLogits(z []float32, v int, dt Dtype) Logits {
	l := Logits{Dtype: dt, V: v}
	switch dt {
	case Float32:
		l.F32 = z
	case Float16:
		l.Bits = make([]uint16, len(z))
		for j, x := range z {
			l.Bits[j] = Float32ToFloat16(x)
		}
	case BFloat16:
		l.Bits = make([]uint16, len(z))
		for j, x := range z {
			l.Bits[j] = Float32ToBFloat16(x)
		}
	}
	return l
}
