package polarity

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

const ulp32 = 0x1p-24 // float32 unit roundoff (half an ulp of 1)

// expOf is the pure-Go block exponential of one v (Max = 0, τ = 1): e^{v} and e^{2v} as
// accumulateRange adds them.
func expOf(v float32) (e, e2 float64) {
	r := accumulateRange([]float32{v}, 0, 1)
	return r.s0, r.s2
}

// TestBlockExponential: e^{v} within 3·2^-24 relative (three float32 roundings of values in
// [1, 2): the table entry, the polynomial, their product; measured 2.9) and e^{2v} within
// 7·2^-24 (it squares that product: measured 6.5) wherever they are at least 2^-123; exactly 0
// below the cutoffs (v < −87.4 for e^{v}, v < −43.7 for e^{2v}) and never a subnormal; −Inf gives
// 0, not NaN. Checked on a 2^21-point grid of [−4, 0], ulp by ulp around every step of the
// range reduction down to v = −6.5, on 10⁶ random v in [−104, 0], and at the cutoff edges.
func TestBlockExponential(t *testing.T) {
	rng := testSeed(t)
	worst, worst2 := 0.0, 0.0
	check := func(v float32) {
		e, e2 := expOf(v)
		for _, c := range []struct {
			name      string
			got, want float64
			ulps      float64
			worst     *float64
		}{
			{"e^v", e, math.Exp(float64(v)), 3, &worst},
			{"e^2v", e2, math.Exp(2 * float64(v)), 7, &worst2},
		} {
			if c.got == 0 {
				if c.want >= 0x1p-123 {
					t.Fatalf("%s at v=%v: 0, want %g", c.name, v, c.want)
				}
				continue
			}
			if c.got < 0x1p-126 {
				t.Fatalf("%s at v=%v: %g is subnormal", c.name, v, c.got)
			}
			rel := math.Abs(c.got-c.want) / c.want
			if rel > c.ulps*ulp32 {
				t.Fatalf("%s at v=%v: %.9g, want %.9g (%.2f ulp > %g)", c.name, v, c.got, c.want, rel/ulp32, c.ulps)
			}
			*c.worst = math.Max(*c.worst, rel)
		}
	}
	for k := range 1 << 21 { // a grid on [−4, 0], and ulp by ulp around the reduction's steps
		check(float32(-4 * float64(k) / (1 << 21)))
	}
	for k := -600; k <= 0; k++ {
		edge := math.Float32bits(float32((float64(k) + 0.5) * math.Ln2 / 64))
		for d := uint32(0); d < 16; d++ {
			check(math.Float32frombits(edge - 8 + d))
		}
	}
	for range 1_000_000 {
		check(float32(-104 * rng.Float64()))
	}
	for _, v := range []float32{0, -0.0, -1e-30, -43.3, -43.6, -43.7, -44, -86.5, -86.9, -87.3, -87.4, -87.5, -88, -103.9, -104, -200, float32(math.Inf(-1))} {
		check(v)
	}
	if e, e2 := expOf(float32(math.Inf(-1))); e != 0 || e2 != 0 {
		t.Errorf("exp(−Inf) = %v, %v, want 0, 0", e, e2)
	}
	if e, _ := expOf(-90); e != 0 {
		t.Errorf("e^-90 = %g, want 0 (below the cutoff)", e)
	}
	t.Logf("largest relative error: e^v %.2f·2^-24, e^2v %.2f·2^-24", worst/ulp32, worst2/ulp32)

	// Each assembly kernel's exponential, through blocks {0, v1, …, v15} (one vector of the widest
	// kernel, so that no kernel hands the block to the Go loop): Rest = Σ e^{v_i} and
	// S3 = Σ e^{2v_i}·v_i, sums of same-sign terms (S2 would hide Σ e^{2v_i} behind the max's 1),
	// so within the same 3 and 7·2^-24 (one term a lane: no float32 lane sum rounds). Below the
	// cutoffs the terms are exactly 0.
	for _, k := range Kernels()[1:] {
		t.Run(k.String(), func(t *testing.T) { testKernelExponential(t, rng, k) })
	}
}

