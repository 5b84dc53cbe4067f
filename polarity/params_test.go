package polarity_test

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

// TestParamsValidateBounds: the temperatures at the bounds of what the kernels' float32
// constants represent are computed by every kernel (no panic, finite H and log π_a that agree
// with the float64 reference), one float64 step outside is refused with the value named, and
// so are η and ε that the engine cannot use. Before the bound, τ = 2e-39 panicked in a worker
// of the assembly kernel ("accumulateBlock reported a non-finite block").
func TestParamsValidateBounds(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	const V, rows = 37, 3 // 37: the assembly kernel's 8-wide loop and its scalar tail
	z := make([]float32, V*rows)
	for i := range z {
		z[i] = float32(rng.NormFloat64())
	}
	b := &polarity.Batch{Logits: polarity.EncodeLogits(z, V, polarity.Float32), TokenID: []int32{0, 5, 36},
		Advantage: []float64{1, -1, 0.5}}
	for _, tau := range []float64{polarity.MinTemperature, polarity.MaxTemperature, 1e-30, 1e30} {
		p := polarity.DefaultParams()
		p.Temperature, p.LR = tau, 1e-300 // η/τ² stays finite at both ends
		want, err := polarity.Reference64(b, p)
		if err != nil {
			t.Fatalf("τ=%g: reference: %v", tau, err)
		}
		for _, k := range polarity.Kernels() {
			e, err := polarity.NewCPUKernel(2, k)
			if err != nil {
				t.Fatal(err)
			}
			var got polarity.Result
			if err := e.Compute(context.Background(), b, p, &got); err != nil {
				t.Fatalf("%v, τ=%g: %v", k, tau, err)
			}
			for i := range rows {
				// H lies in [0, log V ≈ 3.6] and log π_a reaches −1e39 at the smallest τ: 1e-5
				// relative to max(1, |value|) is float32 rounding of a few sums, far below the
				// error of a wrong constant (H is 0 as τ→0, log V as τ→∞). A log π_a below
				// −MaxFloat32 is stored as −Inf, its float32 rounding.
				h, lp := float64(got.Entropy[i]), float64(got.Logprob[i])
				far := func(got, want float64) bool {
					if want < -math.MaxFloat32 {
						return !math.IsInf(got, -1)
					}
					return !(math.Abs(got-want) <= 1e-5*max(1, math.Abs(want)))
				}
				if far(h, want[i].Entropy) || far(lp, want[i].Logprob) {
					t.Errorf("%v, τ=%g, row %d: H=%g log π=%g, want %g, %g", k, tau, i, h, lp, want[i].Entropy, want[i].Logprob)
				}
			}
		}
	}

	refused := []struct {
		name string
		edit func(*polarity.Params)
		want string
	}{
		{"τ one step below MinTemperature", func(p *polarity.Params) { p.Temperature = math.Nextafter(polarity.MinTemperature, 0) }, "temperature 4.2"},
		{"τ = 2e-39 (panicked the assembly kernel)", func(p *polarity.Params) { p.Temperature = 2e-39 }, "temperature 2e-39"},
		{"τ one step above MaxTemperature", func(p *polarity.Params) { p.Temperature = math.Nextafter(polarity.MaxTemperature, math.Inf(1)) }, "temperature 2.6"},
		{"τ = 1e37 (panicked the assembly kernel)", func(p *polarity.Params) { p.Temperature = 1e37 }, "temperature 1e+37"},
		{"τ = 0", func(p *polarity.Params) { p.Temperature = 0 }, "temperature 0"},
		{"τ = −1", func(p *polarity.Params) { p.Temperature = -1 }, "temperature -1"},
		{"τ = NaN", func(p *polarity.Params) { p.Temperature = math.NaN() }, "temperature NaN"},
		{"τ = +Inf", func(p *polarity.Params) { p.Temperature = math.Inf(1) }, "temperature +Inf"},
		{"η = NaN", func(p *polarity.Params) { p.LR = math.NaN() }, "learning rate NaN"},
		{"η = −Inf", func(p *polarity.Params) { p.LR = math.Inf(-1) }, "learning rate -Inf"},
		{"η/τ² overflows", func(p *polarity.Params) { p.Temperature, p.LR = 1e-38, 1e300 }, "learning rate 1e+300 at temperature 1e-38"},
		{"ε_low < 0", func(p *polarity.Params) { p.ClipLow = -0.1 }, "clip range (-0.1"},
		{"ε_high NaN", func(p *polarity.Params) { p.ClipHigh = math.NaN() }, "NaN)"},
	}
	e := polarity.NewCPU(2)
	for _, c := range refused {
		p := polarity.DefaultParams()
		c.edit(&p)
		var out polarity.Result
		err := e.Compute(context.Background(), b, p, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Compute: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}
