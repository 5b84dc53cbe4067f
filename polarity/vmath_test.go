package polarity

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// vmathCase is a named set of inputs of vexp or vlog1p.
type vmathCase struct {
	name string
	x    []float64
}

func uniform(rng *rand.Rand, n int, lo, hi float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = lo + (hi-lo)*rng.Float64()
	}
	return x
}

// logUniform: n values sign·10^e, e uniform in [e0, e1].
func logUniform(rng *rand.Rand, n int, e0, e1, sign float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = sign * math.Pow(10, e0+(e1-e0)*rng.Float64())
	}
	return x
}

// around: k values each side of every v, ulp by ulp.
func around(k int, vs ...float64) []float64 {
	var x []float64
	for _, v := range vs {
		lo, hi := v, v
		x = append(x, v)
		for range k {
			lo, hi = math.Nextafter(lo, math.Inf(-1)), math.Nextafter(hi, math.Inf(1))
			x = append(x, lo, hi)
		}
	}
	return x
}

// vmathSpecials are the special inputs of both functions.
func vmathSpecials() []float64 {
	nan := math.NaN()
	x := []float64{nan, -nan, math.Float64frombits(0x7ff0000000000001), math.Float64frombits(0xfff8000000000000),
		math.Float64frombits(0x7ff8dead00000000), math.Inf(1), math.Inf(-1), 0, math.Copysign(0, -1)}
	x = append(x, around(3, math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64, 0x1p-1022, -0x1p-1022,
		math.Float64frombits(0x000fffffffffffff), math.MaxFloat64, -math.MaxFloat64, 1, -1, 0.5, 2, math.Ln2, -math.Ln2)...)
	for e := -1074; e <= 1023; e += 7 {
		x = append(x, math.Ldexp(1, e), -math.Ldexp(1, e), math.Ldexp(1.7, e), -math.Ldexp(1.3, e))
	}
	return x
}

// vmathCases are the input sets of each function: 1e6 random values in each range (1e5 with
// -short), the thresholds ± a few ulps and the specials.
func vmathCases(exp bool, short bool) []vmathCase {
	n := 1000000
	if short {
		n = 100000
	}
	rng := rand.New(rand.NewPCG(11, 7))
	sp := vmathSpecials()
	if exp {
		return []vmathCase{
			{"[-750,712]", uniform(rng, n, -750, 712)},
			{"[-40,1]", uniform(rng, n, -40, 1)},
			{"|x|<1e-10", uniform(rng, n, -1e-10, 1e-10)},
			{"tiny", append(logUniform(rng, n/2, -320, -10, 1), logUniform(rng, n/2, -320, -10, -1)...)},
			{"subnormal results", uniform(rng, n, -745.2, -708.3)},
			{"near overflow", uniform(rng, n, 709, 709.8)},
			{"thresholds", around(64, 709.782712893384, 709.7827128933841, -745.1332191019411, -745.1332191019412,
				-744.4400719213812, -708.3964185322641, -708.3964185322642, 710, -750, 0.5*math.Ln2, -0.5*math.Ln2, 1.5*math.Ln2)},
			{"specials", sp},
		}
	}
	return []vmathCase{
		{"[0,1e-12]", uniform(rng, n, 0, 1e-12)},
		{"[0,1]", uniform(rng, n, 0, 1)},
		{"[0,1e6]", uniform(rng, n, 0, 1e6)},
		{"1e-300..1e308", logUniform(rng, n, -300, 308, 1)},
		{"(-1,0)", uniform(rng, n, -1, 0)},
		{"(-1e-5,1e-5)", uniform(rng, n, -1e-5, 1e-5)},
		{"near -1", append(logUniform(rng, n/2, -16, -1, 1), 0)}, // becomes −1 + 10^e below
		{"thresholds", around(64, -1, 0x1p-29, -0x1p-29, 0x1p-54, -0x1p-54, math.Sqrt2/2-1, math.Sqrt2-1, 1, math.Sqrt2*2-1)},
		{"specials", sp},
	}
}

