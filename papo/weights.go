package papo

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/entropy-polarity/papo/polarity"
)

// StepTokens is one training step's per-token results: every valid token of every
// data-parallel rank that the step trains on, or one rank's share with GlobalEntropy set.
// All non-nil slices have the same length. A nil validity slice means "all true".
type StepTokens struct {
	Step int64

	Advantage    []float64 // A (required)
	HasAdvantage []bool    // false: the token has no advantage; nil: all have one
	Trained      []bool    // mask: false: not trained on; nil: all are

	Entropy         []float32 // H (required: it feeds the phase)
	Logprob         []float32 // log π_a (clip-cov, kl-cov, steer)
	Polarity        []float32 // P = A·T (papo)
	PredictedDeltaH []float32 // (η/τ²)·r·1[not clipped]·P (optional: StepResult's ΔĤ sums)

	OldLogprob    []float32 // log π_old(a); nil when the input has none
	HasOldLogprob []bool    // nil with OldLogprob set: every token has one

	// Clip is PPO's clip range, used by Clip-Cov to leave out tokens whose ratio PPO clips
	// (they carry no gradient); nil: PPO does not clip. ε = 0 is a range of zero width, as
	// everywhere in papo (polarity.ClipRange).
	Clip *polarity.ClipRange

	// GlobalEntropy, when set, is the step's entropy summed over all data-parallel ranks (a
	// trainer's own all-reduce of EntropySum); the phase uses it instead of this slice's tokens.
	GlobalEntropy *EntropySum
	// Global, when set, are the step's StepPartials summed over all data-parallel ranks: the
	// phase, PAPO's σ_P (g = tanh) and its renormalization (g = sign) then use the whole step,
	// so that the ranks' weights concatenated are those of one process that saw every token.
	// The baselines stay rank-local except entropy shaping, which is per token anyway.
	Global *StepPartials
}

// StepPartials are one rank's additive share of what a step's phase and PAPO weights need
// from all of the step's tokens: summing the ranks' StepPartials field by field (an
// all-reduce SUM) gives the whole step's.
type StepPartials struct {
	Entropy          EntropySum // Σ H and count over trained tokens
	Weighted         int64      // tokens the method acts on (trained, with an advantage)
	PolaritySum      float64    // Σ P over them
	PolaritySum2     float64    // Σ P²
	AbsAdvantage     float64    // Σ |A|
	AbsAdvantageSign float64    // Σ |A|·sign(P)
}

// checkCovers reports global partials that cannot be the sum of every rank's, own (this
// rank's share) included: fewer tokens than own, a count < 0, a sum that is not finite.
func (p *StepPartials) checkCovers(own StepPartials) error {
	switch {
	case p.Entropy.Tokens < own.Entropy.Tokens:
		return fmt.Errorf("entropy_tokens %d is less than this rank's own %d trained tokens "+
			"(the global table sums every rank's stats table, this rank's included)", p.Entropy.Tokens, own.Entropy.Tokens)
	case p.Weighted < own.Weighted:
		return fmt.Errorf("weighted_tokens %d is less than this rank's own %d weighted tokens "+
			"(the global table sums every rank's stats table, this rank's included)", p.Weighted, own.Weighted)
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"entropy_sum", p.Entropy.Sum}, {"polarity_sum", p.PolaritySum}, {"polarity_sum2", p.PolaritySum2},
		{"abs_advantage_sum", p.AbsAdvantage}, {"abs_advantage_sign_sum", p.AbsAdvantageSign}} {
		if !finite(s.v) {
			return fmt.Errorf("%s %v: want a finite sum", s.name, s.v)
		}
	}
	return nil
}

// Merge adds another rank's partials.
func (p *StepPartials) Merge(o StepPartials) {
	p.Entropy.Merge(o.Entropy)
	p.Weighted += o.Weighted
	p.PolaritySum += o.PolaritySum
	p.PolaritySum2 += o.PolaritySum2
	p.AbsAdvantage += o.AbsAdvantage
	p.AbsAdvantageSign += o.AbsAdvantageSign
}