func testKernelExponential(t *testing.T, rng *rand.Rand, k Kernel) {
	accumulate := newBlockKernel(k, 1).accumulate
	worst, worst2 := 0.0, 0.0
	x := make([]float32, 16)
	for range 100_000 {
		var want, want3 float64
		for j := 1; j < len(x); j++ {
			x[j] = float32(-90 * rng.Float64())
			v := float64(x[j])
			want += math.Exp(v)
			if v > -43 {
				want3 += math.Exp(2*v) * v
			}
		}
		bs := accumulate(x)
		rel, rel3 := math.Abs(bs.Rest-want)/want, math.Abs(bs.S3-want3)/math.Abs(want3)
		// Terms below the cutoff (e^{v} < 2^-124, e^{2v}·|v| < 44·2^-124) may be dropped.
		if math.Abs(bs.Rest-want) > 3*ulp32*want+7*0x1p-124 || math.Abs(bs.S3-want3) > 7*ulp32*math.Abs(want3)+7*44*0x1p-124 {
			t.Fatalf("variant at %v: Rest %.9g, want %.9g; S3 %.9g, want %.9g", x, bs.Rest, want, bs.S3, want3)
		}
		if want > 0x1p-100 {
			worst = math.Max(worst, rel)
		}
		if want3 < -0x1p-90 {
			worst2 = math.Max(worst2, rel3)
		}
	}
	t.Logf("%v: largest relative error: Σe^v %.2f·2^-24, Σe^2v·v %.2f·2^-24", k, worst/ulp32, worst2/ulp32)

	// v in [−86, −44): e^{v} counts, e^{2v} is exactly 0 (S2 is the max's 1, S3 = 0); v ≤ −87:
	// both are 0 (Rest = 0).
	for _, c := range []struct {
		lo, hi float64
		rest   bool
	}{{-86, -44, true}, {-120, -87, false}} {
		for range 1000 {
			x[0] = 0
			for j := 1; j < len(x); j++ {
				x[j] = float32(c.lo + (c.hi-c.lo)*rng.Float64())
			}
			bs := accumulate(x)
			if bs.S2 != 1 || bs.S3 != 0 || (bs.Rest > 0) != c.rest || bs.Rest < 0 {
				t.Fatalf("%v: block %v: %+v, want S2 = 1, S3 = 0 and Rest %s", k, x, bs, map[bool]string{true: "> 0", false: "= 0"}[c.rest])
			}
		}
	}
}

// blockCase is a named generator of raw logits for block tests.
var blockCases = []struct {
	name string
	fill func(rng *rand.Rand, x []float32)
}{
	{"normal", func(rng *rand.Rand, x []float32) {
		for j := range x {
			x[j] = float32(3 * rng.NormFloat64())
		}
	}},
	{"peaked", func(rng *rand.Rand, x []float32) {
		for j := range x {
			x[j] = float32(3 * rng.NormFloat64())
		}
		x[rng.IntN(len(x))] = 40
	}},
	{"ties", func(rng *rand.Rand, x []float32) {
		for j := range x {
			x[j] = float32(rng.IntN(3))
		}
	}},
	{"−Inf", func(rng *rand.Rand, x []float32) {
		for j := range x {
			x[j] = float32(math.Inf(-1))
			if rng.IntN(3) == 0 {
				x[j] = float32(5 * rng.NormFloat64())
			}
		}
		x[rng.IntN(len(x))] = 1
	}},
	{"huge", func(rng *rand.Rand, x []float32) {
		for j := range x {
			x[j] = float32(2e4*rng.Float64() - 1e4)
		}
	}},
	{"wide", func(rng *rand.Rand, x []float32) { // spreads v over the whole cutoff range
		for j := range x {
			x[j] = float32(-120 * rng.Float64())
		}
	}},
}

// TestBlockAgainstFloat64 compares the block accumulators with the same sums in float64 (with
// v = (x − Max)/τ and math.Exp): v and the range reduction are float64 in the block, so only
// the float32 exponential (≤ 3·2^-24 for e^{v}, 7·2^-24 for e^{2v}) and the cutoffs differ:
// every sum (of same-sign terms) agrees to 7·2^-24 relative plus n·2^-118 absolute for the
// dropped terms (S2 includes the max element's 1).
func TestBlockAgainstFloat64(t *testing.T) {
	rng := testSeed(t)
	for _, n := range []int{1, 2, 3, 7, 31, 32, 33, 511, 512, 1000} {
		x := make([]float32, n)
		for _, c := range blockCases {
			for _, tau := range []float64{1, 0.7, 1.3} {
				c.fill(rng, x)
				for impl, accumulate := range blockImpls() {
					bs := accumulate(x, 1/tau)
					what := fmt.Sprintf("%s: %s, n=%d, τ=%g", impl, c.name, n, tau)

					mx := float32(math.Inf(-1))
					for _, z := range x {
						mx = max(mx, z)
					}
					if bs.Max != mx {
						t.Fatalf("%s: Max = %v, want %v", what, bs.Max, mx)
					}
					var exact Sums // relative to Max: M = 0
					skipped := false
					for _, z := range x {
						if z == mx && !skipped {
							skipped = true // the 1 kept outside Rest
							continue
						}
						if math.IsInf(float64(z), -1) {
							continue
						}
						v := (float64(z) - float64(mx)) / tau
						e := math.Exp(v)
						exact.Rest += e
						exact.S1 += e * v
						exact.S2 += e * e
						exact.S3 += e * e * v
					}
					floor := float64(n) * 0x1p-118
					for _, q := range []struct {
						name      string
						got, want float64
					}{
						{"Rest", bs.Rest, exact.Rest}, {"S1", bs.S1, exact.S1},
						{"S2", bs.S2, 1 + exact.S2}, {"S3", bs.S3, exact.S3},
					} {
						if d := math.Abs(q.got - q.want); d > 7*ulp32*math.Abs(q.want)+floor {
							t.Errorf("%s: %s = %.9g, want %.9g (relative %.3g > 7·2^-24)", what, q.name, q.got, q.want, d/math.Abs(q.want))
						}
					}
				}
			}
		}
	}
}

