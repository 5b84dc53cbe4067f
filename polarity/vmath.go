package polarity

import "math"

// vexp and vlog1p are e^x and log(1+x) in float64, within 1 ulp of the correctly rounded result
// (TestVMathAccuracy), written so that the assembly batch kernels (vmath_amd64.s, four lanes of
// AVX2+FMA or eight of AVX-512F) give the same numbers bit for bit on every input: the same
// constants, the same operations in the same order, math.FMA exactly where the assembly has an
// FMA and an explicit float64(·) conversion around every other product that an addition
// follows (the Go spec lets a compiler fuse x*y + z otherwise: arm64 does, and amd64 at
// GOAMD64=v3). A branch here is a lane-wise select there: both sides of it are computed in
// every lane, and a select never changes a lane that its condition does not pick. expBatch and
// log1pBatch (vmath_amd64.go, vmath_other.go) are these over a slice.
//
// Paths that must agree bit for bit (statsRun and rowFromStats + Finish, Sums.Finalize and
// RowStats.Sampled) use these in the same places; reference.go, the float64 oracle, does not.

// Constants of vexp.
const (
	vexpHi      = 710.0  // e^710 > MaxFloat64: x is clamped to [vexpLo, vexpHi]
	vexpLo      = -750.0 // e^−750 < 2^−1075, which rounds to 0
	vexpShift   = 0x1.8p52
	vLn2Hi      = 0x1.62e42fee00000p-1 // ln 2 to 32 bits: n·ln2Hi exact for |n| < 2^21
	vLn2Lo      = 0x1.a39ef35793c76p-33
	vexpScaleLo = 0x4338000000000000 - 2046 // bits(vexpShift) less the double bias
)

// e^r = 1 + r + r²·q(r), q(r) = Σ_{k=2}^{14} r^{k−2}/k!, the Taylor series (its truncation,
// r^15/15! at |r| = ln2/2, is 1e-19 relative).
const (
	vexpC2  = 1.0 / 2
	vexpC3  = 1.0 / 6
	vexpC4  = 1.0 / 24
	vexpC5  = 1.0 / 120
	vexpC6  = 1.0 / 720
	vexpC7  = 1.0 / 5040
	vexpC8  = 1.0 / 40320
	vexpC9  = 1.0 / 362880
	vexpC10 = 1.0 / 3628800
	vexpC11 = 1.0 / 39916800
	vexpC12 = 1.0 / 479001600
	vexpC13 = 1.0 / 6227020800
	vexpC14 = 1.0 / 87178291200
)

// vexpPoly are q's coefficients from the highest, in the order of the assembly's Horner steps.
var vexpPoly = [13]float64{vexpC14, vexpC13, vexpC12, vexpC11, vexpC10, vexpC9, vexpC8, vexpC7, vexpC6, vexpC5, vexpC4, vexpC3, vexpC2}

// vexp is e^x: NaN for NaN, +Inf above ~709.78 (and for +Inf), 0 below ~−745.13 (and for −Inf),
// subnormal results rounded once from the 53-bit result.
//
// n = round(x·log2 e) (the rounding of the exact product, by the 1.5·2^52 shifter), r = x − n·ln2
// as r + rlo (t1 = x − n·ln2Hi is exact, |r| ≤ 0.347), e^r = 1 + r + (r²·q(r) + rlo) with 1 + r
// as h + e1 (Fast2Sum), so that the only large rounding is the last one. The result is then
// scaled by 2^n as 2^a·2^b, a = ⌊n/2⌋, b = n − a: both factors normal, the first product exact
// and the second the one rounding of a subnormal or overflowing result.
func vexp(x float64) float64 {
	if x != x {
		return x
	}
	if x > vexpHi {
		x = vexpHi
	}
	if x < vexpLo {
		x = vexpLo
	}
	t := math.FMA(x, math.Log2E, vexpShift)
	n := t - vexpShift
	t1 := math.FMA(-n, vLn2Hi, x)
	r := math.FMA(-n, vLn2Lo, t1)
	rlo := math.FMA(-n, vLn2Lo, t1-r)
	q := math.FMA(vexpC14, r, vexpC13) // Horner, as vexpPoly
	q = math.FMA(q, r, vexpC12)
	q = math.FMA(q, r, vexpC11)
	q = math.FMA(q, r, vexpC10)
	q = math.FMA(q, r, vexpC9)
	q = math.FMA(q, r, vexpC8)
	q = math.FMA(q, r, vexpC7)
	q = math.FMA(q, r, vexpC6)
	q = math.FMA(q, r, vexpC5)
	q = math.FMA(q, r, vexpC4)
	q = math.FMA(q, r, vexpC3)
	q = math.FMA(q, r, vexpC2)
	r2 := r * r
	s := math.FMA(r2, q, rlo)
	h := 1 + r
	e1 := (1 - h) + r
	p := h + (e1 + s)
	m := math.Float64bits(t) - vexpScaleLo // n + 2046 ∈ [964, 3071]
	a := m >> 1
	b := m - a
	return p * math.Float64frombits(a<<52) * math.Float64frombits(b<<52)
}

