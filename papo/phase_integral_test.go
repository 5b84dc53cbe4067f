package papo

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// integralConfig is target mode with the integral term: β = 0 (E is the step's mean, so the
// hand-computed values below need no EMA), H* = 1, κ = 2.
func integralConfig(ki float64) PhaseConfig {
	return PhaseConfig{Mode: PhaseTarget, TargetEntropy: 1, Beta: 0, Window: 10, TargetKappa: 2, SlopeKappa: 50, TargetIntegral: ki}
}

func TestPhaseIntegralHandComputed(t *testing.T) {
	cases := []struct {
		name     string
		ki       float64
		kappa    float64   // 0: 2
		means    []float64 // H̄ of each step (one token each)
		phi      []float64 // expected φ_k
		integral []float64 // expected I_k
	}{
		{
			// e = 1 − H̄: 0.5, −0.5, 0.1; I = 0.5, 0, 0.1; φ = tanh(2e + 0.5·I).
			name:     "κ_I = 0.5",
			ki:       0.5,
			means:    []float64{0.5, 1.5, 0.9},
			phi:      []float64{math.Tanh(1.25), math.Tanh(-1), math.Tanh(0.25)},
			integral: []float64{0.5, 0, 0.1},
		},
		{
			// κ = 0.01, κ_I = 1 (|I| ≤ 3). e = 1 − H̄ = −10 takes I to −10, held at −3; from there
			// each e = 1 unwinds it although φ < 0 (e·arg < 0): −2.5 (e = 0.5), −1.5, −0.5, 0.5,
			// 1.5; then arg = 0.01 + 1.5 ≥ atanh(0.9) with e > 0: φ is saturated in the error's
			// direction and I stays.
			name:     "κ_I = 1, clamp and conditional integration",
			ki:       1,
			kappa:    0.01,
			means:    []float64{11, 0.5, 0, 0, 0, 0, 0},
			phi:      []float64{math.Tanh(-3.1), math.Tanh(0.005 - 2.5), math.Tanh(0.01 - 1.5), math.Tanh(0.01 - 0.5), math.Tanh(0.51), math.Tanh(1.51), math.Tanh(1.51)},
			integral: []float64{-3, -2.5, -1.5, -0.5, 0.5, 1.5, 1.5},
		},
		{
			// Far below the target φ = tanh(2) is saturated: the integral does not wind up; far
			// above it neither.
			name:     "κ_I = 1, saturated",
			ki:       1,
			means:    []float64{0, 0, 3},
			phi:      []float64{math.Tanh(2), math.Tanh(2), math.Tanh(-4)},
			integral: []float64{0, 0, 0},
		},
		{
			// κ_I = 0 is the proportional controller: I stays 0.
			name:     "κ_I = 0",
			ki:       0,
			means:    []float64{0.5, 0.5},
			phi:      []float64{math.Tanh(1), math.Tanh(1)},
			integral: []float64{0, 0},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := integralConfig(tc.ki)
			if tc.kappa != 0 {
				c.TargetKappa = tc.kappa
			}
			d, err := NewDetector(c)
			if err != nil {
				t.Fatal(err)
			}
			for k, h := range tc.means {
				ph, err := d.Observe(int64(k), h, 1)
				if err != nil {
					t.Fatalf("step %d: %v", k, err)
				}
				if math.Abs(ph.Phi-tc.phi[k]) > phaseTol || math.Abs(d.State().Integral-tc.integral[k]) > phaseTol {
					t.Errorf("step %d: φ = %.15g, I = %.15g; want φ = %.15g, I = %.15g", k, ph.Phi, d.State().Integral, tc.phi[k], tc.integral[k])
				}
			}
		})
	}
}

// TestPhaseIntegralRemovesOffset: on a plant whose entropy falls by a fixed amount per step
// unless φ pushes back (H̄ ← H̄ − 0.05 + 0.1·φ), the proportional controller settles where
// tanh(κe) = 0.5, 14 % below the target; the integral settles on it.
func TestPhaseIntegralRemovesOffset(t *testing.T) {
	settle := func(ki float64) float64 {
		c := integralConfig(ki)
		c.Beta = 0.5
		d, err := NewDetector(c)
		if err != nil {
			t.Fatal(err)
		}
		h, phi := 1.0, 0.0
		for k := range 400 {
			h += -0.05 + 0.1*phi
			ph, err := d.Observe(int64(k), h, 1)
			if err != nil {
				t.Fatal(err)
			}
			phi = ph.Phi
		}
		return h
	}
	if p, want := settle(0), 1-math.Atanh(0.5)/2; math.Abs(p-want) > 1e-6 {
		t.Errorf("proportional: settles at %.6f; want 1 − atanh(0.5)/κ = %.6f", p, want)
	}
	if i := settle(0.2); math.Abs(i-1) > 1e-6 {
		t.Errorf("with κ_I = 0.2: settles at %.6f; want the target 1", i)
	}
}