// Partials are this slice's share of the step.
func (t *StepTokens) Partials() StepPartials {
	p := StepPartials{Entropy: t.EntropySum()}
	for i := range t.Advantage {
		if !t.weighted(i) {
			continue
		}
		p.Weighted++
		a := math.Abs(t.Advantage[i])
		p.AbsAdvantage += a
		if t.Polarity != nil {
			x := float64(t.Polarity[i])
			p.PolaritySum += x
			p.PolaritySum2 += x * x
			switch {
			case x > 0:
				p.AbsAdvantageSign += a
			case x < 0:
				p.AbsAdvantageSign -= a
			}
		}
	}
	return p
}

// globalSD is σ_P of the whole step from its partials (population standard deviation).
func (p *StepPartials) globalSD() float64 {
	if p.Weighted == 0 {
		return 0
	}
	n := float64(p.Weighted)
	mean := p.PolaritySum / n
	return math.Sqrt(math.Max(p.PolaritySum2/n-mean*mean, 0))
}

// Len is the number of tokens.
func (t *StepTokens) Len() int { return len(t.Advantage) }

func (t *StepTokens) trained(i int) bool { return t.Trained == nil || t.Trained[i] }

// weighted reports whether the method acts on token i: trained and with an advantage.
// Every other token passes through with w = 1 and Ã = A.
func (t *StepTokens) weighted(i int) bool {
	return t.trained(i) && (t.HasAdvantage == nil || t.HasAdvantage[i])
}

func (t *StepTokens) hasOld(i int) bool {
	return t.OldLogprob != nil && (t.HasOldLogprob == nil || t.HasOldLogprob[i])
}

// EntropySum is Σ H and the count over the trained tokens held.
func (t *StepTokens) EntropySum() EntropySum {
	var s EntropySum
	for i := range t.Entropy {
		if t.trained(i) {
			s.Sum += float64(t.Entropy[i])
			s.Tokens++
		}
	}
	return s
}

// TokenError is a data error in one token of a step.
type TokenError struct {
	Step   int64
	Token  int    // index within the step
	Column string // e.g. "polarity"
	Msg    string // what was wrong and what was expected
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("step %d, token %d: %s: %s", e.Step, e.Token, e.Column, e.Msg)
}

// columns the method needs besides Advantage and Entropy.
func needs(method string) (logprob, polarity bool) {
	switch method {
	case MethodPAPO:
		return false, true
	case MethodClipCov, MethodKLCov, MethodSTEER:
		return true, false
	}
	return false, false
}

// check validates the step's columns for method: lengths, required columns, and finite values
// wherever the method reads them.
func (t *StepTokens) check(method string) error {
	n := t.Len()
	type col struct {
		name string
		n    int
		set  bool
	}
	cols := []col{
		{"has_advantage", len(t.HasAdvantage), t.HasAdvantage != nil},
		{"mask", len(t.Trained), t.Trained != nil},
		{"entropy", len(t.Entropy), true},
		{"logprob", len(t.Logprob), t.Logprob != nil},
		{"polarity", len(t.Polarity), t.Polarity != nil},
		{"predicted_dH", len(t.PredictedDeltaH), t.PredictedDeltaH != nil},
		{"old_logprob", len(t.OldLogprob), t.OldLogprob != nil},
		{"has_old_logprob", len(t.HasOldLogprob), t.HasOldLogprob != nil},
	}
	for _, c := range cols {
		if c.set && c.n != n {
			return fmt.Errorf("step %d: column %s has %d values, advantage has %d", t.Step, c.name, c.n, n)
		}
	}
	if t.HasOldLogprob != nil && t.OldLogprob == nil {
		return fmt.Errorf("step %d: has_old_logprob is set without old_logprob", t.Step)
	}
	if c := t.Clip; c != nil && (!(c.Low >= 0) || !(c.High >= 0)) {
		return fmt.Errorf("step %d: PPO clip range (%v, %v): want values ≥ 0 (+Inf: that side is not clipped)", t.Step, c.Low, c.High)
	}
	if g := t.GlobalEntropy; g != nil && (g.Tokens < 0 || !finite(g.Sum) || g.Sum < 0) {
		return fmt.Errorf("step %d: global entropy sum %v over %d tokens: want a finite sum ≥ 0 and a count ≥ 0", t.Step, g.Sum, g.Tokens)
	}
	if g := t.Global; g != nil {
		if err := g.checkCovers(t.Partials()); err != nil {
			return fmt.Errorf("step %d: global statistics: %w", t.Step, err)
		}
	}
	needLogprob, needPolarity := needs(method)
	if needLogprob && t.Logprob == nil {
		return fmt.Errorf("step %d: method %s needs the logprob column", t.Step, method)
	}
	if needPolarity && t.Polarity == nil {
		return fmt.Errorf("step %d: method %s needs the polarity column (an input with advantages)", t.Step, method)
	}
	return t.checkTokens(needLogprob, needPolarity)
}

