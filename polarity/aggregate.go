package polarity

// StepStats aggregates one training step's trained tokens (mask true); masked tokens are
// reported per token but excluded here, as docs/SCHEMA.md asks. Sums are float64 so that a step
// of millions of tokens does not lose precision.
type StepStats struct {
	Tokens        int64   // trained tokens
	SumEntropy    float64 // Σ H over trained tokens
	WithAdvantage int64   // trained tokens that carry an advantage
	Expanding     int64   // of those, tokens with P > 0
	SumPositiveP  float64 // Σ max(P, 0)
	SumNegativeP  float64 // Σ min(P, 0)
	SumDeltaH     float64 // Σ predicted ΔH
}

// Add folds rows [lo, hi) of a computed batch into s.
func (s *StepStats) Add(b *Batch, r *Result, lo, hi int) {
	for i := lo; i < hi; i++ {
		if !b.Trained(i) {
			continue
		}
		s.Tokens++
		s.SumEntropy += float64(r.Entropy[i])
		if !r.PolarityValid[i] {
			continue
		}
		s.WithAdvantage++
		p := float64(r.Polarity[i])
		if p > 0 {
			s.Expanding++
			s.SumPositiveP += p
		} else {
			s.SumNegativeP += p
		}
		s.SumDeltaH += float64(r.PredictedDeltaH[i])
	}
}

// Merge folds o into s (e.g. the partial statistics of another data-parallel rank).
func (s *StepStats) Merge(o StepStats) {
	s.Tokens += o.Tokens
	s.SumEntropy += o.SumEntropy
	s.WithAdvantage += o.WithAdvantage
	s.Expanding += o.Expanding
	s.SumPositiveP += o.SumPositiveP
	s.SumNegativeP += o.SumNegativeP
	s.SumDeltaH += o.SumDeltaH
}

// MeanEntropy is the token-mean entropy H̄ of the step (0 for a step without trained tokens).
func (s *StepStats) MeanEntropy() float64 {
	if s.Tokens == 0 {
		return 0
	}
	return s.SumEntropy / float64(s.Tokens)
}

// ExpandingFraction is the fraction of trained tokens with an advantage whose polarity is > 0.
func (s *StepStats) ExpandingFraction() float64 {
	if s.WithAdvantage == 0 {
		return 0
	}
	return float64(s.Expanding) / float64(s.WithAdvantage)
}
