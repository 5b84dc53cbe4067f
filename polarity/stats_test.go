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
