package main

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
)

// The pipeline: batches → engine → one training step's per-token results are buffered
// (never its logits) → the reweighter sees the whole step (φ_k depends on the step's mean
// entropy, σ_P and renormalization on all its tokens) → output rows in input order.
// Memory is bounded by one batch of logits plus one step of per-token results.

// chunk is a run of rows of one batch that belong to the step being buffered.
type chunk struct {
	pass  arrow.Record   // the input columns except logits
	batch polarity.Batch // the scalar columns (logits left out)
	res   polarity.Result
}

type pipeline struct {
	name   string // input name, for messages
	mem    memory.Allocator
	engine polarity.Engine
	params polarity.Params
	rw     *papo.Reweighter
	out    *papoio.Writer // nil: no per-token output
	schema *arrow.Schema  // output schema

	res       polarity.Result // engine output for the current batch
	cur       int64           // step being buffered
	haveStep  bool
	chunks    []chunk
	stats     polarity.StepStats
	summaries []papoio.StepSummary
	rows      int64
}

// add runs the engine on one batch and buffers its rows by step.
func (p *pipeline) add(ctx context.Context, b *papoio.Batch) error {
	n := b.Input.Rows()
	if err := p.engine.Compute(ctx, &b.Input, p.params, &p.res); err != nil {
		var re *polarity.RowError
		if errors.As(err, &re) {
			return fmt.Errorf("%s: batch %d, row %d (row %d of the input): %s: %s",
				p.name, b.Index, re.Row, b.FirstRow+int64(re.Row), re.Column, re.Msg)
		}
		return fmt.Errorf("%s: batch %d: %s engine: %w", p.name, b.Index, p.engine.Name(), err)
	}
	pass := b.Passthrough(p.mem)
	defer pass.Release()
	for lo := 0; lo < n; {
		step := int64(0)
		if b.Step != nil {
			step = b.Step[lo]
		}
		hi := lo + 1
		for hi < n && b.Step != nil && b.Step[hi] == step {
			hi++
		}
		if !p.haveStep || step != p.cur {
			if p.haveStep {
				if step < p.cur {
					return fmt.Errorf("%s: batch %d, row %d: step %d comes after step %d: steps must appear in increasing order, each step's rows together",
						p.name, b.Index, lo, step, p.cur)
				}
				if err := p.flush(); err != nil {
					return err
				}
			}
			p.cur, p.haveStep = step, true
		}
		p.chunks = append(p.chunks, p.keep(pass, &b.Input, lo, hi))
		p.stats.Add(&b.Input, &p.res, lo, hi)
		lo = hi
	}
	p.rows += int64(n)
	return nil
}

// keep copies rows [lo, hi) of the batch's scalar columns and results.
func (p *pipeline) keep(pass arrow.Record, b *polarity.Batch, lo, hi int) chunk {
	c := chunk{pass: pass.NewSlice(int64(lo), int64(hi))}
	c.batch.TokenID = append([]int32(nil), b.TokenID[lo:hi]...)
	if b.Advantage != nil {
		c.batch.Advantage = append([]float64(nil), b.Advantage[lo:hi]...)
	}
	if b.AdvantageValid != nil {
		c.batch.AdvantageValid = append([]bool(nil), b.AdvantageValid[lo:hi]...)
	}
	if b.OldLogprob != nil {
		c.batch.OldLogprob = append([]float32(nil), b.OldLogprob[lo:hi]...)
	}
	if b.OldLogprobValid != nil {
		c.batch.OldLogprobValid = append([]bool(nil), b.OldLogprobValid[lo:hi]...)
	}
	if b.Mask != nil {
		c.batch.Mask = append([]bool(nil), b.Mask[lo:hi]...)
	}
	r := &p.res
	c.res = polarity.Result{
		Entropy:         append([]float32(nil), r.Entropy[lo:hi]...),
		Logprob:         append([]float32(nil), r.Logprob[lo:hi]...),
		SampledTerm:     append([]float32(nil), r.SampledTerm[lo:hi]...),
		Correction:      append([]float32(nil), r.Correction[lo:hi]...),
		PolarityFactor:  append([]float32(nil), r.PolarityFactor[lo:hi]...),
		Polarity:        append([]float32(nil), r.Polarity[lo:hi]...),
		PolarityValid:   append([]bool(nil), r.PolarityValid[lo:hi]...),
		PredictedDeltaH: append([]float32(nil), r.PredictedDeltaH[lo:hi]...),
	}
	return c
}