// blockImpls are the block accumulators under test: every kernel this build and processor run,
// the pure-Go reference first.
func blockImpls() map[string]func([]float32, float64) blockSums {
	m := map[string]func([]float32, float64) blockSums{}
	for _, k := range Kernels() {
		m[k.String()] = func(x []float32, invTau float64) blockSums { return newBlockKernel(k, invTau).accumulate(x) }
	}
	return m
}

// TestBlockTiesAndBadValues: an all-equal block has Rest = n−1 exactly and S1 = S3 = 0; a NaN
// anywhere (first, last, among −Inf) makes Max NaN or Rest NaN; +Inf makes Max +Inf; a block of
// −Inf only has Max −Inf.
func TestBlockTiesAndBadValues(t *testing.T) {
	for _, n := range []int{1, 2, 5, 8, 13, 512} {
		x := make([]float32, n)
		for j := range x {
			x[j] = 2.5
		}
		for impl, accumulate := range blockImpls() {
			bs := accumulate(x, 0.7)
			if bs.Max != 2.5 || bs.Rest != float64(n-1) || bs.S1 != 0 || bs.S2 != float64(n) || bs.S3 != 0 {
				t.Errorf("%s: flat block of %d: %+v", impl, n, bs)
			}
		}
	}
	nan, inf, ninf := float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
	bad := func(bs blockSums) bool { return !(bs.Max <= math.MaxFloat32) || bs.Rest != bs.Rest }
	for _, n := range []int{1, 2, 3, 8, 13, 512} {
		for _, at := range []int{0, n / 2, n - 1} {
			for _, fill := range []float32{0.5, ninf} {
				for _, v := range []float32{nan, inf} {
					x := make([]float32, n)
					for j := range x {
						x[j] = fill
					}
					x[at] = v
					for impl, accumulate := range blockImpls() {
						if bs := accumulate(x, 1); !bad(bs) {
							t.Errorf("%s: n=%d, %v at %d among %v: %+v does not show it", impl, n, v, at, fill, bs)
						}
					}
				}
			}
		}
		x := make([]float32, n)
		for j := range x {
			x[j] = ninf
		}
		for impl, accumulate := range blockImpls() {
			if bs := accumulate(x, 1); bs.Max != ninf || bad(bs) {
				t.Errorf("%s: all −Inf block of %d: %+v, want Max −Inf", impl, n, bs)
			}
		}
	}
}

// TestBlockVariant compares each assembly kernel with the pure-Go reference: each is within
// 7·2^-24 of the exact sums (TestBlockAgainstFloat64), so they agree to 14·2^-24 relative.
func TestBlockVariant(t *testing.T) {
	ks := Kernels()[1:]
	if len(ks) == 0 {
		t.Skipf("no assembly kernel in this build or on this processor: only %v", Kernels())
	}
	rng := testSeed(t)
	for _, k := range ks {
		for _, n := range []int{1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 511, 512, 4095, 4096} {
			for _, tau := range []float64{1, 1.3} {
				testVariant(t, rng, k, n, tau)
			}
		}
	}
}

func testVariant(t *testing.T, rng *rand.Rand, k Kernel, n int, tau float64) {
	x := make([]float32, n)
	accumulate := newBlockKernel(k, 1/tau).accumulate
	for _, c := range blockCases {
		c.fill(rng, x)
		got, want := accumulate(x), accumulateBlockGeneric(x, 1/tau)
		rel := 14 * ulp32
		floor := float64(n) * 0x1p-118
		if got.Max != want.Max {
			t.Fatalf("%v: %s, n=%d, τ=%g: Max %v, want %v", k, c.name, n, tau, got.Max, want.Max)
		}
		for _, q := range [][2]float64{{got.Rest, want.Rest}, {got.S1, want.S1}, {got.S2, want.S2}, {got.S3, want.S3}} {
			if math.Abs(q[0]-q[1]) > rel*math.Abs(q[1])+floor {
				t.Errorf("%v: %s, n=%d, τ=%g: %+v, want %+v", k, c.name, n, tau, got, want)
				break
			}
		}
	}
}
