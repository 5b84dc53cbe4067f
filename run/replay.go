package run

import (
	"fmt"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
)

// Replay hands a per-token output that papo computed earlier (papoio.OpenOutput) to a Sink as
// the Pipeline that computed it did: each step's rows in input order, then the step's report.
// Nothing is recomputed per token. The step summary is gathered from the rows (the same sums as
// the Pipeline's, over the float32 columns of the file), and because the file holds no EMA and
// no phase, the Reweighter's phase detector is fed each step's entropy (Reweighter.Observe):
// with the parameters of the run that wrote the file, the phase is that run's. Rows are not
// buffered, so memory is one batch whatever the size of a step.
type Replay struct {
	name string
	rw   *papo.Reweighter
	sink Sink

	cur      int64
	haveStep bool
	stats    polarity.StepStats
	weights  papo.WeightAccumulator
	rows     int64
	steps    int
	err      error
}

// NewReplay replays into sink; name is the file in messages.
func NewReplay(name string, rw *papo.Reweighter, sink Sink) (*Replay, error) {
	if rw == nil || sink == nil {
		return nil, fmt.Errorf("run: NewReplay needs a reweighter and a sink")
	}
	return &Replay{name: name, rw: rw, sink: sink}, nil
}

// Rows is the number of token rows added.
func (p *Replay) Rows() int64 { return p.rows }

// Steps is the number of steps handed to the Sink.
func (p *Replay) Steps() int { return p.steps }

// Add hands one batch's rows to the Sink, step by step; a step that ends in the batch gets its
// report. After an error, later calls return it.
func (p *Replay) Add(b *papoio.OutputBatch) error {
	if p.err == nil {
		p.err = p.add(b)
	}
	return p.err
}

func (p *Replay) add(b *papoio.OutputBatch) error {
	n := b.Input.Rows()
	err := stepRuns(b.Step, n, func(step int64, lo, hi int) error {
		if p.haveStep && step != p.cur {
			if step < p.cur {
				return stepOrderError(p.name, &b.Batch, lo, step, p.cur)
			}
			if err := p.flush(); err != nil {
				return err
			}
		}
		p.cur, p.haveStep = step, true
		return p.rowsOf(b, lo, hi)
	})
	if err != nil {
		return err
	}
	p.rows += int64(n)
	return nil
}

// rowsOf folds rows [lo, hi) of b into the step's sums and hands them to the Sink.
func (p *Replay) rowsOf(b *papoio.OutputBatch, lo, hi int) error {
	p.stats.Add(&b.Input, &b.Result, lo, hi)
	for i := lo; i < hi; i++ {
		if !b.Input.Trained(i) || !b.Input.HasAdvantage(i) {
			continue
		}
		// Ã is stored as float32: compare at that precision (a float64 A passes through as is).
		changed := float32(b.Reweighted[i]) != float32(b.Input.Advantage[i])
		p.weights.Add(float64(b.Weight[i]), b.Input.Advantage[i], b.Reweighted[i], float64(b.Result.PredictedDeltaH[i]), changed)
	}
	pass := b.Record.NewSlice(int64(lo), int64(hi))
	defer pass.Release()
	batch := sliceBatch(&b.Input, lo, hi)
	res := sliceResult(&b.Result, lo, hi)
	return p.sink.Rows(&Rows{Step: p.cur, Passthrough: pass, Batch: &batch, Result: &res,
		Weight: b.Weight[lo:hi], Reweighted: b.Reweighted[lo:hi]})
}

// flush ends the step: the phase detector sees its entropy, the Sink its report.
func (p *Replay) flush() error {
	defer func() {
		p.stats, p.weights = polarity.StepStats{}, papo.WeightAccumulator{}
	}()
	ph, err := p.rw.Observe(p.cur, papo.EntropySum{Sum: p.stats.SumEntropy, Tokens: p.stats.Tokens})
	if err != nil {
		return fmt.Errorf("%s: step %d: %w", p.name, p.cur, err)
	}
	ws := p.weights.Stats(1)
	sr := papo.StepResult{Step: p.cur, Tokens: ph.Tokens, MeanEntropy: ph.MeanEntropy, EMA: ph.EMA, Phase: ph.Phi,
		Rollback: ph.Rollback, WeightStats: ws}
	s := &p.stats
	sum := papoio.StepSummary{Step: p.cur, Tokens: s.Tokens, MeanEntropy: s.MeanEntropy(), EMAEntropy: ph.EMA,
		Phase: ph.Phi, ExpandingFraction: s.ExpandingFraction(), SumPositivePolarity: s.SumPositiveP,
		SumNegativePolarity: s.SumNegativeP, PredictedDeltaH: s.SumDeltaH,
		ReweightedPredictedDeltaH: ws.SumWeightedPredictedDeltaH, WeightMin: ws.WeightMin,
		WeightMean: ws.WeightMean, WeightMax: ws.WeightMax}
	p.steps++
	return p.sink.Step(&StepReport{Summary: sum, Reweight: sr})
}

// Close reports the last step. A file without rows has no step, which is not an error here:
// a report says that there is nothing to show.
func (p *Replay) Close() error {
	if p.err != nil || !p.haveStep {
		return p.err
	}
	p.haveStep = false
	p.err = p.flush()
	return p.err
}

// sliceBatch views rows [lo, hi) of b's scalar columns (no logits).
func sliceBatch(b *polarity.Batch, lo, hi int) polarity.Batch {
	out := polarity.Batch{TokenID: b.TokenID[lo:hi]}
	if b.Advantage != nil {
		out.Advantage = b.Advantage[lo:hi]
	}
	if b.AdvantageValid != nil {
		out.AdvantageValid = b.AdvantageValid[lo:hi]
	}
	if b.Mask != nil {
		out.Mask = b.Mask[lo:hi]
	}
	return out
}

// sliceResult views rows [lo, hi) of r.
func sliceResult(r *polarity.Result, lo, hi int) polarity.Result {
	return polarity.Result{Entropy: r.Entropy[lo:hi], Logprob: r.Logprob[lo:hi], SampledTerm: r.SampledTerm[lo:hi],
		Correction: r.Correction[lo:hi], PolarityFactor: r.PolarityFactor[lo:hi], Polarity: r.Polarity[lo:hi],
		PolarityValid: r.PolarityValid[lo:hi], PredictedDeltaH: r.PredictedDeltaH[lo:hi]}
}