// checkBlock is the tokens a goroutine of checkTokens checks at a time.
const checkBlock = 1 << 16

// checkTokens checks every token's values that method reads (check), in blocks on up to
// GOMAXPROCS goroutines for a large step; the error is that of the first bad token, as a
// loop in order would find it.
func (t *StepTokens) checkTokens(needLogprob, needPolarity bool) error {
	n := t.Len()
	blocks := (n + checkBlock - 1) / checkBlock
	if workers := min(runtime.GOMAXPROCS(0), blocks); workers > 1 {
		errs := make([]error, blocks)
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for k := int(next.Add(1) - 1); k < blocks; k = int(next.Add(1) - 1) {
					errs[k] = t.checkRange(k*checkBlock, min(n, (k+1)*checkBlock), needLogprob, needPolarity)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
	return t.checkRange(0, n, needLogprob, needPolarity)
}

// checkRange is checkTokens on tokens [lo, hi), in order.
func (t *StepTokens) checkRange(lo, hi int, needLogprob, needPolarity bool) error {
	for i := lo; i < hi; i++ {
		if !t.trained(i) {
			continue
		}
		if h := float64(t.Entropy[i]); !finite(h) || h < 0 {
			return &TokenError{t.Step, i, "entropy", fmt.Sprintf("%v: want a finite value ≥ 0", h)}
		}
		if !t.weighted(i) {
			continue
		}
		if a := t.Advantage[i]; !finite(a) {
			return &TokenError{t.Step, i, "advantage", fmt.Sprintf("%v: want a finite value", a)}
		}
		if needPolarity {
			if p := float64(t.Polarity[i]); !finite(p) {
				return &TokenError{t.Step, i, "polarity", fmt.Sprintf("%v: want a finite value", p)}
			}
		}
		if needLogprob {
			if lp := float64(t.Logprob[i]); !finite(lp) {
				return &TokenError{t.Step, i, "logprob", fmt.Sprintf("%v: want a finite value", lp)}
			}
			if t.hasOld(i) && !finite(float64(t.OldLogprob[i])) {
				return &TokenError{t.Step, i, "old_logprob", fmt.Sprintf("%v: want a finite value", t.OldLogprob[i])}
			}
		}
		if t.PredictedDeltaH != nil && !finite(float64(t.PredictedDeltaH[i])) {
			return &TokenError{t.Step, i, "predicted_dH", fmt.Sprintf("%v: want a finite value", t.PredictedDeltaH[i])}
		}
	}
	return nil
}

// WeightStats summarises the weights of one step over its weighted tokens (trained, with an
// advantage).
type WeightStats struct {
	Weighted   int64   // tokens the method acts on
	Changed    int64   // of those, tokens whose advantage the method changed (Ã ≠ A)
	WeightMin  float64 // over weighted tokens; 1 when there are none
	WeightMean float64
	WeightMax  float64
	// Scale is the PAPO renormalization factor applied to every weight (1 when off).
	Scale float64
	// SumAbsAdvantage is Σ|A| and SumAbsReweighted Σ|Ã| over weighted tokens.
	SumAbsAdvantage, SumAbsReweighted float64
	// SumPredictedDeltaH is Σ ΔĤ and SumWeightedPredictedDeltaH Σ w·ΔĤ over weighted tokens
	// (0 when the step has no predicted_dH column).
	SumPredictedDeltaH, SumWeightedPredictedDeltaH float64
}

// Apply computes one step's weights for phase φ = phi under c, writing the weight column
// (float32) and Ã (float64) per token. What the two columns mean per method is in the
// package documentation. Tokens that are masked or carry no advantage get
// w = 1 and Ã = A (the caller writes a null Ã where there is no advantage).
//
// Apply is a pure function of (c, phi, tok): the Reweighter adds the phase detector and the
// run state around it.
func Apply(c Config, phi float64, tok *StepTokens, weight []float32, reweighted []float64) (WeightStats, error) {
	n := tok.Len()
	if len(weight) != n || len(reweighted) != n {
		panic(fmt.Sprintf("papo: Apply: weight has %d and reweighted %d elements for %d tokens", len(weight), len(reweighted), n))
	}
	if err := c.Validate(); err != nil {
		return WeightStats{}, err
	}
	if !finite(phi) || phi < -1 || phi > 1 {
		return WeightStats{}, fmt.Errorf("step %d: phase φ = %v: want a value in [−1, 1]", tok.Step, phi)
	}
	if err := tok.check(c.Method); err != nil {
		return WeightStats{}, err
	}
	return apply(c, phi, tok, weight, reweighted), nil
}

// apply is Apply without the checks: c is valid, phi in [−1, 1], tok checked for c.Method.
func apply(c Config, phi float64, tok *StepTokens, weight []float32, reweighted []float64) WeightStats {
	n := tok.Len()
	dH := func(i int) float64 {
		if tok.PredictedDeltaH != nil {
			return float64(tok.PredictedDeltaH[i])
		}
		return 0
	}
	additive := c.Method == MethodKLCov || c.Method == MethodEntropyShaping
	scale, scaled := 1.0, false
	if additive {
		// Additive: Ã is the method's output, written into reweighted; the weight column is
		// Ã/A (1 where A = 0 or the token is not weighted).
		if c.Method == MethodKLCov {
			klCovAdvantages(c.KLCov, tok, reweighted)
		} else {
			shapedAdvantages(c.Shaping, tok, reweighted)
		}
	} else {
		// Multiplicative: the method's exact weights go into reweighted first (no scratch of
		// their own: 8 bytes a token less memory to touch), each then replaced by Ã = w·A in
		// the final pass, which reads a token's weight before it writes its Ã.
		multiplicativeWeights(c, phi, tok, reweighted)
		scale, scaled = renormalization(c, phi, tok, reweighted)
	}

	// The final pass: each weighted token's w and Ã, and the step's statistics.
	acc := weighBlocks(n, func(lo, hi int, acc *WeightAccumulator) {
		for i := lo; i < hi; i++ {
			a := tok.Advantage[i]
			if !tok.weighted(i) {
				weight[i], reweighted[i] = 1, a
				continue
			}
			var w, r float64
			if additive {
				w, r = 1, reweighted[i]
				if a != 0 {
					w = r / a
				}
			} else {
				w = reweighted[i]
				if scaled {
					w *= scale
				}
				r = w * a
			}
			weight[i], reweighted[i] = float32(w), r
			acc.Add(w, a, r, dH(i), r != a)
		}
	})
	return acc.Stats(scale)
}

// renormalization is PAPO's factor on every weight w (in w, before any scaling) where it is
// on: Σ|A| / Σ|w·A| over the weighted tokens, or 1 and false.
func renormalization(c Config, phi float64, tok *StepTokens, w []float64) (float64, bool) {
	if c.Method != MethodPAPO || !c.Renormalize {
		return 1, false
	}
	var abs, absW float64
	if g := tok.Global; g != nil {
		// With g = sign every w = 1 + λφ·sign(P) > 0, so Σ|w·A| = Σ|A| + λφ·Σ|A|·sign(P)
		// (Step refuses g = tanh here: its Σ|w·A| is not additive in one round).
		abs = g.AbsAdvantage
		if c.Lambda != 0 && phi != 0 {
			absW = g.AbsAdvantage + c.Lambda*phi*g.AbsAdvantageSign
		} else {
			absW = abs
		}
	} else {
		for i := range w {
			if tok.weighted(i) {
				abs += math.Abs(tok.Advantage[i])
				absW += math.Abs(w[i] * tok.Advantage[i])
			}
		}
	}
	if absW > 0 && abs > 0 {
		return abs / absW, true
	}
	return 1, false
}

// weighBlock is the tokens of a step that apply weighs as one block: each block's sums are
// gathered on their own and then added block after block, so that a step of many blocks is
// weighed on up to GOMAXPROCS goroutines with the same numbers whatever their number (and a
// step of one block, as the tokens come, as before blocks). A 4M-token step was ~45 ms of one
// core at the end of every papo serve request.
const weighBlock = 1 << 16

// weighBlocks runs f on the blocks of weighBlock tokens of [0, n), each with an accumulator of
// its own, on up to GOMAXPROCS goroutines (forBlocks), and returns the accumulators merged in
// block order.
func weighBlocks(n int, f func(lo, hi int, acc *WeightAccumulator)) WeightAccumulator {
	accs := make([]WeightAccumulator, (n+weighBlock-1)/weighBlock)
	forBlocks(n, func(lo, hi int) {
		var b WeightAccumulator // a goroutine's own: neighbours in accs share cache lines
		f(lo, hi, &b)
		accs[lo/weighBlock] = b
	})
	var acc WeightAccumulator
	for k := range accs {
		acc.merge(&accs[k])
	}
	return acc
}

// fillOnes sets every w to 1, in blocks (forBlocks).
func fillOnes(w []float64) {
	forBlocks(len(w), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			w[i] = 1
		}
	})
}