func TestSaturatedArg(t *testing.T) {
	if math.Abs(saturatedArg-math.Atanh(SaturatedPhi)) > 1e-15 {
		t.Errorf("saturatedArg = %v, atanh(%v) = %v", saturatedArg, SaturatedPhi, math.Atanh(SaturatedPhi))
	}
}

func TestPhaseIntegralValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		ki   float64
		want string
	}{
		{"0", 0, ""},
		{"0.1", 0.1, ""},
		{"negative", -0.1, "target integral gain κ_I = -0.1"},
		{"NaN", math.NaN(), "κ_I = NaN"},
		{"Inf", math.Inf(1), "κ_I = +Inf"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkErr(t, integralConfig(tc.ki).Validate(), tc.want)
		})
	}
}

// targetRunConfig is PAPO in target mode with the integral, on runStep's entropy (which drifts
// around 1 nat), so that the integral changes sign during the run.
func targetRunConfig(ki float64) Config {
	c := DefaultConfig()
	c.Phase.Mode, c.Phase.TargetEntropy, c.Phase.Beta, c.Phase.TargetIntegral = PhaseTarget, 1.1, 0.7, ki
	return c
}

// TestRestartWithIntegral: the integral is part of the state: a run restarted at any step gives
// the outputs and the final state of an uninterrupted one, also once steps have been folded into
// the history's base (history 4).
func TestRestartWithIntegral(t *testing.T) {
	const n = 17
	c := targetRunConfig(0.3)
	want, wantState := reference(t, c, n, WithHistory(4))
	if !bytes.Contains(wantState, []byte(`"integral"`)) {
		t.Fatalf("the state of a run with κ_I > 0 records no integral:\n%s", wantState)
	}
	for split := int64(1); split < n; split += 4 {
		path := filepath.Join(t.TempDir(), "state.json")
		r := openRun(t, c, path, WithHistory(4))
		for k := int64(0); k < n; k++ {
			if k == split {
				r.Close()
				r = openRun(t, c, path, WithHistory(4))
			}
			if got, _ := stepOutput(t, r, k); !bytes.Equal(got, want[k]) {
				t.Fatalf("restart at %d: step %d differs from the uninterrupted run", split, k)
			}
		}
		r.Close()
		if got, _ := os.ReadFile(path); !bytes.Equal(got, wantState) {
			t.Errorf("restart at %d: final state differs:\n%s\nwant\n%s", split, got, wantState)
		}
	}
	// A step that comes again rolls the integral back with the rest.
	path := filepath.Join(t.TempDir(), "state.json")
	r := openRun(t, c, path, WithHistory(4))
	for k := int64(0); k < n; k++ {
		stepOutput(t, r, k)
	}
	for k := int64(n - 3); k < n; k++ {
		if got, _ := stepOutput(t, r, k); !bytes.Equal(got, want[k]) {
			t.Fatalf("step %d after a rollback differs from the uninterrupted run", k)
		}
	}
}

// TestStateWithoutIntegral: a run without the integral (κ_I = 0, papo's controller before it)
// writes no integral key, so its state files are those papo wrote before; opening one with
// κ_I > 0 is another run and is refused, naming the parameter; a state that carries an integral
// the configuration cannot have is malformed.
func TestStateWithoutIntegral(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	r := openRun(t, targetRunConfig(0), path)
	for k := int64(0); k < 5; k++ {
		stepOutput(t, r, k)
	}
	r.Close()
	saved, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(saved, []byte("integral")) {
		t.Errorf("a κ_I = 0 state mentions the integral:\n%s", saved)
	}
	openRun(t, targetRunConfig(0), path).Close()
	_, err = NewReweighter(targetRunConfig(0.1), WithStateFile(path))
	checkErr(t, err, "phase.target_integral = 0.1 now, absent in the state")

	bad := writeFile(t, t.TempDir(), "s.json", editState(t, string(saved), "base", "integral", 0.5))
	_, err = NewReweighter(targetRunConfig(0), WithStateFile(bad))
	checkErr(t, err, "integral 0.5: want 0 without a target-mode integral gain")

	withI := filepath.Join(t.TempDir(), "state.json")
	r = openRun(t, targetRunConfig(0.3), withI, WithHistory(2))
	for k := int64(0); k < 5; k++ {
		stepOutput(t, r, k)
	}
	r.Close()
	good, _ := os.ReadFile(withI)
	if !strings.Contains(string(good), `"integral"`) {
		t.Fatalf("history 2 after 5 steps: the base records no integral:\n%s", good)
	}
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"wound up", 11.0, "integral 11: want |κ_I·I| ≤ 3"},
		{"edited", 0.01, "recorded ema"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "s.json", editState(t, string(good), "base", "integral", tc.v))
			_, err := NewReweighter(targetRunConfig(0.3), WithStateFile(p))
			checkErr(t, err, tc.want)
		})
	}
}