// Constants of vlog1p.
const (
	vlogOff   = 0x3ff0000000000000 - 0x3fe6a09e667f3bcd // 1 less √2/2, in bits: f ∈ [√2/2, √2)
	vlogMagic = 0x4330000000000000                      // bits of 2^52
	vlogKBias = 0x1p52 + 1023
	vlogSmall = 0x1p-29            // below it, log1p(x) = x − x²/2 (x³/3 is below 2^-58 relative)
	vlogNaN   = 0x7ff8000000000001 // math.NaN()'s bits
)

// vlogPoly are fdlibm's Lg1 … Lg7: log(f) = 2 atanh(s) = 2s + s·R(s²), s = (f−1)/(f+1),
// R(z) = z(Lg1 + z(Lg2 + … z·Lg7)) within 2^-58.45 on |s| ≤ 0.1716.
var vlogPoly = [7]float64{
	6.666666666666735130e-01, // 3FE55555 55555593
	3.999999999940941908e-01, // 3FD99999 9997FA04
	2.857142874366239149e-01, // 3FD24924 94229359
	2.222219843214978396e-01, // 3FCC71C5 1D8E78AF
	1.818357216161805012e-01, // 3FC74664 96CB03DE
	1.531383769920937332e-01, // 3FC39A09 D078C69F
	1.479819860511658591e-01, // 3FC2F112 DF3E5244
}

// vlog1p is log(1+x): NaN for NaN and x < −1, −Inf at −1, +Inf at +Inf, ±0 at ±0.
//
// u = 1 + x with its exact rounding error c (Knuth's TwoSum: u + c = 1 + x for every x), u =
// 2^k·f with f ∈ [√2/2, √2) from u's bits, and then fdlibm's log1p: with fm = f − 1 and
// hfsq = fm²/2, log1p(x) = k·ln2Hi − ((hfsq − (s·(hfsq + R) + (k·ln2Lo + c/u))) − fm). For
// |x| < 2^-29 it is x − x²/2 with one rounding.
func vlog1p(x float64) float64 {
	switch {
	case x != x:
		return x
	case x < -1:
		return math.Float64frombits(vlogNaN)
	case x == -1:
		return math.Inf(-1)
	case x > math.MaxFloat64:
		return x
	case math.Abs(x) < vlogSmall:
		return math.FMA(x*-0.5, x, x)
	}
	u := 1 + x
	bb := u - x
	c := (1 - bb) + (x - (u - bb))
	iu := math.Float64bits(u)
	kb := (iu + vlogOff) >> 52 // k + 1023 (u ≥ 2^-53 > 0)
	f := math.Float64frombits(iu - kb<<52 + 0x3ff0000000000000)
	k := math.Float64frombits(kb|vlogMagic) - vlogKBias
	fm := f - 1
	s := fm / (2 + fm)
	z := s * s
	w := z * z
	p1 := math.FMA(w, vlogPoly[5], vlogPoly[3]) // Lg2 + w(Lg4 + w·Lg6)
	p1 = math.FMA(w, p1, vlogPoly[1])
	p2 := math.FMA(w, vlogPoly[6], vlogPoly[4]) // Lg1 + w(Lg3 + w(Lg5 + w·Lg7))
	p2 = math.FMA(w, p2, vlogPoly[2])
	p2 = math.FMA(w, p2, vlogPoly[0])
	R := math.FMA(w, p1, z*p2)
	hfsq := float64((0.5 * fm) * fm) // float64(·): not to be fused into hfsq − a or hfsq + R
	cu := c / u
	a := math.FMA(s, hfsq+R, math.FMA(k, vLn2Lo, cu))
	return math.FMA(k, vLn2Hi, -((hfsq - a) - fm))
}
