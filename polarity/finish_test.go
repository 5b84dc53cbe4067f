package polarity

import (
	"errors"
	"math"
	"testing"
)

// TestFinish: the token step of docs/MATH.md §2 on hand-computed cases. Inputs H = 1, log π_a =
// log 0.5, S_a = 0.2, C = 0.05 (T = −0.15, T_npg = −(log 0.5 + 1) = −0.306853), η = 2, τ = 0.5
// (η/τ² = 8). Expected values are written out; 1e-15 relative covers the float64 rounding of
// the one product that forms each.
func TestFinish(t *testing.T) {
	const k = 8.0 // η/τ²
	h, sa, c := 1.0, 0.2, 0.05
	T := c - sa // float64 arithmetic, as Finish does it
	logpi := math.Log(0.5)
	Tnpg := -(logpi + h)
	inf := math.Inf(1)
	f32 := func(x float64) []float32 { return []float32{float32(x)} }
	for _, tc := range []struct {
		name      string
		adv       []float64 // nil: no advantage column
		advValid  []bool
		old       []float32
		mask      []bool
		clip      [2]float64 // ε_low, ε_high
		natural   bool
		wantValid bool
		wantP     float64
		wantDH    float64
	}{
		{name: "no advantage column", clip: [2]float64{inf, inf}, wantValid: false},
		{name: "null advantage", adv: []float64{1}, advValid: []bool{false}, clip: [2]float64{inf, inf}},
		{name: "A=+1", adv: []float64{1}, clip: [2]float64{inf, inf}, wantValid: true, wantP: T, wantDH: k * T},
		{name: "A=−2.5", adv: []float64{-2.5}, clip: [2]float64{inf, inf}, wantValid: true, wantP: -2.5 * T, wantDH: k * -2.5 * T},
		{name: "A=0", adv: []float64{0}, clip: [2]float64{inf, inf}, wantValid: true},
		{name: "natural gradient", adv: []float64{1}, natural: true, clip: [2]float64{inf, inf}, wantValid: true, wantP: Tnpg, wantDH: k * Tnpg},
		{name: "masked: P reported, ΔH 0", adv: []float64{1}, mask: []bool{false}, clip: [2]float64{inf, inf}, wantValid: true, wantP: T},
		// r = exp(log π_a − old) = 0.5/old_prob.
		{name: "r = 1.25 ≤ 1+0.28, A>0", adv: []float64{1}, old: f32(math.Log(0.4)), clip: [2]float64{0.2, 0.28},
			wantValid: true, wantP: T, wantDH: k * 1.25 * T},
		{name: "r = 1.5 > 1+0.28, A>0: clipped", adv: []float64{1}, old: f32(math.Log(0.5 / 1.5)), clip: [2]float64{0.2, 0.28},
			wantValid: true, wantP: T},
		{name: "r = 1.5, A<0: not clipped", adv: []float64{-1}, old: f32(math.Log(0.5 / 1.5)), clip: [2]float64{0.2, 0.28},
			wantValid: true, wantP: -T, wantDH: k * 1.5 * -T},
		{name: "r = 0.5 < 1−0.2, A<0: clipped", adv: []float64{-1}, old: f32(0), clip: [2]float64{0.2, 0.28},
			wantValid: true, wantP: -T},
		{name: "r = 0.5, A>0: not clipped", adv: []float64{1}, old: f32(0), clip: [2]float64{0.2, 0.28},
			wantValid: true, wantP: T, wantDH: k * 0.5 * T},
		{name: "r = 1.5, no clipping (+Inf)", adv: []float64{1}, old: f32(math.Log(0.5 / 1.5)), clip: [2]float64{inf, inf},
			wantValid: true, wantP: T, wantDH: k * 1.5 * T},
	} {
		p := Params{Temperature: 0.5, LR: 2, ClipLow: tc.clip[0], ClipHigh: tc.clip[1], NaturalGradient: tc.natural}
		b := &Batch{TokenID: []int32{0}, Advantage: tc.adv, AdvantageValid: tc.advValid, OldLogprob: tc.old, Mask: tc.mask}
		o, err := Finish(b, 0, p, h, logpi, sa, c)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		wantT := T
		if tc.natural {
			wantT = Tnpg
		}
		if o.Entropy != h || o.Logprob != logpi || o.SampledTerm != sa || o.Correction != c || o.PolarityFactor != wantT {
			t.Errorf("%s: %+v does not pass through H, log π, S, C or T = %g", tc.name, o, wantT)
		}
		// old_logprob is float32: r is 0.5/old_prob to ~6e-8.
		tol := 1e-15
		if tc.old != nil {
			tol = 2e-7
		}
		if o.PolarityValid != tc.wantValid || math.Abs(o.Polarity-tc.wantP) > 1e-15*math.Abs(tc.wantP) ||
			math.Abs(o.PredictedDeltaH-tc.wantDH) > tol*math.Abs(tc.wantDH) || (tc.wantDH == 0 && o.PredictedDeltaH != 0) {
			t.Errorf("%s: valid %v, P %.17g, ΔH %.17g; want %v, %.17g, %.17g", tc.name, o.PolarityValid, o.Polarity, o.PredictedDeltaH, tc.wantValid, tc.wantP, tc.wantDH)
		}
	}
}