func fixNearMinusOne(cs []vmathCase) {
	for _, c := range cs {
		if c.name == "near -1" {
			for i, v := range c.x {
				c.x[i] = -1 + v
			}
		}
	}
}

var vmathFuncs = []struct {
	name   string
	exp    bool
	scalar func(float64) float64
	batch  func(Kernel, []float64, []float64)
	std    func(float64) float64
}{
	{"exp", true, vexp, expBatchKernel, math.Exp},
	{"log1p", false, vlog1p, log1pBatchKernel, math.Log1p},
}

func sameBits(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }

// TestVMathKernels: each assembly kernel the processor runs gives the scalar vexp and vlog1p bit
// for bit (NaN payloads included) on every input set, on every length 0 … 40 (the tails) and in
// place (dst = x).
func TestVMathKernels(t *testing.T) {
	for _, k := range []Kernel{KernelAVX2, KernelAVX512} {
		t.Run(k.String(), func(t *testing.T) {
			if !slices.Contains(Kernels(), k) {
				t.Skipf("kernel %v: not in this build or not supported by this processor", k)
			}
			for _, f := range vmathFuncs {
				cs := vmathCases(f.exp, testing.Short())
				fixNearMinusOne(cs)
				for _, c := range cs {
					got := make([]float64, len(c.x))
					f.batch(k, got, c.x)
					for i, x := range c.x {
						if want := f.scalar(x); !sameBits(got[i], want) {
							t.Fatalf("%s %s: %v(%v = %#x) = %v (%#x), the scalar function gives %v (%#x)",
								f.name, c.name, k, x, math.Float64bits(x), got[i], math.Float64bits(got[i]), want, math.Float64bits(want))
						}
					}
				}
				// Tails and aliasing: every length 0 … 40 of a mix of all sets, at every offset 0 … 3.
				var mix []float64
				for _, c := range cs {
					mix = append(mix, c.x[:min(len(c.x), 13)]...)
				}
				for off := range 4 {
					for n := 0; n <= 40; n++ {
						x := mix[off*20 : off*20+n]
						want := make([]float64, n)
						for i, v := range x {
							want[i] = f.scalar(v)
						}
						got := make([]float64, n+1)
						got[n] = 42
						f.batch(k, got[:n], x)
						inPlace := append([]float64(nil), x...)
						f.batch(k, inPlace, inPlace)
						for i := range want {
							if !sameBits(got[i], want[i]) || !sameBits(inPlace[i], want[i]) {
								t.Fatalf("%s, length %d offset %d, element %d (%v): %v, in place %v, scalar %v", f.name, n, off, i, x[i], got[i], inPlace[i], want[i])
							}
						}
						if got[n] != 42 {
							t.Fatalf("%s, length %d: wrote past the end of dst", f.name, n)
						}
					}
				}
			}
		})
	}
}

// ulpDiff is how many doubles lie between a and b (0 when both are NaN or equal; a large
// number when only one is NaN).
func ulpDiff(a, b float64) int64 {
	if a != a || b != b {
		if a != a && b != b {
			return 0
		}
		return math.MaxInt64
	}
	if a == b {
		return 0
	}
	ord := func(x float64) int64 { // monotonic in x
		i := int64(math.Float64bits(x))
		if i < 0 {
			i = math.MinInt64 - i
		}
		return i
	}
	d := ord(a) - ord(b)
	if d < 0 {
		d = -d
	}
	return d
}

