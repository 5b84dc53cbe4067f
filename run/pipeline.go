package run

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
)

// Config is what a run needs besides its batches.
type Config struct {
	// Name is the input in messages ("stdin" for standard input).
	Name string
	// Engine computes the per-token statistics.
	Engine polarity.Engine
	// Params are τ, η, the PPO clip range and the natural-gradient choice.
	Params polarity.Params
	// Reweighter computes the phase and the weights; a run that only analyzes uses method
	// papo.MethodNone.
	Reweighter *papo.Reweighter
	// RequireAdvantage refuses input without an advantage column (reweighting needs one).
	RequireAdvantage bool
	// Mem allocates the buffered passthrough columns (nil: memory.DefaultAllocator).
	Mem memory.Allocator
	// RowStats also computes each row's statistics (Rows.Stats) from the logits: in the
	// engine's own pass where it is a polarity.StatsEngine (the CPU engine), else in a second
	// pass of the CPU engine.
	RowStats bool
	// PartialsOnly computes each step's papo.StepPartials (StepReport.Partials) instead of
	// reweighting it: no rows reach the Sink, and the run state is not touched (papo stats).
	PartialsOnly bool
	// Global, when set, are the steps' partials summed over all data-parallel ranks: each
	// step is reweighted with its global figures (papo reweight --global-stats). A step
	// missing from it is an error.
	Global map[int64]papo.StepPartials
	// Buffers, when set, lends the run its step buffer and takes it back at Close or Abort
	// (a server's requests reuse the memory); nil: the run has its own.
	Buffers *Buffers
	// Rows, when > 0, is how many rows the input holds (papoio.Reader.Rows: an IPC file): the
	// step buffer reserves room for that many (at most maxReservedRows) before the first batch,
	// so that a one-step input's buffer is not copied as it grows. Memory is only faulted in
	// as rows arrive, so a reservation beyond the largest step costs address space, not RAM.
	Rows int64
}

// maxReservedRows bounds Config.Rows's reservation: 16M rows, about 1 GB of address space.
const maxReservedRows = 1 << 24

// Rows are consecutive input rows of one step with their results: a step's rows reach the Sink
// as one Rows per input batch the step spans, in input order. Everything is valid during the
// Sink call only.
type Rows struct {
	Step int64
	// Passthrough holds the input columns except logits (papoio.Batch.Passthrough); none, only
	// the row count, for a Sink whose NeedsPassthrough is false.
	Passthrough arrow.Record
	// Batch holds the rows' scalar columns (its Logits are empty).
	Batch  *polarity.Batch
	Result *polarity.Result
	// Weight and Reweighted are the method's w and Ã per row.
	Weight     []float32
	Reweighted []float64
	// Stats are the rows' statistics when Config.RowStats is set, else nil.
	Stats *polarity.StatsColumns
}

// StepReport is one step's summary: the row of the per-step table, and the reweighter's result
// with its rollback, if the step came again.
type StepReport struct {
	Summary  papoio.StepSummary
	Reweight papo.StepResult
	// Partials are the step's partials (Config.PartialsOnly only).
	Partials *papo.StepPartials
}

// A Sink receives a run's results: for each step, its rows in input order, then its report.
// An error from the Sink stops the run with that error.
type Sink interface {
	Rows(r *Rows) error
	Step(s *StepReport) error
}

// passthroughSink is a Sink that may not need the rows' passthrough columns (Rows.Passthrough
// then has none, only the row count).
type passthroughSink interface {
	NeedsPassthrough() bool
}

var noColumns = arrow.NewSchema(nil, nil)

// chunk is a run of rows of one batch that belong to the step being buffered: rows [lo, hi)
// of the step buffer.
type chunk struct {
	pass   arrow.Record // the input columns except logits
	lo, hi int
}

// Pipeline runs batches through the engine and the reweighter into a Sink. It is not safe for
// concurrent use.
type Pipeline struct {
	cfg  Config
	sink Sink

	res      polarity.Result       // engine output for the current batch
	st       polarity.StatsColumns // row statistics of the current batch (Config.RowStats)
	scratch  polarity.Result       // the second pass's results, dropped
	cur      int64                 // step being buffered
	haveStep bool
	chunks   []chunk
	buf      *stepBuf // the step's rows; nil after Close or Abort
	stats    polarity.StepStats
	rows     int64
	steps    int
	err      error // the first error: the pipeline is spoiled
	closed   bool
}

// New starts a run.
func New(cfg Config, sink Sink) (*Pipeline, error) {
	if cfg.Engine == nil || cfg.Reweighter == nil || sink == nil {
		return nil, errors.New("run: New needs an engine, a reweighter and a sink")
	}
	if err := cfg.Params.Validate(); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	if cfg.Mem == nil {
		cfg.Mem = memory.DefaultAllocator
	}
	p := &Pipeline{cfg: cfg, sink: sink, buf: cfg.Buffers.get()}
	if cfg.Rows > 0 {
		p.buf.reserve(int(min(cfg.Rows, maxReservedRows)))
	}
	return p, nil
}

