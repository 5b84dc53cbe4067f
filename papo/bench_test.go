package papo

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkReweighterStep is one step of 1M tokens through a Reweighter without a state file:
// PAPO with the target phase (H* at twice the steps' mean entropy, so φ ≠ 0 from the first
// step on and every weighted token's weight is computed), then renormalized too.
func BenchmarkReweighterStep(b *testing.B) {
	const n = 1 << 20
	for _, renorm := range []bool{false, true} {
		name := "papo"
		if renorm {
			name = "papo-renormalized"
		}
		b.Run(name, func(b *testing.B) {
			tok := randomStep(rand.New(rand.NewPCG(1, 2)), n)
			c := DefaultConfig()
			c.Renormalize = renorm
			c.Phase.Mode, c.Phase.TargetEntropy = PhaseTarget, 2*tok.EntropySum().Mean()
			r, err := NewReweighter(c)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			weight, reweighted := make([]float32, n), make([]float64, n)
			for i := 0; b.Loop(); i++ {
				tok.Step = int64(i)
				sr, err := r.Step(tok, weight, reweighted)
				if err != nil {
					b.Fatal(err)
				}
				if sr.Phase == 0 {
					b.Fatalf("step %d: φ = 0: the weights would all be 1", i)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