// flush reweights the buffered step and writes its rows.
func (p *pipeline) flush() error {
	if !p.haveStep {
		return nil
	}
	defer func() {
		for _, c := range p.chunks {
			c.pass.Release()
		}
		p.chunks = p.chunks[:0]
		p.stats = polarity.StepStats{}
	}()
	tok := p.stepTokens()
	weight := make([]float32, len(tok.Advantage))
	reweighted := make([]float64, len(tok.Advantage))
	sr, err := p.rw.Step(tok, weight, reweighted)
	if err != nil {
		return fmt.Errorf("%s: step %d: %w", p.name, p.cur, err)
	}
	p.summaries = append(p.summaries, p.summary(sr))
	if p.out == nil {
		return nil
	}
	off := 0
	for _, c := range p.chunks {
		n := c.batch.Rows()
		rec, err := papoio.BuildOutput(p.mem, p.schema, c.pass, &c.batch, &c.res, weight[off:off+n], reweighted[off:off+n])
		if err != nil {
			return fmt.Errorf("%s: step %d: %w", p.name, p.cur, err)
		}
		err = p.out.Write(rec)
		rec.Release()
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

// stepTokens gathers the buffered step into the reweighter's input.
func (p *pipeline) stepTokens() *papo.StepTokens {
	t := &papo.StepTokens{Step: p.cur, ClipLow: p.params.ClipLow, ClipHigh: p.params.ClipHigh}
	hasOld := false
	for _, c := range p.chunks {
		hasOld = hasOld || c.batch.OldLogprob != nil
	}
	for _, c := range p.chunks {
		b, r := &c.batch, &c.res
		for i := range b.Rows() {
			a := 0.0
			if b.Advantage != nil {
				a = b.Advantage[i]
			}
			t.Advantage = append(t.Advantage, a)
			t.HasAdvantage = append(t.HasAdvantage, b.HasAdvantage(i))
			t.Trained = append(t.Trained, b.Trained(i))
			if hasOld {
				old := float32(math.NaN())
				if b.HasOldLogprob(i) {
					old = b.OldLogprob[i]
				}
				t.OldLogprob = append(t.OldLogprob, old)
				t.HasOldLogprob = append(t.HasOldLogprob, b.HasOldLogprob(i))
			}
		}
		t.Entropy = append(t.Entropy, r.Entropy...)
		t.Logprob = append(t.Logprob, r.Logprob...)
		t.Polarity = append(t.Polarity, r.Polarity...)
		t.PredictedDeltaH = append(t.PredictedDeltaH, r.PredictedDeltaH...)
	}
	return t
}

func (p *pipeline) summary(sr papo.StepResult) papoio.StepSummary {
	s := &p.stats
	return papoio.StepSummary{
		Step:                      p.cur,
		Tokens:                    s.Tokens,
		MeanEntropy:               s.MeanEntropy(),
		EMAEntropy:                sr.EMA,
		Phase:                     sr.Phase,
		ExpandingFraction:         s.ExpandingFraction(),
		SumPositivePolarity:       s.SumPositiveP,
		SumNegativePolarity:       s.SumNegativeP,
		PredictedDeltaH:           s.SumDeltaH,
		ReweightedPredictedDeltaH: sr.SumWeightedPredictedDeltaH,
		WeightMin:                 sr.WeightMin,
		WeightMean:                sr.WeightMean,
		WeightMax:                 sr.WeightMax,
	}
}

// close flushes the last step and releases what is still buffered.
func (p *pipeline) close() error {
	err := p.flush()
	for _, c := range p.chunks {
		c.pass.Release()
	}
	p.chunks = nil
	return err
}
