package polarity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// statsBatch is n rows of row statistics with advantages: those of random logits (V = 7) from
// the CPU engine's own pass, so that every row is valid.
func statsBatch(t testing.TB, n int) *Batch {
	t.Helper()
	const v = 7
	rng := rand.New(rand.NewPCG(5, 23))
	in := &Batch{Logits: Logits{Dtype: Float32, V: v, F32: make([]float32, n*v)}, TokenID: make([]int32, n),
		Advantage: make([]float64, n)}
	for i := range in.Logits.F32 {
		in.Logits.F32[i] = float32(rng.NormFloat64() * 3)
	}
	for i := range n {
		in.TokenID[i] = int32(rng.IntN(v))
		in.Advantage[i] = rng.NormFloat64()
	}
	var res Result
	var st StatsColumns
	if err := NewCPU(1).(StatsEngine).ComputeWithStats(context.Background(), in, DefaultParams(), &res, &st); err != nil {
		t.Fatal(err)
	}
	return &Batch{TokenID: in.TokenID, Advantage: in.Advantage, Stats: &st}
}

// TestComputeStatsPieces: a batch of several pieces (statsPieceRows) computed on 4 goroutines
// equals, bit for bit, the same batch on one (every row alone, in order); a bad row in each of
// two pieces is reported as the first of them.
func TestComputeStatsPieces(t *testing.T) {
	n := 3*statsPieceRows + 17
	b := statsBatch(t, n)
	compute := func(procs int, b *Batch) (*Result, error) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		var out Result
		return &out, ComputeStats(context.Background(), b, DefaultParams(), &out)
	}
	one, err := compute(1, b)
	if err != nil {
		t.Fatal(err)
	}
	four, err := compute(4, b)
	if err != nil {
		t.Fatal(err)
	}
	cols := func(r *Result) [][]float32 {
		return [][]float32{r.Entropy, r.Logprob, r.SampledTerm, r.Correction, r.PolarityFactor, r.Polarity, r.PredictedDeltaH}
	}
	for k, c := range cols(one) {
		for i := range c {
			if math.Float32bits(c[i]) != math.Float32bits(cols(four)[k][i]) {
				t.Fatalf("column %d row %d: %v on one goroutine, %v on four", k, i, c[i], cols(four)[k][i])
			}
		}
	}
	for i := range n {
		o, err := rowFromStats(b, i, DefaultParams())
		if err != nil || float32(o.Entropy) != four.Entropy[i] || float32(o.PredictedDeltaH) != four.PredictedDeltaH[i] {
			t.Fatalf("row %d: ComputeStats differs from the row alone (%v, %v)", i, o, err)
		}
	}

	bad := *b.Stats
	bad.SumExp2 = append([]float64(nil), bad.SumExp2...)
	first, later := 2*statsPieceRows+5, 3*statsPieceRows+3 // in the third and fourth pieces
	bad.SumExp2[later], bad.SumExp2[first] = 0, -1
	badBatch := *b
	badBatch.Stats = &bad
	for _, procs := range []int{1, 4} {
		_, err := compute(procs, &badBatch)
		var re *RowError
		if !errors.As(err, &re) || re.Row != first || re.Column != "sum_exp2" {
			t.Errorf("%d goroutines: error %v; want row %d, sum_exp2", procs, err, first)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	if err := ComputeStats(ctx, b, DefaultParams(), &Result{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestStatsRunBitForBit: ComputeStats (statsRun's loop, falling back to rowFromStats) gives,
// bit for bit, what rowFromStats and Finish give row by row, on rows that take every branch of
// Finish (no advantage, A = 0, masked, old log-probability absent, null, clipping or not,
// natural gradient) and rows statsRun leaves to rowFromStats (u_a = −Inf, a bad row's error).
func TestStatsRunBitForBit(t *testing.T) {
	const n = 5000
	base := statsBatch(t, n)
	rng := rand.New(rand.NewPCG(9, 4))
	b := &Batch{TokenID: base.TokenID, Stats: base.Stats, Advantage: make([]float64, n), AdvantageValid: make([]bool, n),
		OldLogprob: make([]float32, n), OldLogprobValid: make([]bool, n), Mask: make([]bool, n)}
	for i := range n {
		b.Advantage[i] = base.Advantage[i]
		if rng.IntN(10) == 0 {
			b.Advantage[i] = 0
		}
		b.AdvantageValid[i] = rng.IntN(8) != 0
		b.Mask[i] = rng.IntN(6) != 0
		b.OldLogprobValid[i] = rng.IntN(5) != 0
		b.OldLogprob[i] = float32(-rng.ExpFloat64() * 2)
		if i%97 == 0 {
			b.Stats.Sampled[i] = math.Inf(-1) // a token of probability 0: rowFromStats' row
		}
		if i%101 == 50 { // u_a − m overflows to −Inf from finite statistics: probability 0 too
			b.Stats.Max[i], b.Stats.Sampled[i] = math.MaxFloat64, -math.MaxFloat64
		}
	}
	clipped := DefaultParams()
	clipped.ClipLow, clipped.ClipHigh, clipped.LR, clipped.Temperature = 0.2, 0.28, 0.3, 0.7
	natural := clipped
	natural.NaturalGradient = true
	variants := []struct {
		name string
		b    *Batch
	}{
		{"every column", b},
		{"no old log-probability", &Batch{TokenID: b.TokenID, Stats: b.Stats, Advantage: b.Advantage, AdvantageValid: b.AdvantageValid, Mask: b.Mask}},
		{"no advantage", &Batch{TokenID: b.TokenID, Stats: b.Stats, Mask: b.Mask}},
		{"no validities", &Batch{TokenID: b.TokenID, Stats: b.Stats, Advantage: b.Advantage, OldLogprob: b.OldLogprob}},
	}
	for _, v := range variants {
		for _, p := range []Params{DefaultParams(), clipped, natural} {
			for _, k := range Kernels() {
				statsAgainstRows(t, fmt.Sprintf("%s, kernel %v", v.name, k), v.b, p, k)
			}
		}
	}
	// Bad rows of each kind: ComputeStats reports the row rowFromStats reports, with each kernel.
	bad := []struct {
		name string
		edit func(b *Batch)
		col  string
	}{
		{"NaN advantage", func(b *Batch) { b.Advantage[1234] = math.NaN(); b.AdvantageValid[1234] = true }, "advantage"},
		{"infinite old log-probability", func(b *Batch) {
			b.OldLogprob[1234], b.OldLogprobValid[1234], b.Mask[1234], b.AdvantageValid[1234], b.Advantage[1234] = float32(math.Inf(1)), true, true, true, 1
		}, "old_logprob"},
		{"u_a above the maximum", func(b *Batch) { b.Stats.Sampled[1234] = b.Stats.Max[1234] + 1 }, "sampled_logit"},
		{"negative sum_exp_rest", func(b *Batch) { b.Stats.SumExpRest[1234] = -1e-9 }, "sum_exp_rest"},
		{"infinite logit_max", func(b *Batch) { b.Stats.Max[1234] = math.Inf(1) }, "logit_max"},
	}
	for _, tc := range bad {
		for _, k := range Kernels() {
			stats := &StatsColumns{}
			stats.Append(b.Stats)
			c := &Batch{TokenID: b.TokenID, Stats: stats, Advantage: append([]float64(nil), b.Advantage...),
				AdvantageValid: append([]bool(nil), b.AdvantageValid...), OldLogprob: append([]float32(nil), b.OldLogprob...),
				OldLogprobValid: append([]bool(nil), b.OldLogprobValid...), Mask: append([]bool(nil), b.Mask...)}
			tc.edit(c)
			var out Result
			err := computeStats(context.Background(), c, DefaultParams(), &out, k)
			var re *RowError
			if !errors.As(err, &re) || re.Row != 1234 || re.Column != tc.col {
				t.Errorf("%s, kernel %v: %v, want a RowError of row 1234, column %s", tc.name, k, err, tc.col)
			}
		}
	}
}

// statsAgainstRows checks computeStats with the kernel k against rowFromStats, row by row, bit
// for bit.
func statsAgainstRows(t *testing.T, name string, b *Batch, p Params, k Kernel) {
	t.Helper()
	n := b.Rows()
	var got, want Result
	if err := computeStats(context.Background(), b, p, &got, k); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	want.Resize(n)
	for i := range n {
		o, err := rowFromStats(b, i, p)
		if err != nil {
			t.Fatalf("%s: row %d: %v", name, i, err)
		}
		o.Store(&want, i)
	}
	for i := range n {
		g := [...]float32{got.Entropy[i], got.Logprob[i], got.SampledTerm[i], got.Correction[i], got.PolarityFactor[i], got.Polarity[i], got.PredictedDeltaH[i]}
		w := [...]float32{want.Entropy[i], want.Logprob[i], want.SampledTerm[i], want.Correction[i], want.PolarityFactor[i], want.Polarity[i], want.PredictedDeltaH[i]}
		for c := range g {
			if math.Float32bits(g[c]) != math.Float32bits(w[c]) {
				t.Fatalf("%s, %+v: row %d output %d: %v, row by row %v", name, p, i, c, g[c], w[c])
			}
		}
		if got.PolarityValid[i] != want.PolarityValid[i] {
			t.Fatalf("%s: row %d: polarity valid %v, row by row %v", name, i, got.PolarityValid[i], want.PolarityValid[i])
		}
	}
}

// BenchmarkComputeStats: ComputeStats on 16,384 rows (one piece, so one goroutine) with
// advantages and old log-probabilities, in ns a row.
//
//	go test ./polarity -run='^$' -bench=ComputeStats
func BenchmarkComputeStats(b *testing.B) {
	const n = statsPieceRows
	batch := statsBatch(b, n)
	var res Result
	if err := ComputeStats(context.Background(), batch, DefaultParams(), &res); err != nil {
		b.Fatal(err)
	}
	batch.OldLogprob = append([]float32(nil), res.Logprob...) // ratios near 1, as in a first epoch
	for b.Loop() {
		if err := ComputeStats(context.Background(), batch, DefaultParams(), &res); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}

// statsModelRow is one row of statistics with an advantage and an old log-probability.
type statsModelRow struct {
	m, rest, s1, s2, s3, ua, adv float64
	old                          float32
}

// statsModel is the float64 arithmetic of rowFromStats and Finish (DefaultParams: τ = 1,
// η = 1, no clipping) with the exponential and log1p given: entropy, log π_a, S_a and ΔĤ.
func statsModel(r statsModelRow, exp, log1p func(float64) float64) [4]float64 {
	s0 := 1 + r.rest
	logS0 := log1p(r.rest)
	shift := r.s1 / s0
	h := logS0 - shift
	c := (r.s3 - shift*r.s2) / (s0 * s0)
	va := r.ua - r.m
	logpi := va - logS0
	sampled := exp(logpi) * (va - shift)
	pol := r.adv * (c - sampled)
	dh := 1 * 1 * exp(logpi-float64(r.old)) * pol
	return [4]float64{h, logpi, sampled, dh}
}

// TestStatsRunVMath: on rows built so that one output's float32 differs when math.Exp and
// math.Log1p replace vexp and vlog1p (in the log1p, in π_a or in the ratio), ComputeStats
// (statsRun, the batch kernels) and rowFromStats both give the outputs of vexp and vlog1p. A
// 1-ulp float64 difference seldom shows in a float32 output: TestStatsRunBitForBit's random rows
// would not see statsRun and Finish differ by that.
func TestStatsRunVMath(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 8))
	f32 := func(x [4]float64) [4]float32 {
		return [4]float32{float32(x[0]), float32(x[1]), float32(x[2]), float32(x[3])}
	}
	v := func(r statsModelRow) [4]float32 { return f32(statsModel(r, vexp, vlog1p)) }
	m := func(r statsModelRow) [4]float32 { return f32(statsModel(r, math.Exp, math.Log1p)) }
	mid := func(x float64) float64 { // a float32 rounding boundary next to x
		f := float32(x)
		return (float64(f) + float64(math.Nextafter32(f, float32(math.Inf(1))))) / 2
	}
	var rows []statsModelRow
	var targets []int
	const perTarget = 12
	for target := range 4 {
		found := 0
		for try := 0; found < perTarget && try < 20000; try++ {
			r := statsModelRow{rest: math.Exp(rng.Float64()*10 - 3), ua: -rng.Float64()}
			r.s1 = -rng.Float64() * r.rest
			r.s2 = 1 + rng.Float64()*r.rest
			r.s3 = -rng.Float64() * r.rest
			r.adv = rng.NormFloat64()
			logpi := r.ua - vlog1p(r.rest)
			r.old = float32(logpi + 0.1*rng.NormFloat64())
			knob := &r.s1 // the input moved, and where to: next to a float32 boundary of the output
			s0 := 1 + r.rest
			switch out := statsModel(r, vexp, vlog1p)[target]; target {
			case 0: // H = logS0 − shift
				r.s1 = (vlog1p(r.rest) - mid(out)) * s0
			case 1: // log π_a = u_a − logS0
				knob = &r.ua
				r.ua = mid(out) + vlog1p(r.rest)
			case 2: // S_a = π_a·(u_a − shift)
				r.s1 = (r.ua - mid(out)/vexp(logpi)) * s0
			case 3: // ΔĤ = ratio·A·T
				knob = &r.adv
				r.adv *= mid(out) / out
			}
			if r.s1 > 0 || r.ua > 0 {
				continue
			}
			x0 := *knob
			for k := range 129 {
				*knob = x0 + float64(k-64)*0x1p-52*math.Abs(x0)
				if v(r)[target] != m(r)[target] && r.s1 <= 0 && r.ua <= 0 {
					rows = append(rows, r)
					targets = append(targets, target)
					found++
					break
				}
			}
		}
		if found < perTarget {
			t.Fatalf("output %d: found %d rows of %d", target, found, perTarget)
		}
	}
	n := len(rows)
	st := &StatsColumns{}
	st.Resize(n)
	b := &Batch{TokenID: make([]int32, n), Advantage: make([]float64, n), OldLogprob: make([]float32, n), Stats: st}
	for i, r := range rows {
		st.Max[i], st.SumExpRest[i], st.SumExpV[i], st.SumExp2[i], st.SumExp2V[i], st.Sampled[i] = r.m, r.rest, r.s1, r.s2, r.s3, r.ua
		b.Advantage[i], b.OldLogprob[i] = r.adv, r.old
	}
	var got Result
	if err := ComputeStats(context.Background(), b, DefaultParams(), &got); err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		o, err := rowFromStats(b, i, DefaultParams())
		if err != nil {
			t.Fatal(err)
		}
		want, math := v(r), m(r)
		for k, g := range [...][4]float32{
			{got.Entropy[i], got.Logprob[i], got.SampledTerm[i], got.PredictedDeltaH[i]},
			{float32(o.Entropy), float32(o.Logprob), float32(o.SampledTerm), float32(o.PredictedDeltaH)},
		} {
			if g != want {
				t.Errorf("row %d (%+v), output %d: %s gives %v, vexp and vlog1p %v (math.Exp and math.Log1p %v)",
					i, r, targets[i], [...]string{"ComputeStats", "rowFromStats"}[k], g, want, math)
			}
		}
	}
}