// forBlocks runs f on each block of weighBlock tokens of [0, n), on up to GOMAXPROCS goroutines
// when there are several blocks, on the caller's otherwise.
func forBlocks(n int, f func(lo, hi int)) {
	blocks := (n + weighBlock - 1) / weighBlock
	block := func(k int) { f(k*weighBlock, min(n, (k+1)*weighBlock)) }
	workers := min(runtime.GOMAXPROCS(0), blocks)
	if workers <= 1 {
		for k := range blocks {
			block(k)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for k := int(next.Add(1) - 1); k < blocks; k = int(next.Add(1) - 1) {
				block(k)
			}
		})
	}
	wg.Wait()
}

// multiplicativeWeights writes the exact weights of c's multiplicative method into w (1 for a
// token the method leaves alone), before any renormalization.
func multiplicativeWeights(c Config, phi float64, tok *StepTokens, w []float64) {
	if c.Method == MethodPAPO {
		papoWeights(c, phi, tok, w)
		return
	}
	fillOnes(w)
	switch c.Method {
	case MethodClipCov:
		clipCovWeights(c.ClipCov, tok, w)
	case MethodSTEER:
		steerWeights(c.STEER, tok, w)
	case MethodTopEntropy:
		topEntropyWeights(c.TopEntropy, tok, w)
	}
}