// Rows is the number of token rows added.
func (p *Pipeline) Rows() int64 { return p.rows }

// Steps is the number of steps handed to the Sink.
func (p *Pipeline) Steps() int { return p.steps }

// Add runs the engine on one batch and buffers its rows by step; a step that ends in this batch
// is reweighted and handed to the Sink. After an error the Pipeline is spoiled: later calls
// return the same error, and only Abort is left to do.
func (p *Pipeline) Add(ctx context.Context, b *papoio.Batch) error {
	if p.err != nil {
		return p.err
	}
	if p.closed {
		return fmt.Errorf("run: %s: Add after Close", p.cfg.Name)
	}
	p.err = p.add(ctx, b)
	return p.err
}

func (p *Pipeline) add(ctx context.Context, b *papoio.Batch) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.cfg.RequireAdvantage && b.Input.Advantage == nil {
		return fmt.Errorf("%s: the input has no advantage column: reweighting needs one advantage per token "+
			"(papo analyze computes entropy and polarity without advantages)", p.cfg.Name)
	}
	n := b.Input.Rows()
	// Row statistics need no engine: the finishing step is a few operations per token.
	compute, engine := p.cfg.Engine.Compute, p.cfg.Engine.Name()
	switch {
	case b.Input.Stats != nil && p.cfg.RowStats:
		return fmt.Errorf("%s: the input is row statistics already; --row-stats writes them for an input of logits", p.cfg.Name)
	case b.Input.Stats != nil:
		compute, engine = polarity.ComputeStats, "row-statistics"
	case p.cfg.RowStats:
		se, ok := p.cfg.Engine.(polarity.StatsEngine)
		if !ok {
			se = polarity.NewCPU(0).(polarity.StatsEngine)
			if err := se.ComputeWithStats(ctx, &b.Input, p.cfg.Params, &p.scratch, &p.st); err != nil {
				return fmt.Errorf("%s: batch %d: row statistics (cpu): %w", p.cfg.Name, b.Index, err)
			}
			break
		}
		compute = func(ctx context.Context, in *polarity.Batch, prm polarity.Params, out *polarity.Result) error {
			return se.ComputeWithStats(ctx, in, prm, out, &p.st)
		}
	}
	// A batch that continues the step being buffered (the common case: a trainer's request is
	// one step) is computed straight into the step buffer; one that starts a step or spans
	// steps goes through p.res and is copied, as the step must be flushed first.
	out, inPlace := &p.res, p.continuesStep(b.Step, n)
	var view polarity.Result
	if inPlace {
		view = p.buf.results(n)
		out = &view
	}
	if err := compute(ctx, &b.Input, p.cfg.Params, out); err != nil {
		var re *polarity.RowError
		if errors.As(err, &re) {
			return fmt.Errorf("%s: batch %d, row %d (row %d of the input): %s: %s",
				p.cfg.Name, b.Index, re.Row, b.FirstRow+int64(re.Row), re.Column, re.Msg)
		}
		return fmt.Errorf("%s: batch %d: %s engine: %w", p.cfg.Name, b.Index, engine, err)
	}
	var pass arrow.Record
	if ps, ok := p.sink.(passthroughSink); !ok || ps.NeedsPassthrough() {
		pass = b.Passthrough(p.cfg.Mem)
	} else {
		pass = array.NewRecord(noColumns, nil, int64(n)) // the row count only
	}
	defer pass.Release()
	err := stepRuns(b.Step, n, func(step int64, lo, hi int) error {
		if !p.haveStep || step != p.cur {
			if p.haveStep {
				if step < p.cur {
					return stepOrderError(p.cfg.Name, b, lo, step, p.cur)
				}
				if err := p.flush(ctx); err != nil {
					return err
				}
			}
			p.cur, p.haveStep = step, true
		}
		p.chunks = append(p.chunks, p.keep(pass, &b.Input, out, lo, hi, inPlace))
		p.stats.Add(&b.Input, out, lo, hi)
		return nil
	})
	if err != nil {
		return err
	}
	p.rows += int64(n)
	return nil
}

