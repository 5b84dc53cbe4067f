package papo

import (
	"errors"
	"math"
	"strings"
	"testing"
)

// phaseTol: the hand-computed values below are exact decimals passed through a few float64
// operations and one tanh, so they agree to a few ulps; 1e-12 leaves room for that and nothing
// more.
const phaseTol = 1e-12

type observation struct {
	sum    float64
	tokens int64
	ema    float64 // expected E_k
	phi    float64 // expected φ_k
}

func TestPhaseHandComputed(t *testing.T) {
	cases := []struct {
		name string
		cfg  PhaseConfig
		obs  []observation
	}{
		{
			// E_0 = 0.5, E_1 = 0.9·0.5 + 0.1·1.5 = 0.6, E_2 = 0.9·0.6 + 0.1·1 = 0.64;
			// φ = tanh(2·(1 − E)/1).
			name: "target mode, H*=1, κ=2, β=0.9",
			cfg:  PhaseConfig{Mode: PhaseTarget, TargetEntropy: 1, Beta: 0.9, Window: 10, TargetKappa: 2, SlopeKappa: 50},
			obs: []observation{
				{sum: 50, tokens: 100, ema: 0.5, phi: 0.7615941559557649},     // tanh(1)
				{sum: 15, tokens: 10, ema: 0.6, phi: 0.6640367702678491},      // tanh(0.8)
				{sum: 3, tokens: 3, ema: 0.64, phi: 0.616909302877065},        // tanh(0.72)
				{sum: 0, tokens: 0, ema: 0.64, phi: 0.616909302877065},        // no tokens: unchanged
				{sum: 400, tokens: 100, ema: 0.976, phi: 0.04796316994220894}, // 0.9·0.64 + 0.1·4; tanh(0.048)
			},
		},
		{
			// β = 0.5, W = 2, κ = 10. E = 1, 0.9, 0.75, 0.675, 0.9375. φ_0 = 0 (no history);
			// φ_1 = tanh(−10·(0.9 − 1)/(1·1)) = tanh(1); φ_2 = tanh(−10·(0.75 − 1)/(2·1)) = tanh(1.25);
			// φ_3 = tanh(−10·(0.675 − 0.9)/(2·0.9)) = tanh(1.25); φ_4 = tanh(−10·(0.9375 − 0.75)/(2·0.75)) = tanh(−1.25).
			name: "slope mode, W=2, κ=10, β=0.5",
			cfg:  PhaseConfig{Mode: PhaseSlope, Beta: 0.5, Window: 2, TargetKappa: 2, SlopeKappa: 10},
			obs: []observation{
				{sum: 10, tokens: 10, ema: 1, phi: 0},
				{sum: 8, tokens: 10, ema: 0.9, phi: 0.7615941559557649},
				{sum: 6, tokens: 10, ema: 0.75, phi: 0.8482836399575129},
				{sum: 6, tokens: 10, ema: 0.675, phi: 0.8482836399575129},
				{sum: 12, tokens: 10, ema: 0.9375, phi: -0.8482836399575129},
			},
		},
		{
			// β = 0: E is the step's own mean; the EMA start E_0 = H̄_0 is then irrelevant.
			name: "target mode, β=0, entropy above target",
			cfg:  PhaseConfig{Mode: PhaseTarget, TargetEntropy: 0.5, Beta: 0, Window: 1, TargetKappa: 1, SlopeKappa: 50},
			obs: []observation{
				{sum: 1, tokens: 1, ema: 1, phi: -0.7615941559557649}, // tanh(1·(0.5 − 1)/0.5) = tanh(−1)
				{sum: 0.5, tokens: 2, ema: 0.25, phi: 0.46211715726000974},
			},
		},
		{
			// A collapsed entropy (E_{k−W} = 0) must not divide by zero: a rise saturates φ at −1,
			// no change gives 0.
			name: "slope mode from zero entropy",
			cfg:  PhaseConfig{Mode: PhaseSlope, Beta: 0, Window: 1, TargetKappa: 2, SlopeKappa: 50},
			obs: []observation{
				{sum: 0, tokens: 5, ema: 0, phi: 0},
				{sum: 0, tokens: 5, ema: 0, phi: 0},
				{sum: 1, tokens: 5, ema: 0.2, phi: -1},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDetector(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for k, o := range tc.obs {
				ph, err := d.Observe(int64(k), o.sum, o.tokens)
				if err != nil {
					t.Fatalf("step %d: %v", k, err)
				}
				if math.Abs(ph.EMA-o.ema) > phaseTol || math.Abs(ph.Phi-o.phi) > phaseTol {
					t.Errorf("step %d: E = %.15g, φ = %.15g; want E = %.15g, φ = %.15g", k, ph.EMA, ph.Phi, o.ema, o.phi)
				}
			}
		})
	}
}

func TestPhaseStepOrder(t *testing.T) {
	d, err := NewDetector(DefaultPhaseConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []int64{3, 4, 9} { // gaps are allowed
		if _, err := d.Observe(s, 1, 2); err != nil {
			t.Fatalf("step %d: %v", s, err)
		}
	}
	before := d.State()

	_, err = d.Observe(5, 1, 2)
	var oe *StepOrderError
	if !errors.As(err, &oe) || oe.Step != 5 || oe.LastStep != 9 {
		t.Fatalf("out-of-order step 5 after 9: got %v, want a StepOrderError naming 5 and 9", err)
	}
	if want := "step 5 does not come after the last processed step 9"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	// The detector has no history: the last step again is refused too (a Reweighter rolls back).
	if _, err := d.Observe(9, 1, 2); !errors.As(err, &oe) {
		t.Errorf("repeated step 9: got %v, want a StepOrderError", err)
	}
	if _, err := d.Observe(-1, 1, 1); err == nil {
		t.Error("negative step accepted")
	}
	after := d.State()
	if after.LastStep != before.LastStep || after.EMA != before.EMA || after.Observed != before.Observed {
		t.Errorf("refused steps changed the state: %+v → %+v", before, after)
	}
}

func TestPhaseBadInput(t *testing.T) {
	cases := []struct {
		name   string
		sum    float64
		tokens int64
		want   string
	}{
		{"NaN sum", math.NaN(), 3, "entropy sum NaN"},
		{"negative sum", -1, 3, "entropy sum -1"},
		{"infinite sum", math.Inf(1), 3, "entropy sum +Inf"},
		{"negative count", 1, -3, "token count -3"},
		{"sum without tokens", 1, 0, "over 0 tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := NewDetector(DefaultPhaseConfig())
			_, err := d.Observe(0, tc.sum, tc.tokens)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestPhaseConfigValidate(t *testing.T) {
	ok := DefaultPhaseConfig()
	target := ok
	target.Mode, target.TargetEntropy = PhaseTarget, 0.7
	cases := []struct {
		name string
		edit func(*PhaseConfig)
		want string // "" for valid
	}{
		{"defaults", func(*PhaseConfig) {}, ""},
		{"β = 0", func(p *PhaseConfig) { p.Beta = 0 }, ""},
		{"β = 1", func(p *PhaseConfig) { p.Beta = 1 }, "β = 1: want a value in [0, 1)"},
		{"β < 0", func(p *PhaseConfig) { p.Beta = -0.1 }, "β = -0.1"},
		{"β NaN", func(p *PhaseConfig) { p.Beta = math.NaN() }, "β = NaN"},
		{"W = 0", func(p *PhaseConfig) { p.Window = 0 }, "window W = 0"},
		{"W = 1", func(p *PhaseConfig) { p.Window = 1 }, ""},
		{"unknown mode", func(p *PhaseConfig) { p.Mode = "ema" }, `mode "ema"`},
		{"target without H*", func(p *PhaseConfig) { p.Mode = PhaseTarget }, "target mode needs a finite H* > 0"},
		{"target with H* < 0", func(p *PhaseConfig) { p.Mode, p.TargetEntropy = PhaseTarget, -1 }, "H* = -1"},
		{"slope with H*", func(p *PhaseConfig) { p.TargetEntropy = 0.5 }, "phase mode is \"slope\""},
		{"κ = 0", func(p *PhaseConfig) { p.SlopeKappa = 0 }, "slope κ = 0"},
		{"target κ = Inf", func(p *PhaseConfig) { p.TargetKappa = math.Inf(1) }, "target κ = +Inf"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := ok
			tc.edit(&p)
			err := p.Validate()
			checkErr(t, err, tc.want)
		})
	}
	if err := target.Validate(); err != nil {
		t.Errorf("target mode with H* = 0.7: %v", err)
	}
}

func TestEntropySumMerge(t *testing.T) {
	// Two ranks' partial sums give the same phase as the tokens of both on one rank.
	var a, b EntropySum
	a.Merge(EntropySum{Sum: 3, Tokens: 4})
	b.Merge(EntropySum{Sum: 1, Tokens: 6})
	a.Merge(b)
	if a.Sum != 4 || a.Tokens != 10 || a.Mean() != 0.4 {
		t.Errorf("merged %+v, mean %v; want Σ 4 over 10 tokens, mean 0.4", a, a.Mean())
	}
	if (EntropySum{}).Mean() != 0 {
		t.Error("mean of an empty sum is not 0")
	}
}
