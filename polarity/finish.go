package polarity

import (
	"fmt"
	"math"
)

// RowOutputs are one token's outputs (the columns of Result) in float64.
type RowOutputs struct {
	Entropy         float64 // H
	Logprob         float64 // log π_a
	SampledTerm     float64 // S_a
	Correction      float64 // C
	PolarityFactor  float64 // T = C − S_a, or T_npg = −(log π_a + H)
	Polarity        float64 // P = A·T; 0 where !PolarityValid
	PolarityValid   bool    // the token has an advantage
	PredictedDeltaH float64 // (η/τ²)·r·1[not clipped]·P; 0 when masked, clipped or without advantage
}

// Store writes o into row i of out (rounding to float32).
func (o RowOutputs) Store(out *Result, i int) {
	out.Entropy[i] = float32(o.Entropy)
	out.Logprob[i] = float32(o.Logprob)
	out.SampledTerm[i] = float32(o.SampledTerm)
	out.Correction[i] = float32(o.Correction)
	out.PolarityFactor[i] = float32(o.PolarityFactor)
	out.Polarity[i] = float32(o.Polarity)
	out.PolarityValid[i] = o.PolarityValid
	out.PredictedDeltaH[i] = float32(o.PredictedDeltaH)
}

// Finish is the token step of docs/MATH.md §2 that every engine shares: from the row's entropy H,
// log π_a, sampled term S_a and correction C (however the engine computed them) and row i's
// advantage, old log-probability and mask, it forms the polarity factor, the polarity and the
// predicted entropy change.
//
//   - T = C − S_a, or T_npg = −(log π_a + H) when p.NaturalGradient; P = A·T.
//   - r = exp(log π_a − log π_old,a) when row i has an old log-probability, else 1. A token with
//     log π_a = −Inf has r = 0: its probability, and so its PPO gradient, is zero.
//   - Clipped (no gradient): A > 0 and r > 1+ε_high, or A < 0 and r < 1−ε_low.
//   - ΔĤ = (η/τ²)·r·P, and exactly 0 for a masked token, a clipped token, a token without
//     advantage, and wherever A = 0 or r = 0 (no gradient, so no 0·∞ either).
//
// A token without advantage has PolarityValid false and P = 0. Data errors, as *RowError: an
// advantage that is present but not finite, and an old log-probability that is needed (trained
// token with advantage) but NaN or ±Inf (the sampled token had probability 0 under the policy
// that sampled it).
func Finish(b *Batch, i int, p Params, entropy, logpi, sampled, correction float64) (RowOutputs, error) {
	o := RowOutputs{Entropy: entropy, Logprob: logpi, SampledTerm: sampled, Correction: correction}
	if p.NaturalGradient {
		o.PolarityFactor = -(logpi + entropy)
	} else {
		o.PolarityFactor = correction - sampled
	}
	if !b.HasAdvantage(i) {
		return o, nil
	}
	adv := b.Advantage[i]
	if math.IsNaN(adv) || math.IsInf(adv, 0) {
		return o, &RowError{Row: i, Column: "advantage", Msg: fmt.Sprintf("%v: expected a finite advantage (or a null)", adv)}
	}
	o.PolarityValid = true
	if adv != 0 {
		o.Polarity = adv * o.PolarityFactor
	}
	if !b.Trained(i) || o.Polarity == 0 {
		return o, nil
	}
	ratio := 1.0
	if b.HasOldLogprob(i) {
		old := float64(b.OldLogprob[i])
		if math.IsNaN(old) || math.IsInf(old, 0) {
			return o, &RowError{Row: i, Column: "old_logprob", Msg: fmt.Sprintf("%v: expected the finite log-probability of a sampled token", old)}
		}
		if math.IsInf(logpi, -1) {
			return o, nil // r = 0
		}
		ratio = vexp(logpi - old) // as statsRun, bit for bit
		if p.Clip().Clipped(adv, ratio) {
			return o, nil
		}
	}
	o.PredictedDeltaH = p.LR / (p.Temperature * p.Temperature) * ratio * o.Polarity
	return o, nil
}