// TestVMathAccuracy: vexp and vlog1p are within 2 ulps of math.Exp and math.Log1p (each within
// 1 ulp of the exact value) on every input set, equal on the special values, and within 1 ulp
// of the exact value (big.Float, 320 bits) on a sample of each set; the log has the maxima.
func TestVMathAccuracy(t *testing.T) {
	for _, f := range vmathFuncs {
		cs := vmathCases(f.exp, testing.Short())
		fixNearMinusOne(cs)
		for _, c := range cs {
			var worst int64
			var worstX float64
			mathWrong := 0 // inputs where math is the one off (amd64's math.Exp overflows above ~709.43)
			special := func(v float64) bool { return v != v || v == 0 || math.IsInf(v, 0) }
			for _, x := range c.x {
				got, want := f.scalar(x), f.std(x)
				d := ulpDiff(got, want)
				if d > 2 {
					if e, ok := exactUlps(f.exp, x, got); ok && e < 1 {
						mathWrong++
						continue
					}
				}
				if d > worst {
					worst, worstX = d, x
				}
				if d > 2 || ((special(x) || special(got) || special(want)) && !sameBits(got, want) && !(got != got && want != want)) {
					t.Errorf("%s(%v = %#x) = %v, math gives %v: %d ulps apart", f.name, x, math.Float64bits(x), got, want, d)
				}
			}
			// The exact value on a sample of 1000 (200 with -short).
			step := max(1, len(c.x)/1000)
			if testing.Short() {
				step = max(1, len(c.x)/200)
			}
			var exact, exactStd float64
			var exactX float64
			for i := 0; i < len(c.x); i += step {
				x := c.x[i]
				e, ok := exactUlps(f.exp, x, f.scalar(x))
				if !ok {
					continue
				}
				es, _ := exactUlps(f.exp, x, f.std(x))
				exactStd = max(exactStd, es)
				if e > exact {
					exact, exactX = e, x
				}
				if e >= 1 {
					t.Errorf("%s(%v): %v, %.3f ulps from the exact value", f.name, x, f.scalar(x), e)
				}
			}
			t.Logf("%-5s %-18s %8d inputs: max %d ulps from math (at %v; %d where math is off and this within 1 ulp of exact); exact: max %.3f ulps (at %v), math's %.3f",
				f.name, c.name, len(c.x), worst, worstX, mathWrong, exact, exactX, exactStd)
		}
	}
}

// exactUlps is |got − f(x)|/ulp(f(x)) with f(x) = e^x or log1p(x) to 300 bits, for finite
// results (ok false elsewhere: NaN, ±Inf, overflow, x ≤ −1).
func exactUlps(exp bool, x, got float64) (float64, bool) {
	var ref *big.Float
	if exp {
		if x > 709.8 || x < -746 || x != x {
			return 0, false
		}
		ref = bigExp(x)
	} else {
		if !(x > -1) || x > math.MaxFloat64 || x == 0 {
			return 0, false
		}
		ref = bigLog1p(x)
	}
	r, _ := ref.Float64()
	if math.IsInf(r, 0) || math.IsInf(got, 0) || got != got {
		return 0, false
	}
	// ulp of the exact value: that of the doubles around it (2^-1074 among the subnormals).
	ar := math.Abs(r)
	var ulp float64
	if ar < 0x1p-1022 {
		ulp = 0x1p-1074
	} else {
		_, e := math.Frexp(ar) // ar = m·2^e, m ∈ [0.5, 1)
		if ar == math.Ldexp(0.5, e) {
			// at a power of two the exact value may lie just below it: use the smaller ulp when so
			if new(big.Float).Abs(ref).Cmp(big.NewFloat(ar)) < 0 {
				e--
			}
		}
		ulp = math.Ldexp(1, e-53)
	}
	d := new(big.Float).SetPrec(prec).Sub(new(big.Float).SetPrec(prec).SetFloat64(got), ref)
	d.Quo(d, new(big.Float).SetPrec(prec).SetFloat64(ulp))
	v, _ := d.Float64()
	return math.Abs(v), true
}

const prec = 320

var bigLn2 = func() *big.Float { // 2 atanh(1/3)
	third := new(big.Float).SetPrec(prec).Quo(big.NewFloat(1).SetPrec(prec), big.NewFloat(3))
	return bigAtanh2(third)
}()

// bigAtanh2 is 2 atanh(s) = 2(s + s³/3 + s⁵/5 + …) for |s| ≤ 1/3.
func bigAtanh2(s *big.Float) *big.Float {
	sum := new(big.Float).SetPrec(prec).Set(s)
	s2 := new(big.Float).SetPrec(prec).Mul(s, s)
	p := new(big.Float).SetPrec(prec).Set(s)
	t := new(big.Float).SetPrec(prec)
	for k := 3; k < 2000; k += 2 {
		p.Mul(p, s2)
		t.Quo(p, big.NewFloat(float64(k)))
		sum.Add(sum, t)
		if t.Sign() == 0 || t.MantExp(nil)-sum.MantExp(nil) < -prec {
			break
		}
	}
	return sum.Mul(sum, big.NewFloat(2))
}

