package polarity

import (
	"context"
	"math"
	"testing"
)

// docs/MATH.md §4: z = [2, 1, 0.1, −1], η = 1.
var (
	goldenZ     = []float64{2.0, 1.0, 0.1, -1.0}
	goldenPi    = []float64{0.638066351147938, 0.234731492690605, 0.095434703113622, 0.031767453047836}
	goldenS     = []float64{0.326281473893423, -0.114699246410098, -0.132524466387716, -0.079057761095608}
	goldenH     = 0.960672790130348
	goldenC     = 0.166106807355343
	goldenH07   = 0.717773779666263
	goldenC07   = 0.214141111305770
	goldenDelta = []struct {
		name    string
		tau     float64
		natural bool
		a       int
		adv     float64
		dH      float64
	}{
		{"τ=1, a=0, A=+1 (contract)", 1, false, 0, +1, -0.160174666538},
		{"τ=1, a=0, A=−1 (expand)", 1, false, 0, -1, +0.160174666538},
		{"τ=1, a=3, A=+1 (expand)", 1, false, 3, +1, +0.245164568451},
		{"τ=1, a=3, A=−1 (contract)", 1, false, 3, -1, -0.245164568451},
		{"τ=0.7, a=0, A=+1", 0.7, false, 0, +1, -0.244030795198},
		{"τ=0.7, a=3, A=+1", 0.7, false, 3, +1, +0.518871031578},
		{"natural gradient, τ=1, a=0, A=+1", 1, true, 0, +1, -0.51135978775},
		{"natural gradient, τ=1, a=3, A=+1", 1, true, 3, +1, +2.48864021225},
	}
)

// The golden values are printed to 15 decimals (ΔH to 12 or 11): a float64 computation agrees
// to rounding of the printed digits, so 1e-12 absolute (ΔH: 1e-11 for the 11-decimal ones).
const goldenTol = 1e-12

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

func scaled(z []float64, tau float64) []float64 {
	u := make([]float64, len(z))
	for j, x := range z {
		u[j] = x / tau
	}
	return u
}

func TestGoldenReferenceRow(t *testing.T) {
	for a := range goldenZ {
		st := ReferenceRow(goldenZ, a)
		if pi := math.Exp(st.Logprob); !near(pi, goldenPi[a], goldenTol) {
			t.Errorf("a=%d: π_a = %.15f, want %.15f", a, pi, goldenPi[a])
		}
		if !near(st.H, goldenH, goldenTol) || !near(st.C, goldenC, goldenTol) {
			t.Errorf("a=%d: H, C = %.15f, %.15f, want %.15f, %.15f", a, st.H, st.C, goldenH, goldenC)
		}
		if !near(st.SampledTerm, goldenS[a], goldenTol) {
			t.Errorf("S_%d = %.15f, want %.15f", a, st.SampledTerm, goldenS[a])
		}
	}
	st := ReferenceRow(scaled(goldenZ, 0.7), 0)
	if !near(st.H, goldenH07, goldenTol) || !near(st.C, goldenC07, goldenTol) {
		t.Errorf("τ=0.7: H, C = %.15f, %.15f, want %.15f, %.15f", st.H, st.C, goldenH07, goldenC07)
	}
}

// TestGoldenSums checks the one-pass float64 state (Add in every order of the elements, and
// merges of single-element states) against the golden values: float64 rounding only, 1e-12.
func TestGoldenSums(t *testing.T) {
	orders := [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {2, 0, 3, 1}, {1, 3, 0, 2}}
	for _, ord := range orders {
		added, merged := EmptySums(), EmptySums()
		for _, j := range ord {
			added.Add(goldenZ[j])
			one := EmptySums()
			one.Add(goldenZ[j])
			merged.Merge(one)
		}
		for name, s := range map[string]Sums{"Add": added, "Merge": merged} {
			st := s.Finalize()
			if !near(st.H, goldenH, goldenTol) || !near(st.C, goldenC, goldenTol) {
				t.Errorf("%s in order %v: H, C = %.15f, %.15f, want %.15f, %.15f", name, ord, st.H, st.C, goldenH, goldenC)
			}
			for a := range goldenZ {
				logpi, sa := st.Sampled(goldenZ[a])
				if !near(math.Exp(logpi), goldenPi[a], goldenTol) || !near(sa, goldenS[a], goldenTol) {
					t.Errorf("%s in order %v, a=%d: π, S = %.15f, %.15f, want %.15f, %.15f", name, ord, a, math.Exp(logpi), sa, goldenPi[a], goldenS[a])
				}
			}
		}
	}
}