// WeightAccumulator gathers a step's WeightStats one weighted token at a time: Apply's, and a
// replay of a written output's (run.Replay).
type WeightAccumulator struct {
	st   WeightStats
	sumW float64
}

// Add counts one weighted token: its weight w, advantage a, reweighted advantage ã, predicted
// entropy change dH (0 where there is none), and whether the method changed its advantage.
func (acc *WeightAccumulator) Add(w, a, reweighted, dH float64, changed bool) {
	st := &acc.st
	if st.Weighted == 0 {
		st.WeightMin, st.WeightMax = w, w
	}
	st.Weighted++
	acc.sumW += w
	// No weight is NaN (checked inputs), so plain comparisons do what math.Min and math.Max do
	// (those are calls: a tenth of a step's reweighting time), but for the sign of a zero.
	if w < st.WeightMin {
		st.WeightMin = w
	}
	if w > st.WeightMax {
		st.WeightMax = w
	}
	if changed {
		st.Changed++
	}
	st.SumAbsAdvantage += math.Abs(a)
	st.SumAbsReweighted += math.Abs(reweighted)
	st.SumPredictedDeltaH += dH
	st.SumWeightedPredictedDeltaH += w * dH
}

// merge adds the tokens o counted after those acc counted: the minimum and maximum are the
// first of their value in that order, as Add's; the sums are acc's plus o's.
func (acc *WeightAccumulator) merge(o *WeightAccumulator) {
	if o.st.Weighted == 0 {
		return
	}
	if acc.st.Weighted == 0 {
		*acc = *o
		return
	}
	st, os := &acc.st, &o.st
	if os.WeightMin < st.WeightMin {
		st.WeightMin = os.WeightMin
	}
	if os.WeightMax > st.WeightMax {
		st.WeightMax = os.WeightMax
	}
	st.Weighted += os.Weighted
	st.Changed += os.Changed
	acc.sumW += o.sumW
	st.SumAbsAdvantage += os.SumAbsAdvantage
	st.SumAbsReweighted += os.SumAbsReweighted
	st.SumPredictedDeltaH += os.SumPredictedDeltaH
	st.SumWeightedPredictedDeltaH += os.SumWeightedPredictedDeltaH
}