// stepRuns calls fn for each run [lo, hi) of rows of one step, in order; without a step column
// (steps nil) every row is in step 0.
func stepRuns(steps []int64, n int, fn func(step int64, lo, hi int) error) error {
	for lo := 0; lo < n; {
		step := int64(0)
		if steps != nil {
			step = steps[lo]
		}
		hi := lo + 1
		for hi < n && steps != nil && steps[hi] == step {
			hi++
		}
		if err := fn(step, lo, hi); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// stepOrderError is the error of row lo of b, whose step comes after the step cur.
func stepOrderError(name string, b *papoio.Batch, lo int, step, cur int64) error {
	return fmt.Errorf("%s: batch %d, row %d (row %d of the input): %s: step %d comes after step %d: "+
		"steps must increase, each step's rows together", name, b.Index, lo, b.FirstRow+int64(lo),
		papoio.ColStep, step, cur)
}

// continuesStep reports whether all n rows of a batch with the step column steps (nil: step 0)
// belong to the step being buffered, or start the first step: then the pipeline computes them
// into the step buffer in place. Rows of several steps, or a new step after a buffered one, are
// left to stepRuns (which also refuses steps out of order).
func (p *Pipeline) continuesStep(steps []int64, n int) bool {
	if n == 0 {
		return false
	}
	first := int64(0)
	if steps != nil {
		first = steps[0]
		for _, s := range steps[1:n] {
			if s != first {
				return false
			}
		}
	}
	return !p.haveStep || first == p.cur
}

// keep appends rows [lo, hi) of the batch's scalar columns, results r and statistics to the step
// buffer; inPlace: r is the step buffer's own view (Pipeline.add).
func (p *Pipeline) keep(pass arrow.Record, b *polarity.Batch, r *polarity.Result, lo, hi int, inPlace bool) chunk {
	var st *polarity.StatsColumns
	if p.cfg.RowStats {
		st = &p.st
	}
	off := p.buf.n
	p.buf.appendRows(b, r, st, lo, hi, inPlace)
	return chunk{pass: pass.NewSlice(int64(lo), int64(hi)), lo: off, hi: p.buf.n}
}

// release drops the buffered step.
func (p *Pipeline) release() {
	for _, c := range p.chunks {
		c.pass.Release()
	}
	p.chunks = p.chunks[:0]
	p.stats = polarity.StepStats{}
	if p.buf != nil {
		p.buf.reset()
	}
}

// giveBack returns the step buffer to Config.Buffers.
func (p *Pipeline) giveBack() {
	p.cfg.Buffers.put(p.buf)
	p.buf = nil
}

// flush reweights the buffered step and hands its rows and report to the Sink.
func (p *Pipeline) flush(ctx context.Context) error {
	if !p.haveStep {
		return nil
	}
	defer p.release()
	if err := ctx.Err(); err != nil {
		return err
	}
	tok := p.stepTokens()
	if p.cfg.PartialsOnly {
		part := tok.Partials()
		p.steps++
		return p.sink.Step(&StepReport{Summary: papoio.StepSummary{Step: p.cur, Tokens: p.stats.Tokens,
			MeanEntropy: p.stats.MeanEntropy()}, Partials: &part})
	}
	if p.cfg.Global != nil {
		g, ok := p.cfg.Global[p.cur]
		if !ok {
			return fmt.Errorf("%s: step %d is not in the global statistics", p.cfg.Name, p.cur)
		}
		tok.Global = &g
	}
	weight, reweighted := p.buf.outputs()
	sr, err := p.cfg.Reweighter.Step(tok, weight, reweighted)
	if err != nil {
		return fmt.Errorf("%s: step %d: %w", p.cfg.Name, p.cur, err)
	}
	for _, c := range p.chunks {
		b, res, st := p.buf.view(c.lo, c.hi, p.cfg.RowStats)
		rows := Rows{Step: p.cur, Passthrough: c.pass, Batch: &b, Result: &res,
			Weight: weight[c.lo:c.hi], Reweighted: reweighted[c.lo:c.hi], Stats: st}
		if err := p.sink.Rows(&rows); err != nil {
			return err
		}
	}
	p.steps++
	return p.sink.Step(&StepReport{Summary: p.summary(sr), Reweight: sr})
}

// stepTokens is the buffered step as the reweighter's input (views of the step buffer).
func (p *Pipeline) stepTokens() *papo.StepTokens {
	clip := p.cfg.Params.Clip()
	return p.buf.tokens(p.cur, &clip)
}

func (p *Pipeline) summary(sr papo.StepResult) papoio.StepSummary {
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

// Close reweights the last step and hands it to the Sink. It returns the error that spoiled
// the pipeline, if any. A run without rows is an error: there is nothing to commit.
func (p *Pipeline) Close(ctx context.Context) error {
	if p.err != nil {
		return p.err
	}
	if p.closed {
		return nil
	}
	p.closed = true
	if p.rows == 0 {
		p.err = fmt.Errorf("%s: the input has no token rows", p.cfg.Name)
		return p.err
	}
	p.err = p.flush(ctx)
	p.haveStep = false
	p.giveBack()
	return p.err
}

// Abort releases what is buffered without handing it to the Sink. It is safe after Close.
func (p *Pipeline) Abort() {
	p.release()
	p.giveBack()
	p.chunks = nil
	p.closed = true
	if p.err == nil {
		p.err = fmt.Errorf("run: %s: aborted", p.cfg.Name)
	}
}
