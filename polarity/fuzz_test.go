package polarity_test

import (
	"context"
	"encoding/binary"
	"math"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
)

// FuzzEngineParams runs every CPU kernel on fuzzed parameters (τ, η, ε_low, ε_high, the
// natural gradient) and fuzzed float32 logits and advantages: it must never panic; it fails
// when Params.Validate or the float64 reference does (bad parameters, NaN or +Inf logits, a row
// without a finite logit), and otherwise only for a non-finite advantage; where it succeeds, 0 ≤ H ≤ log V and log π_a ≤ 0 within float32
// rounding, the predicted ΔH is 0 or has the sign of the polarity P, and every kernel gives the
// same validity.
func FuzzEngineParams(f *testing.F) {
	logits := func(xs ...float32) []byte {
		b := make([]byte, 4*len(xs))
		for i, x := range xs {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	f.Add(1.0, 1.0, math.Inf(1), math.Inf(1), false, uint8(4), uint8(1), 1.0, logits(2, 1, 0.1, -1, 0, 3, -2, 1))
	f.Add(0.7, 1e-3, 0.2, 0.28, true, uint8(3), uint8(2), -0.5, logits(1e30, -1e30, 0, 5, 5, 5))
	f.Add(2e-39, 1.0, 0.2, 0.2, false, uint8(2), uint8(0), 1.0, logits(1, 2, 3, 4))
	f.Add(1e37, 1.0, 0.0, 0.0, false, uint8(2), uint8(1), -1.0, logits(1, 2, 3, 4))
	f.Add(polarity.MinTemperature, 1e-300, 0.2, 0.2, false, uint8(9), uint8(8), 2.0,
		logits(float32(math.Inf(-1)), 0, 1e-38, -3.4e38, 3.4e38, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10))
	kernels := polarity.Kernels()
	f.Fuzz(func(t *testing.T, tau, lr, clipLow, clipHigh float64, natural bool, v, tok uint8, adv float64, raw []byte) {
		V := int(v)%40 + 1
		rows := min(len(raw)/(4*V), 4)
		if rows == 0 {
			return
		}
		z := make([]float32, rows*V)
		for i := range z {
			z[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		b := &polarity.Batch{Logits: polarity.EncodeLogits(z, V, polarity.Float32), TokenID: make([]int32, rows),
			Advantage: make([]float64, rows), OldLogprob: make([]float32, rows)}
		for i := range rows {
			b.TokenID[i] = int32((int(tok) + i) % V)
			b.Advantage[i] = adv
			b.OldLogprob[i] = -float32(i) / 4
		}
		p := polarity.Params{Temperature: tau, LR: lr, ClipLow: clipLow, ClipHigh: clipHigh, NaturalGradient: natural}
		_, refErr := polarity.Reference64(b, p)
		wantErr := p.Validate() != nil || refErr != nil
		var first *polarity.Result
		for _, k := range kernels {
			e, err := polarity.NewCPUKernel(2, k)
			if err != nil {
				t.Fatal(err)
			}
			var got polarity.Result
			err = e.Compute(context.Background(), b, p, &got)
			if err == nil && wantErr || err != nil && !wantErr && finiteAdvantage(adv) {
				t.Fatalf("%v, %+v: error %v; the reference's %v, Validate's %v", k, p, err, refErr, p.Validate())
			}
			if err != nil {
				continue
			}
			logV := math.Log(float64(V))
			for i := range rows {
				h, lp := float64(got.Entropy[i]), float64(got.Logprob[i])
				if !(h >= -1e-6 && h <= logV*(1+1e-5)+1e-6) || !(lp <= 1e-6) {
					t.Fatalf("%v, %+v, row %d: H = %v (log V = %v), log π = %v", k, p, i, h, logV, lp)
				}
				if dh, pol := got.PredictedDeltaH[i], got.Polarity[i]; dh != 0 && pol != 0 && (dh > 0) != (pol > 0) && lr > 0 {
					t.Fatalf("%v, %+v, row %d: predicted ΔH %v with polarity %v", k, p, i, dh, pol)
				}
			}
			if first == nil {
				first = &got
				continue
			}
			for i := range rows {
				if got.PolarityValid[i] != first.PolarityValid[i] {
					t.Fatalf("%v, row %d: polarity validity differs between kernels", k, i)
				}
			}
		}
	})
}

func finiteAdvantage(a float64) bool { return !math.IsNaN(a) && !math.IsInf(a, 0) }
