package polarity

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// statsBatch is n rows of row statistics with advantages: those of random logits (V = 7) from
// the CPU engine's own pass, so that every row is valid.
func statsBatch(t *testing.T, n int) *Batch {
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
			var got, want Result
			if err := ComputeStats(context.Background(), v.b, p, &got); err != nil {
				t.Fatalf("%s: %v", v.name, err)
			}
			want.Resize(n)
			for i := range n {
				o, err := rowFromStats(v.b, i, p)
				if err != nil {
					t.Fatalf("%s: row %d: %v", v.name, i, err)
				}
				o.Store(&want, i)
			}
			for i := range n {
				g := [...]float32{got.Entropy[i], got.Logprob[i], got.SampledTerm[i], got.Correction[i], got.PolarityFactor[i], got.Polarity[i], got.PredictedDeltaH[i]}
				w := [...]float32{want.Entropy[i], want.Logprob[i], want.SampledTerm[i], want.Correction[i], want.PolarityFactor[i], want.Polarity[i], want.PredictedDeltaH[i]}
				for k := range g {
					if math.Float32bits(g[k]) != math.Float32bits(w[k]) {
						t.Fatalf("%s, %+v: row %d output %d: %v, row by row %v", v.name, p, i, k, g[k], w[k])
					}
				}
				if got.PolarityValid[i] != want.PolarityValid[i] {
					t.Fatalf("%s: row %d: polarity valid %v, row by row %v", v.name, i, got.PolarityValid[i], want.PolarityValid[i])
				}
			}
		}
	}
	// Bad rows of each kind: ComputeStats reports the row rowFromStats reports.
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
		stats := &StatsColumns{}
		stats.Append(b.Stats)
		c := &Batch{TokenID: b.TokenID, Stats: stats, Advantage: append([]float64(nil), b.Advantage...),
			AdvantageValid: append([]bool(nil), b.AdvantageValid...), OldLogprob: append([]float32(nil), b.OldLogprob...),
			OldLogprobValid: append([]bool(nil), b.OldLogprobValid...), Mask: append([]bool(nil), b.Mask...)}
		tc.edit(c)
		var out Result
		err := ComputeStats(context.Background(), c, DefaultParams(), &out)
		var re *RowError
		if !errors.As(err, &re) || re.Row != 1234 || re.Column != tc.col {
			t.Errorf("%s: %v, want a RowError of row 1234, column %s", tc.name, err, tc.col)
		}
	}
}

// BenchmarkComputeStats: ComputeStats on 16,384 rows (one piece, so one goroutine) with
// advantages and old log-probabilities, in ns a row.
//
//	go test ./polarity -run='^$' -bench=ComputeStats
func BenchmarkComputeStats(b *testing.B) {
	const n, v = statsPieceRows, 7
	rng := rand.New(rand.NewPCG(5, 23))
	in := &Batch{Logits: Logits{Dtype: Float32, V: v, F32: make([]float32, n*v)}, TokenID: make([]int32, n),
		Advantage: make([]float64, n), OldLogprob: make([]float32, n)}
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
		b.Fatal(err)
	}
	copy(in.OldLogprob, res.Logprob)
	batch := &Batch{TokenID: in.TokenID, Advantage: in.Advantage, OldLogprob: in.OldLogprob, Stats: &st}
	for b.Loop() {
		if err := ComputeStats(context.Background(), batch, DefaultParams(), &res); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}