// TestFinishEdges: a token of probability 0 (log π_a = −Inf): S_a = 0 and T_npg = +Inf; with an
// old log-probability r = 0, so ΔH = 0 (not NaN); A = 0 gives P = 0 (not 0·∞). Data errors name
// the column.
func TestFinishEdges(t *testing.T) {
	ninf := math.Inf(-1)
	p := DefaultParams()
	p.NaturalGradient = true
	b := &Batch{TokenID: []int32{0}, Advantage: []float64{2}}
	o, err := Finish(b, 0, p, 0.7, ninf, 0, 0.1)
	if err != nil || !math.IsInf(o.PolarityFactor, 1) || !math.IsInf(o.Polarity, 1) || !math.IsInf(o.PredictedDeltaH, 1) {
		t.Errorf("π_a = 0, natural gradient, A=2, no ratio: %+v (%v), want T = P = ΔH = +Inf", o, err)
	}
	b.OldLogprob = []float32{-3}
	if o, err = Finish(b, 0, p, 0.7, ninf, 0, 0.1); err != nil || o.PredictedDeltaH != 0 {
		t.Errorf("π_a = 0 with old log-prob: ΔH = %v (%v), want 0 (r = 0)", o.PredictedDeltaH, err)
	}
	b.Advantage[0] = 0
	if o, err = Finish(b, 0, p, 0.7, ninf, 0, 0.1); err != nil || o.Polarity != 0 || o.PredictedDeltaH != 0 {
		t.Errorf("π_a = 0, A = 0: P = %v, ΔH = %v (%v), want 0, 0", o.Polarity, o.PredictedDeltaH, err)
	}

	for _, tc := range []struct {
		name   string
		b      *Batch
		column string
	}{
		{"NaN advantage", &Batch{TokenID: []int32{0, 0}, Advantage: []float64{1, math.NaN()}}, "advantage"},
		{"+Inf advantage", &Batch{TokenID: []int32{0, 0}, Advantage: []float64{1, math.Inf(1)}}, "advantage"},
		{"NaN old log-prob", &Batch{TokenID: []int32{0, 0}, Advantage: []float64{1, 1}, OldLogprob: []float32{0, float32(math.NaN())}}, "old_logprob"},
		{"−Inf old log-prob", &Batch{TokenID: []int32{0, 0}, Advantage: []float64{1, 1}, OldLogprob: []float32{0, float32(ninf)}}, "old_logprob"},
	} {
		_, err := Finish(tc.b, 1, DefaultParams(), 1, -1, 0.1, 0.2)
		var re *RowError
		if !errors.As(err, &re) || re.Row != 1 || re.Column != tc.column {
			t.Errorf("%s: error %v, want a RowError for row 1, column %s", tc.name, err, tc.column)
		}
	}
	// A bad old log-prob is no error where it is not needed: masked, or without advantage.
	b = &Batch{TokenID: []int32{0}, Advantage: []float64{1}, OldLogprob: []float32{float32(math.NaN())}, Mask: []bool{false}}
	if _, err := Finish(b, 0, DefaultParams(), 1, -1, 0.1, 0.2); err != nil {
		t.Errorf("masked token with NaN old log-prob: %v", err)
	}
}
