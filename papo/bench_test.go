package papo

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkReweighterStep is one step of 1M tokens through a Reweighter without a state file
// (PAPO, the default configuration, then renormalized), after a first step so that φ ≠ 0.
func BenchmarkReweighterStep(b *testing.B) {
	const n = 1 << 20
	for _, renorm := range []bool{false, true} {
		name := "papo"
		if renorm {
			name = "papo-renormalized"
		}
		b.Run(name, func(b *testing.B) {
			c := DefaultConfig()
			c.Renormalize = renorm
			r, err := NewReweighter(c)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			tok := randomStep(rand.New(rand.NewPCG(1, 2)), n)
			weight, reweighted := make([]float32, n), make([]float64, n)
			b.SetBytes(n)
			b.ResetTimer()
			for i := range b.N {
				tok.Step = int64(i)
				if _, err := r.Step(tok, weight, reweighted); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