// Stats are the step's statistics with the renormalization factor scale; minimum, mean and
// maximum weight are 1 when no token was weighted.
func (acc *WeightAccumulator) Stats(scale float64) WeightStats {
	st := acc.st
	st.Scale = scale
	if st.Weighted == 0 {
		st.WeightMin, st.WeightMean, st.WeightMax = 1, 1, 1
	} else {
		st.WeightMean = acc.sumW / float64(st.Weighted)
	}
	return st
}

// papoWeights sets w = 1 + λ·φ·g(P) on weighted tokens. With λ < 1 and |φ|, |g| ≤ 1 every
// weight is ≥ 1 − λ > 0, so both polarity branches always keep a share of the gradient.
func papoWeights(c Config, phi float64, tok *StepTokens, w []float64) {
	if c.Lambda == 0 || phi == 0 {
		fillOnes(w)
		return
	}
	sigma := 0.0
	if c.G == GTanh {
		sigma = polaritySD(tok)
		if tok.Global != nil {
			sigma = tok.Global.globalSD()
		}
	}
	forBlocks(len(w), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			w[i] = 1
			if !tok.weighted(i) {
				continue
			}
			p := float64(tok.Polarity[i])
			var g float64
			switch {
			case c.G == GTanh && sigma > 0:
				g = math.Tanh(p / sigma)
			case p != 0:
				// sign(P) without branching on it: P's sign is a coin toss from token to
				// token, and the mispredicted branches were half of this loop's time.
				g = math.Copysign(1, p)
			}
			w[i] = 1 + c.Lambda*phi*g
		}
	})
}

// polaritySD is the population standard deviation of P over the weighted tokens (two passes:
// the polarity of a step can be far from zero-mean).
func polaritySD(tok *StepTokens) float64 {
	var sum float64
	var n int
	for i := range tok.Polarity {
		if tok.weighted(i) {
			sum += float64(tok.Polarity[i])
			n++
		}
	}
	if n == 0 {
		return 0
	}
	mean := sum / float64(n)
	var ss float64
	for i := range tok.Polarity {
		if tok.weighted(i) {
			d := float64(tok.Polarity[i]) - mean
			ss += d * d
		}
	}
	return math.Sqrt(ss / float64(n))
}

// covariances returns, for the weighted tokens (in token order), their indices and
// Cov_t = (A_t − mean A)(log π_t − mean log π), the centred product of Cui et al. 2025.
func covariances(tok *StepTokens) (idx []int, cov []float64) {
	var sumA, sumL float64
	for i := range tok.Advantage {
		if tok.weighted(i) {
			idx = append(idx, i)
			sumA += tok.Advantage[i]
			sumL += float64(tok.Logprob[i])
		}
	}
	if len(idx) == 0 {
		return nil, nil
	}
	meanA, meanL := sumA/float64(len(idx)), sumL/float64(len(idx))
	cov = make([]float64, len(idx))
	for k, i := range idx {
		cov[k] = (tok.Advantage[i] - meanA) * (float64(tok.Logprob[i]) - meanL)
	}
	return idx, cov
}

// selectCount is max(⌊ratio·n⌋, 1), the number of tokens Clip-Cov and KL-Cov act on.
func selectCount(ratio float64, n int) int {
	return max(int(ratio*float64(n)), 1)
}

// ppoClipped reports whether PPO's clipped surrogate has no gradient for token i: r > 1+ε_high
// with A > 0, or r < 1−ε_low with A < 0.
func ppoClipped(tok *StepTokens, i int) bool {
	if tok.Clip == nil || !tok.hasOld(i) {
		return false
	}
	return tok.Clip.Clipped(tok.Advantage[i], math.Exp(float64(tok.Logprob[i])-float64(tok.OldLogprob[i])))
}

// clipCovWeights detaches (w = 0) max(⌊ratio·N⌋, 1) tokens drawn at random among those with
// low < Cov < high that PPO does not clip already. The draw is seeded by (seed, step), so a
// step's choice is reproducible across restarts.
func clipCovWeights(c ClipCovConfig, tok *StepTokens, w []float64) {
	idx, cov := covariances(tok)
	var cand []int
	for k, i := range idx {
		if cov[k] > c.Low && cov[k] < c.High && !ppoClipped(tok, i) {
			cand = append(cand, i)
		}
	}
	take := min(selectCount(c.Ratio, len(idx)), len(cand))
	rng := rand.New(rand.NewPCG(c.Seed, uint64(tok.Step)))
	for k := 0; k < take; k++ { // partial Fisher–Yates: the first take of a random permutation
		j := k + rng.IntN(len(cand)-k)
		cand[k], cand[j] = cand[j], cand[k]
		w[cand[k]] = 0
	}
}

