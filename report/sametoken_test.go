package report

import (
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/run"
)

// sameTokenSteps feeds steps of n tokens whose entropy after the first update is
// H + 3·w·ΔĤ on trained tokens (so the same-token fit has slope 3 and r = 1); masked tokens
// and the null entropy_after of every fifth token get values far off, which the fit must leave
// out. after: nil omits the column; it may also replace a step's column (bad values, types).
func sameTokenSteps(t *testing.T, s *Series, steps, n int, after func(k int, h, a []float64, valid []bool) arrow.Array) error {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	for k := range steps {
		b := polarity.Batch{TokenID: make([]int32, n), Mask: make([]bool, n), Advantage: make([]float64, n)}
		var res polarity.Result
		res.Resize(n)
		weight := make([]float32, n)
		hs, as := make([]float64, n), make([]float64, n)
		valid := make([]bool, n)
		for i := range n {
			b.Mask[i] = i%6 != 5
			b.Advantage[i] = 1
			res.PolarityValid[i] = true
			res.PolarityFactor[i] = float32(0.1 * float64(i%3-1))
			res.Polarity[i] = res.PolarityFactor[i]
			res.Entropy[i] = float32(0.5 + 0.25*float64(i%2))
			res.PredictedDeltaH[i] = float32(0.001 * float64((k*7+i)%5-k))
			weight[i] = 1.5
			hs[i] = float64(res.Entropy[i])
			valid[i] = i%5 != 4
			as[i] = hs[i] + 3*float64(weight[i])*float64(res.PredictedDeltaH[i])
			if !b.Mask[i] || !valid[i] {
				as[i] = hs[i] + 10
			}
		}
		r := &run.Rows{Step: int64(k), Batch: &b, Result: &res, Weight: weight}
		if after != nil {
			col := after(k, hs, as, valid)
			sch := arrow.NewSchema([]arrow.Field{{Name: papoio.ColEntropyAfter, Type: col.DataType(), Nullable: true}}, nil)
			rec := array.NewRecord(sch, []arrow.Array{col}, int64(n))
			col.Release()
			r.Passthrough = rec
			defer rec.Release()
		}
		if err := s.Rows(r); err != nil {
			return err
		}
		var st polarity.StepStats
		st.Add(&b, &res, 0, n)
		sum := papoio.StepSummary{Step: int64(k), Tokens: st.Tokens, MeanEntropy: st.MeanEntropy(),
			ReweightedPredictedDeltaH: 1.5 * st.SumDeltaH}
		if err := s.Step(&run.StepReport{Summary: sum, Reweight: papo.StepResult{}}); err != nil {
			return err
		}
	}
	return nil
}

func float64After(mem memory.Allocator) func(int, []float64, []float64, []bool) arrow.Array {
	return func(_ int, _, a []float64, valid []bool) arrow.Array {
		bld := array.NewFloat64Builder(mem)
		defer bld.Release()
		bld.AppendValues(a, valid)
		return bld.NewArray()
	}
}

func TestPredictedRealizedSameTokens(t *testing.T) {
	s := NewSeries("same", 0)
	if err := sameTokenSteps(t, s, 6, 60, float64After(memory.DefaultAllocator)); err != nil {
		t.Fatal(err)
	}
	f := s.PredictedRealized()
	// float32 entropies and ΔĤ: the realized change is exact to about 1e-7 of H.
	if !f.SameToken || f.Pairs != 6 || math.Abs(f.Slope-3) > 1e-3 || math.Abs(f.Correlation-1) > 1e-6 {
		t.Fatalf("same-token fit: same %v, %d pairs, slope %v, r %v; want same-token, 6 pairs (each step), slope 3, r 1",
			f.SameToken, f.Pairs, f.Slope, f.Correlation)
	}
	if got := f.Sentence(); !strings.Contains(got, "the same tokens' entropy after the first update") || !strings.Contains(got, "Over 6 steps") {
		t.Errorf("sentence %q does not describe a same-token fit over 6 steps", got)
	}
	if f.NoiseSentence() != "" {
		t.Errorf("a same-token fit has a noise sentence: %q", f.NoiseSentence())
	}
	fig, err := (&Report{Series: []*Series{s}}).predictedFigure(s, f)
	if err != nil || fig.NoData != "" || !strings.Contains(fig.Caption, papoio.ColEntropyAfter) {
		t.Errorf("figure: %v, no data %q, caption %q; want a drawing captioned with %s", err, fig.NoData, fig.Caption, papoio.ColEntropyAfter)
	}
}

func TestPredictedRealizedNextStepNoise(t *testing.T) {
	s := NewSeries("fresh", 0)
	if err := sameTokenSteps(t, s, 6, 60, nil); err != nil {
		t.Fatal(err)
	}
	f := s.PredictedRealized()
	// 50 trained tokens per step (every sixth, at 0.75 nats, is masked): 30 at 0.5 and 20 at
	// 0.75 nats, sd = 0.25·√(0.4·0.6)·√(50/49), se = sd/√50, and a pair's bound is √2·se.
	want := math.Sqrt2 * 0.25 * math.Sqrt(0.24*50/49) / math.Sqrt(50)
	if f.SameToken || f.Pairs != 5 || math.Abs(f.MeanNoise()-want) > 1e-6 {
		t.Fatalf("next-step fit: same %v, %d pairs, noise %v; want 5 next-step pairs, noise %v", f.SameToken, f.Pairs, f.MeanNoise(), want)
	}
	for _, w := range []string{"fresh samples", "±0.025 nats", papoio.ColEntropyAfter} {
		if !strings.Contains(f.NoiseSentence(), w) {
			t.Errorf("noise sentence %q lacks %q", f.NoiseSentence(), w)
		}
	}
	fig, err := (&Report{Series: []*Series{s}}).predictedFigure(s, f)
	if err != nil || !strings.Contains(fig.Caption, "fresh samples") {
		t.Errorf("figure: %v, caption %q; want the noise named", err, fig.Caption)
	}
}

func TestPredictedRealizedBadEntropyAfter(t *testing.T) {
	mem := memory.DefaultAllocator
	for _, tc := range []struct {
		name  string
		after func(int, []float64, []float64, []bool) arrow.Array
		want  string
	}{
		{"NaN", func(k int, h, a []float64, valid []bool) arrow.Array {
			a = append([]float64(nil), a...)
			if k == 2 {
				a[7] = math.NaN()
			}
			return float64After(mem)(k, h, a, valid)
		}, "step 2, row 7 of the piece: entropy_after is NaN"},
		{"negative", func(k int, h, a []float64, valid []bool) arrow.Array {
			a = append([]float64(nil), a...)
			a[3] = -0.5
			return float64After(mem)(k, h, a, valid)
		}, "step 0, row 3 of the piece: entropy_after is -0.5"},
		{"int64", func(_ int, _, a []float64, _ []bool) arrow.Array {
			bld := array.NewInt64Builder(mem)
			defer bld.Release()
			for range a {
				bld.Append(1)
			}
			return bld.NewArray()
		}, "column entropy_after has type int64; want float32 or float64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sameTokenSteps(t, NewSeries("bad", 0), 4, 30, tc.after)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