// bigExp is e^x: x = n·ln2 + r, e^r by its Taylor series.
func bigExp(x float64) *big.Float {
	n := math.Round(x / math.Ln2)
	r := new(big.Float).SetPrec(prec).SetFloat64(x)
	r.Sub(r, new(big.Float).SetPrec(prec).Mul(bigLn2, big.NewFloat(n)))
	sum := big.NewFloat(1).SetPrec(prec)
	term := big.NewFloat(1).SetPrec(prec)
	for k := 1; k < 200; k++ {
		term.Mul(term, r)
		term.Quo(term, big.NewFloat(float64(k)))
		sum.Add(sum, term)
		if term.Sign() == 0 || term.MantExp(nil) < -prec-4 {
			break
		}
	}
	return sum.SetMantExp(sum, int(n))
}

// bigLog1p is log(1 + x): 1 + x exact, = 2^k·f with f ∈ [√2/2, √2), k·ln2 + 2 atanh((f−1)/(f+1));
// for |x| < 2^-20 the series x − x²/2 + x³/3 … instead.
func bigLog1p(x float64) *big.Float {
	if math.Abs(x) < 0x1p-20 {
		xb := new(big.Float).SetPrec(prec).SetFloat64(x)
		sum := new(big.Float).SetPrec(prec).Set(xb)
		p := new(big.Float).SetPrec(prec).Set(xb)
		t := new(big.Float).SetPrec(prec)
		for k := 2; k < 100; k++ {
			p.Mul(p, xb)
			p.Neg(p)
			t.Quo(p, big.NewFloat(float64(k)))
			sum.Add(sum, t)
			if t.Sign() == 0 || t.MantExp(nil)-sum.MantExp(nil) < -prec {
				break
			}
		}
		return sum
	}
	u := new(big.Float).SetPrec(2200).SetFloat64(x)
	u.Add(u, big.NewFloat(1)) // exact
	f := new(big.Float).SetPrec(2200)
	k := u.MantExp(f) // u = f·2^k, f ∈ [0.5, 1)
	if f.Cmp(big.NewFloat(math.Sqrt2/2)) < 0 {
		f.SetMantExp(f, 1)
		k--
	}
	num := new(big.Float).SetPrec(prec).Sub(f, big.NewFloat(1))
	den := new(big.Float).SetPrec(prec).Add(f, big.NewFloat(1))
	s := num.Quo(num, den)
	res := bigAtanh2(s)
	return res.Add(res, new(big.Float).SetPrec(prec).Mul(bigLn2, big.NewFloat(float64(k))))
}

// BenchmarkVMath: e^x on [−40, 1] and log1p on [0, 1e6], 4096 values a batch, by math.Exp and
// math.Log1p in a loop and by the batch functions with each kernel (go: the scalar loop).
//
//	go test ./polarity -run='^$' -bench=VMath
func BenchmarkVMath(b *testing.B) {
	const n = 4096
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range vmathFuncs {
		var x []float64
		if f.exp {
			x = uniform(rng, n, -40, 1)
		} else {
			x = uniform(rng, n, 0, 1e6)
		}
		dst := make([]float64, n)
		perElement := func(b *testing.B) {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/element")
		}
		b.Run(fmt.Sprintf("%s/math", f.name), func(b *testing.B) {
			for b.Loop() {
				for i, v := range x {
					dst[i] = f.std(v)
				}
			}
			perElement(b)
		})
		for _, k := range []Kernel{KernelGo, KernelAVX2, KernelAVX512} {
			b.Run(fmt.Sprintf("%s/%v", f.name, k), func(b *testing.B) {
				if !slices.Contains(Kernels(), k) {
					b.Skipf("kernel %v not supported", k)
				}
				for b.Loop() {
					f.batch(k, dst, x)
				}
				perElement(b)
			})
		}
	}
}
