package run

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
)

// Output is a Sink that writes every row to a papoio.Writer whose schema is
// papoio.OutputSchema of the input's, and keeps the steps' reports.
type Output struct {
	w       *papoio.Writer // nil: no per-token output
	schema  *arrow.Schema
	mem     memory.Allocator
	reports []StepReport
	onStep  func(*StepReport) error

	stats       *papoio.Writer // WithRowStats
	statsSchema *arrow.Schema
}

// WithRowStats also writes every row's statistics to w, whose schema is
// papoio.RowStatsSchema of the input's (the pipeline needs Config.RowStats).
func (o *Output) WithRowStats(w *papoio.Writer, schema *arrow.Schema) *Output {
	o.stats, o.statsSchema = w, schema
	return o
}

// NewOutput writes rows to w (nil: keep the reports only) with schema, the output schema of
// the input. onStep (may be nil) sees each step's report as it comes, after its rows were
// written: a command prints a rollback there, a server logs it.
func NewOutput(w *papoio.Writer, schema *arrow.Schema, mem memory.Allocator, onStep func(*StepReport) error) *Output {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &Output{w: w, schema: schema, mem: mem, onStep: onStep}
}

// Rows writes one piece of a step.
func (o *Output) Rows(r *Rows) error {
	if o.stats != nil {
		if r.Stats == nil {
			return fmt.Errorf("step %d: no row statistics (the pipeline's Config.RowStats is off)", r.Step)
		}
		rec, err := papoio.BuildRowStats(o.mem, o.statsSchema, r.Passthrough, r.Stats)
		if err != nil {
			return fmt.Errorf("step %d: %w", r.Step, err)
		}
		err = o.stats.Write(rec)
		rec.Release()
		if err != nil {
			return err
		}
	}
	if o.w == nil {
		return nil
	}
	rec, err := papoio.BuildOutput(o.mem, o.schema, r.Passthrough, r.Batch, r.Result, r.Weight, r.Reweighted)
	if err != nil {
		return fmt.Errorf("step %d: %w", r.Step, err)
	}
	defer rec.Release()
	return o.w.Write(rec)
}

// NeedsPassthrough reports whether the rows' passthrough columns are written: not when the
// output names computed columns only (a reply of reweighted_advantage), and the run need not
// copy them.
func (o *Output) NeedsPassthrough() bool {
	return o.stats != nil || (o.w != nil && papoio.NeedsPassthrough(o.schema))
}

// Step keeps the report.
func (o *Output) Step(s *StepReport) error {
	o.reports = append(o.reports, *s)
	if o.onStep != nil {
		return o.onStep(s)
	}
	return nil
}

// Reports are the steps' reports so far, in order.
func (o *Output) Reports() []StepReport { return o.reports }

// Summaries are the rows of the per-step summary table so far.
func (o *Output) Summaries() []papoio.StepSummary {
	out := make([]papoio.StepSummary, len(o.reports))
	for i, r := range o.reports {
		out[i] = r.Summary
	}
	return out
}