// klCovAdvantages writes Ã for KL-Cov. Cui et al. add coef·|log π − log π_old| to the loss of
// the max(⌊ratio·N⌋, 1) tokens of largest Cov. The gradient of that term at the parameters
// that produced the logits is coef·sign(δ)·∇log π_a (δ = log π_a − log π_old,a), and the loss
// −A·r has gradient −A·r·∇log π_a, so the token's gradient there is that of the advantage
// Ã = A − coef·sign(δ)·e^{−δ}. Tokens without log π_old have δ = 0, where |δ| has no gradient.
func klCovAdvantages(c KLCovConfig, tok *StepTokens, out []float64) {
	for i := range out {
		out[i] = tok.Advantage[i]
	}
	idx, cov := covariances(tok)
	if len(idx) == 0 {
		return
	}
	order := make([]int, len(idx))
	for k := range order {
		order[k] = k
	}
	// Largest covariance first; ties by token order, so the choice is deterministic.
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(cov[b], cov[a]) })
	for _, k := range order[:min(selectCount(c.Ratio, len(idx)), len(idx))] {
		i := idx[k]
		if !tok.hasOld(i) {
			continue
		}
		delta := float64(tok.Logprob[i]) - float64(tok.OldLogprob[i])
		var sign float64
		switch {
		case delta > 0:
			sign = 1
		case delta < 0:
			sign = -1
		}
		out[i] = tok.Advantage[i] - c.Coef*sign*math.Exp(-delta)
	}
}

// steerWeights maps m = |A/π_old · π(1−π)(log π + H)| linearly over the step's weighted tokens
// onto [Max, Min]: the largest magnitude gets Min, the smallest Max, and a step whose
// magnitudes are all equal gets the midpoint. π_old = π where there is no log π_old.
func steerWeights(c STEERConfig, tok *StepTokens, w []float64) {
	m := make([]float64, len(w))
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range w {
		if !tok.weighted(i) {
			continue
		}
		lp := float64(tok.Logprob[i])
		pi := math.Exp(lp)
		old := lp
		if tok.hasOld(i) {
			old = float64(tok.OldLogprob[i])
		}
		// A/π_old · π = A·e^{log π − log π_old}, computed in log space so a tiny π_old does
		// not overflow.
		m[i] = math.Abs(tok.Advantage[i] * math.Exp(lp-old) * (1 - pi) * (lp + float64(tok.Entropy[i])))
		lo, hi = math.Min(lo, m[i]), math.Max(hi, m[i])
	}
	for i := range w {
		if !tok.weighted(i) {
			continue
		}
		if hi > lo {
			w[i] = c.Max - (c.Max-c.Min)*(m[i]-lo)/(hi-lo)
		} else {
			w[i] = (c.Min + c.Max) / 2
		}
	}
}

// shapedAdvantages writes Ã = A + min(α·H, |A|/κ) (Cheng et al. 2025). With κ > 1 the bonus
// never flips the sign of A, and A = 0 stays 0.
func shapedAdvantages(c ShapingConfig, tok *StepTokens, out []float64) {
	for i := range out {
		a := tok.Advantage[i]
		out[i] = a
		if tok.weighted(i) {
			out[i] = a + math.Min(c.Alpha*float64(tok.Entropy[i]), math.Abs(a)/c.Kappa)
		}
	}
}

// topEntropyWeights keeps (w = 1) the weighted tokens whose entropy is at least the step's
// (1 − fraction) quantile and masks the others (w = 0), as Wang et al. 2025 do. The quantile
// interpolates linearly between order statistics, like torch.quantile.
func topEntropyWeights(c TopEntropyConfig, tok *StepTokens, w []float64) {
	var hs []float64
	for i := range w {
		if tok.weighted(i) {
			hs = append(hs, float64(tok.Entropy[i]))
		}
	}
	if len(hs) == 0 {
		return
	}
	slices.Sort(hs)
	pos := (1 - c.Fraction) * float64(len(hs)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(hs)-1)
	threshold := hs[lo] + (pos-float64(lo))*(hs[hi]-hs[lo])
	for i := range w {
		if tok.weighted(i) && float64(tok.Entropy[i]) < threshold {
			w[i] = 0
		}
	}
}
