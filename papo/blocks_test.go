package papo

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// TestApplyBlocks: a step of several weighBlocks gives the same weights, Ã and statistics bit
// for bit on 1 and on 4 goroutines, for every method whose final pass is blocked; the counts,
// minimum and maximum are those of one pass in token order, and the sums within a few ulps of
// its sums.
func TestApplyBlocks(t *testing.T) {
	n := 3*weighBlock + 17
	tok := randomStep(rand.New(rand.NewPCG(3, 4)), n)
	tok.Entropy[5], tok.Polarity[5] = 0, 0
	papoC := papoConfig(0.5, GSign, false)
	renorm := papoConfig(0.5, GSign, true)
	tanh := papoConfig(0.3, GTanh, false)
	shaping := DefaultConfig()
	shaping.Method = MethodEntropyShaping
	none := DefaultConfig()
	none.Method = MethodNone
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"papo", papoC}, {"papo renormalized", renorm}, {"papo tanh", tanh}, {"entropy shaping", shaping}, {"none", none}} {
		run := func(procs int) ([]float32, []float64, WeightStats) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			return runApply(t, c.cfg, 0.7, tok)
		}
		w1, r1, s1 := run(1)
		w4, r4, s4 := run(4)
		for i := range n {
			if math.Float32bits(w1[i]) != math.Float32bits(w4[i]) || math.Float64bits(r1[i]) != math.Float64bits(r4[i]) {
				t.Fatalf("%s: token %d: w, Ã = %v, %v on 1 goroutine, %v, %v on 4", c.name, i, w1[i], r1[i], w4[i], r4[i])
			}
		}
		if s1 != s4 {
			t.Fatalf("%s: statistics on 1 goroutine %+v, on 4 %+v", c.name, s1, s4)
		}
		// One pass in token order over the same weights.
		var acc WeightAccumulator
		for i := range n {
			if tok.weighted(i) {
				acc.Add(float64(w1[i]), tok.Advantage[i], r1[i], float64(tok.PredictedDeltaH[i]), r1[i] != tok.Advantage[i])
			}
		}
		want := acc.Stats(s1.Scale)
		if s1.Weighted != want.Weighted || s1.Changed != want.Changed {
			t.Fatalf("%s: %d weighted, %d changed; one pass: %d, %d", c.name, s1.Weighted, s1.Changed, want.Weighted, want.Changed)
		}
		// float32 rounding keeps order: the extremes are those of the float32 weights exactly.
		if float32(s1.WeightMin) != float32(want.WeightMin) || float32(s1.WeightMax) != float32(want.WeightMax) {
			t.Fatalf("%s: weights in [%v, %v]; one pass over the float32 weights [%v, %v]", c.name, s1.WeightMin, s1.WeightMax,
				want.WeightMin, want.WeightMax)
		}
		// The sums differ from one pass by the order of their additions (Σ|A|, Σ|Ã|, Σ ΔĤ: the
		// same terms) and by the weights' float32 rounding (those that take w).
		for _, v := range []struct {
			name      string
			got, want float64
			rel       float64
		}{
			{"Σ|A|", s1.SumAbsAdvantage, want.SumAbsAdvantage, 1e-12},
			{"Σ|Ã|", s1.SumAbsReweighted, want.SumAbsReweighted, 1e-12},
			{"Σ ΔĤ", s1.SumPredictedDeltaH, want.SumPredictedDeltaH, 1e-9},
			{"Σ w·ΔĤ", s1.SumWeightedPredictedDeltaH, want.SumWeightedPredictedDeltaH, 1e-6},
			{"mean w", s1.WeightMean, want.WeightMean, 1e-6},
		} {
			if d := math.Abs(v.got - v.want); d > v.rel*math.Max(math.Abs(v.want), 1) {
				t.Errorf("%s: %s = %.17g; one pass %.17g", c.name, v.name, v.got, v.want)
			}
		}
	}
}

// TestWeightAccumulatorMerge: merging the accumulators of consecutive runs of tokens gives one
// accumulator's counts, minimum and maximum, the first of equal values (−0 before +0) kept.
func TestWeightAccumulatorMerge(t *testing.T) {
	negZero := math.Copysign(0, -1)
	tokens := []struct{ w, a, r, dH float64 }{
		{2, 1, 2, 0.5}, {negZero, 1, 0, 0}, {3, -1, -3, 0.1}, // first run
		{0, 1, 0, 0.2}, {3, 2, 6, 0}, {-1, 1, -1, -0.3}, // second run
	}
	var whole, first, second WeightAccumulator
	for i, tk := range tokens {
		whole.Add(tk.w, tk.a, tk.r, tk.dH, tk.r != tk.a)
		if i < 3 {
			first.Add(tk.w, tk.a, tk.r, tk.dH, tk.r != tk.a)
		} else {
			second.Add(tk.w, tk.a, tk.r, tk.dH, tk.r != tk.a)
		}
	}
	var merged WeightAccumulator
	merged.merge(&WeightAccumulator{})
	merged.merge(&first)
	merged.merge(&second)
	merged.merge(&WeightAccumulator{})
	got, want := merged.Stats(1), whole.Stats(1)
	if got != want {
		t.Fatalf("merged %+v; one accumulator %+v", got, want)
	}
	if math.Float64bits(got.WeightMax) != math.Float64bits(3) || got.WeightMin != -1 {
		t.Fatalf("min, max = %v, %v; want −1, 3", got.WeightMin, got.WeightMax)
	}
	var zeros WeightAccumulator
	a, b := WeightAccumulator{}, WeightAccumulator{}
	a.Add(negZero, 1, 0, 0, true)
	b.Add(0, 1, 0, 0, true)
	zeros.merge(&a)
	zeros.merge(&b)
	if st := zeros.Stats(1); !math.Signbit(st.WeightMin) || !math.Signbit(st.WeightMax) {
		t.Fatalf("min, max of −0 then +0 = %v, %v (sign bits %v, %v); want the first, −0", st.WeightMin, st.WeightMax,
			math.Signbit(st.WeightMin), math.Signbit(st.WeightMax))
	}
}