func goldenBatch(dtype Dtype, a int, adv float64) *Batch {
	b := &Batch{Logits: Logits{Dtype: dtype, V: 4}, TokenID: []int32{int32(a)}, Advantage: []float64{adv}}
	for _, z := range goldenZ {
		switch dtype {
		case Float32:
			b.Logits.F32 = append(b.Logits.F32, float32(z))
		case Float16:
			b.Logits.Bits = append(b.Logits.Bits, Float32ToFloat16(float32(z)))
		case BFloat16:
			b.Logits.Bits = append(b.Logits.Bits, Float32ToBFloat16(float32(z)))
		}
	}
	return b
}

// TestGoldenDeltaH checks the ΔĤ table through Reference64 (float64: 1e-11, the table's last
// printed digit) and through the CPU engine with float32 logits. The engine's tolerance is
// 1e-6 relative: the float32 input rounds 0.1 to 0.100000001490116 (moves π by ~1.5e-9), the
// engine's float32 exponentials and block sums contribute ~1e-7 (measured ≤ 7e-8 on this row),
// and the float32 output rounds by 6e-8.
func TestGoldenDeltaH(t *testing.T) {
	for _, c := range goldenDelta {
		p := DefaultParams()
		p.Temperature = c.tau
		p.NaturalGradient = c.natural
		b := goldenBatch(Float32, c.a, c.adv)
		// The exact float64 logits through ReferenceRow and Finish.
		st := ReferenceRow(scaled(goldenZ, c.tau), c.a)
		o, err := Finish(b, 0, p, st.H, st.Logprob, st.SampledTerm, st.C)
		if err != nil || !near(o.PredictedDeltaH, c.dH, 1e-11) {
			t.Errorf("%s: reference ΔH = %.12f (%v), want %.12f", c.name, o.PredictedDeltaH, err, c.dH)
		}
		if c.tau == 1 && !c.natural && !near(o.Polarity, c.dH, 1e-11) {
			t.Errorf("%s: P = %.12f, want ΔH/(η/τ²) = %.12f", c.name, o.Polarity, c.dH)
		}

		// The float32 logits through Reference64 and the CPU engine.
		outs, err := Reference64(b, p)
		if err != nil || !near(outs[0].PredictedDeltaH, c.dH, 1e-8) { // float32 input: 0.1 moves
			t.Errorf("%s: Reference64 ΔH = %.12f (%v), want %.12f", c.name, outs[0].PredictedDeltaH, err, c.dH)
		}
		var r Result
		if err := NewCPU(1).Compute(context.Background(), b, p, &r); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := float64(r.PredictedDeltaH[0]); math.Abs(got-c.dH) > 1e-6*math.Abs(c.dH) {
			t.Errorf("%s: CPU ΔH = %.9f, want %.12f (relative error %.2g > 1e-6)", c.name, got, c.dH, math.Abs(got-c.dH)/math.Abs(c.dH))
		}
		wantH, wantC := goldenH, goldenC
		if c.tau != 1 {
			wantH, wantC = goldenH07, goldenC07
		}
		if got := float64(r.Entropy[0]); math.Abs(got-wantH) > 1e-6*wantH {
			t.Errorf("%s: CPU H = %.9f, want %.15f", c.name, got, wantH)
		}
		if got := float64(r.Correction[0]); math.Abs(got-wantC) > 1e-6*wantC {
			t.Errorf("%s: CPU C = %.9f, want %.15f", c.name, got, wantC)
		}
		if c.tau == 1 {
			if got := float64(r.SampledTerm[0]); math.Abs(got-goldenS[c.a]) > 1e-6*math.Abs(goldenS[c.a]) {
				t.Errorf("%s: CPU S = %.9f, want %.15f", c.name, got, goldenS[c.a])
			}
			if got := math.Exp(float64(r.Logprob[0])); math.Abs(got-goldenPi[c.a]) > 1e-6*goldenPi[c.a] {
				t.Errorf("%s: CPU π = %.9f, want %.15f", c.name, got, goldenPi[c.a])
			}
		}
	}
}
