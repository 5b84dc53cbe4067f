package polarity

import (
	"math"
	"math/rand/v2"
	"testing"
)

// foldRows is docs/MATH.md's step statistics as a plain row-by-row fold, written for this test
// alone: the order of the additions is the rows' order, which StepStats.Add must keep bit for
// bit (the replay of a step and a data-parallel rank's partials add in that order too).
func foldRows(s StepStats, b *Batch, r *Result, lo, hi int) StepStats {
	for i := lo; i < hi; i++ {
		if b.Mask != nil && !b.Mask[i] {
			continue
		}
		s.Tokens++
		s.SumEntropy += float64(r.Entropy[i])
		if !r.PolarityValid[i] {
			continue
		}
		s.WithAdvantage++
		switch p := float64(r.Polarity[i]); {
		case p > 0:
			s.Expanding++
			s.SumPositiveP += p
		default: // P ≤ 0, −0 and NaN included
			s.SumNegativeP += p
		}
		s.SumDeltaH += float64(r.PredictedDeltaH[i])
	}
	return s
}

// aggregateRows is a computed batch of n rows: random entropies, polarities of either sign with
// ±0, huge and tiny magnitudes, and (with mask) masked rows and rows without an advantage.
func aggregateRows(rng *rand.Rand, n int, mask bool) (*Batch, *Result) {
	b := &Batch{}
	r := &Result{Entropy: make([]float32, n), Polarity: make([]float32, n), PolarityValid: make([]bool, n),
		PredictedDeltaH: make([]float32, n)}
	if mask {
		b.Mask = make([]bool, n)
	}
	for i := range n {
		r.Entropy[i] = float32(rng.ExpFloat64())
		p := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(13)-6)))
		switch rng.IntN(20) {
		case 0:
			p = 0
		case 1:
			p = float32(math.Copysign(0, -1))
		}
		r.Polarity[i] = p
		r.PredictedDeltaH[i] = p * float32(rng.Float64())
		r.PolarityValid[i] = !mask || rng.IntN(8) != 0
		if mask {
			b.Mask[i] = rng.IntN(10) != 0
		}
	}
	return b, r
}

// TestStepStatsAdd: Add gives the fold's sums bit for bit and its counts, over a range and
// continuing sums already held, with and without a mask.
func TestStepStatsAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, tc := range []struct {
		name   string
		n      int
		lo, hi int
		mask   bool
	}{
		{"all rows, no mask", 10000, 0, 10000, false},
		{"a range, masked", 10000, 123, 9876, true},
		{"one row", 5, 2, 3, true},
		{"no rows", 5, 3, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, r := aggregateRows(rng, tc.n, tc.mask)
			start := StepStats{Tokens: 3, SumEntropy: 1.25, WithAdvantage: 2, Expanding: 1, SumPositiveP: 0.5,
				SumNegativeP: -0.75, SumDeltaH: 1e-3}
			got := start
			got.Add(b, r, tc.lo, tc.hi)
			want := foldRows(start, b, r, tc.lo, tc.hi)
			if got.Tokens != want.Tokens || got.WithAdvantage != want.WithAdvantage || got.Expanding != want.Expanding {
				t.Errorf("counts %d, %d, %d; want %d, %d, %d", got.Tokens, got.WithAdvantage, got.Expanding,
					want.Tokens, want.WithAdvantage, want.Expanding)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{{"ΣH", got.SumEntropy, want.SumEntropy}, {"ΣP>0", got.SumPositiveP, want.SumPositiveP},
				{"ΣP<0", got.SumNegativeP, want.SumNegativeP}, {"ΣΔH", got.SumDeltaH, want.SumDeltaH}} {
				if math.Float64bits(c.got) != math.Float64bits(c.want) {
					t.Errorf("%s = %v; want %v bit for bit", c.name, c.got, c.want)
				}
			}
		})
	}
}

func BenchmarkStepStatsAdd(b *testing.B) {
	const n = 1 << 20
	bt, r := aggregateRows(rand.New(rand.NewPCG(1, 2)), n, true)
	b.SetBytes(n * 13)
	for b.Loop() {
		var s StepStats
		s.Add(bt, r, 0, n)
	}
}
