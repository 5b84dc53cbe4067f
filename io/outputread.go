package papoio

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// Reading papo's own per-token output back (docs/SCHEMA.md "Output"): `papo report` takes the
// output of analyze or reweight as well as their inputs. The file is opened by the same Reader
// (IPC file or stream, CSV, JSONL, Parquet with WithTables; the same checks of corrupt bytes),
// with the input contract switched off and the output's columns checked here instead.

// ErrNotOutput is returned by OpenOutput for a file that is an input of papo (it has logits or
// row statistics): open it with Open and compute it.
var ErrNotOutput = errors.New("the file is an input (logits or row statistics), not papo's per-token output")

// OutputBatch is one record batch of a per-token output. Batch.Input holds the token ids, the
// advantages and the mask (no logits); Result the computed columns.
type OutputBatch struct {
	Batch
	Result polarity.Result
	// Weight is w and Reweighted Ã (NaN where the column is null: no advantage).
	Weight     []float32
	Reweighted []float64
}

// OutputReader reads a per-token output one record batch at a time:
//
//	for r.Next() { use(r.Batch()) }
//	if err := r.Err(); err != nil { ... }
type OutputReader struct {
	r        *Reader
	computed [9]int // field index of each of outputColumns
	batch    *OutputBatch
}

// isInputSchema reports whether s is an input of papo: it has logits, or the six row
// statistics without the computed columns. The output of a row-statistics input has both the
// statistics (carried through) and every computed column.
func isInputSchema(s *arrow.Schema) bool {
	has := func(names ...string) bool {
		for _, name := range names {
			if len(s.FieldIndices(name)) == 0 {
				return false
			}
		}
		return true
	}
	return has(ColLogits) || (has(StatsColumnNames...) && !has(outputColumns...))
}

// OpenOutput opens a per-token output written by papo analyze or reweight (any of their -o
// formats). A file with logits or row statistics is an input: the error wraps ErrNotOutput.
func OpenOutput(path string, mem memory.Allocator, opts ...Option) (*OutputReader, error) {
	input := false
	r, err := Open(path, mem, append(opts, WithContract(func(s *arrow.Schema) bool {
		input = isInputSchema(s)
		return input
	}))...)
	if err != nil {
		return nil, err
	}
	if input {
		r.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrNotOutput)
	}
	o := &OutputReader{r: r}
	if err := o.checkSchema(); err != nil {
		r.Close()
		return nil, err
	}
	return o, nil
}

// checkSchema finds the output's columns: token_id and the nine computed columns are required,
// advantage, mask and step are read where present.
func (o *OutputReader) checkSchema() error {
	r, s := o.r, o.r.sch
	fail := func(col, format string, args ...any) error {
		e := fileError(r.name, nil, format, args...)
		e.Column = col
		return e
	}
	index := func(name string, required bool, types []arrow.Type) (int, error) {
		idx := s.FieldIndices(name)
		switch {
		case len(idx) > 1:
			return -1, fail(name, "column %s appears %d times; want it once", name, len(idx))
		case len(idx) == 0 && required:
			return -1, fail(name, "missing column %s: want papo's per-token output (docs/SCHEMA.md), or an input with logits or row statistics", name)
		case len(idx) == 0:
			return -1, nil
		}
		id := s.Field(idx[0]).Type.ID()
		for _, t := range types {
			if id == t {
				return idx[0], nil
			}
		}
		return -1, fail(name, "column %s has type %s; want %s", name, s.Field(idx[0]).Type, typeNames(types))
	}
	lay := &layout{logits: -1, oldLogprob: -1}
	var err error
	if lay.tokenID, err = index(ColTokenID, true, columnTypes[ColTokenID]); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		at   *int
	}{{ColAdvantage, &lay.advantage}, {ColMask, &lay.mask}, {ColStep, &lay.step}} {
		if *c.at, err = index(c.name, false, columnTypes[c.name]); err != nil {
			return err
		}
	}
	// CSV carries no types: the computed columns arrive as text there.
	numbers := []arrow.Type{arrow.FLOAT32, arrow.FLOAT64, arrow.STRING}
	for k, name := range outputColumns {
		if o.computed[k], err = index(name, true, numbers); err != nil {
			return err
		}
	}
	params, perr := ParamsFromMetadata(s.Metadata())
	if perr != nil {
		return fileError(r.name, nil, "schema metadata %s", perr)
	}
	runID, _ := s.Metadata().GetValue(MetaRunID)
	for i := range s.NumFields() {
		lay.passIdx = append(lay.passIdx, i)
	}
	lay.passSchema = s
	r.lay = lay
	r.meta = Meta{Params: params, RunID: runID, HasAdvantage: lay.advantage >= 0, HasMask: lay.mask >= 0, HasStep: lay.step >= 0}
	return nil
}

// Schema is the output's schema.
func (o *OutputReader) Schema() *arrow.Schema { return o.r.sch }

// Meta has the parameters of the output's schema metadata (τ, η, the clip range) and which
// optional columns are present; V and Dtype are 0.
func (o *OutputReader) Meta() Meta { return o.r.meta }

// Batch is the current batch, valid until the next call to Next.
func (o *OutputReader) Batch() *OutputBatch { return o.batch }

// Err is the error that ended the iteration, nil at a clean end.
func (o *OutputReader) Err() error { return o.r.err }

// Close releases the current batch and the file.
func (o *OutputReader) Close() error {
	o.batch = nil
	return o.r.Close()
}

// Next advances to the next non-empty batch; false at the end or on an error (see Err), as
// Reader.Next: an IPC file cut short is an error, not a shorter output.
func (o *OutputReader) Next() bool {
	r := o.r
	if o.batch != nil {
		o.batch.Record.Release()
		o.batch = nil
	}
	rec, idx, ok := r.advance()
	if !ok {
		return false
	}
	b, err := o.makeBatch(rec, idx)
	if err != nil {
		rec.Release()
		r.err = err
		return false
	}
	r.rows += rec.NumRows()
	o.batch = b
	return true
}

func (o *OutputReader) makeBatch(rec arrow.Record, idx int) (*OutputBatch, error) {
	r := o.r
	n := int(rec.NumRows())
	b := &OutputBatch{Batch: Batch{Index: idx, FirstRow: r.rows, Record: rec, file: r.name, lay: r.lay}}
	if err := r.checkColumns(rec, idx); err != nil {
		return nil, err
	}
	rowErr := r.rowErrors(idx, b.FirstRow)
	if _, err := r.scalarColumns(rec, &b.Batch, 0, rowErr); err != nil {
		return nil, err
	}
	var cols [9][]float64
	var valid [9][]bool
	for k, name := range outputColumns {
		var err error
		if cols[k], valid[k], err = numbers(rec.Column(o.computed[k]), name, rowErr); err != nil {
			return nil, err
		}
		nullable := name == ColPolarity || name == ColReweightedAdvantage
		if valid[k] != nil && !nullable {
			for i, ok := range valid[k] {
				if !ok {
					return nil, rowErr(name, i, "%s is null; papo writes a number in every row", name)
				}
			}
		}
	}
	f32 := func(k int) []float32 {
		out := make([]float32, n)
		for i, x := range cols[k] {
			out[i] = float32(x)
		}
		return out
	}
	b.Result = polarity.Result{Entropy: f32(0), Logprob: f32(1), SampledTerm: f32(2), Correction: f32(3),
		PolarityFactor: f32(4), Polarity: f32(5), PredictedDeltaH: f32(6)}
	b.Result.PolarityValid = valid[5]
	if b.Result.PolarityValid == nil {
		b.Result.PolarityValid = make([]bool, n)
		for i := range b.Result.PolarityValid {
			b.Result.PolarityValid[i] = true
		}
	}
	b.Weight, b.Reweighted = f32(7), cols[8]
	for i, ok := range valid[8] {
		if !ok {
			b.Reweighted[i] = math.NaN()
		}
	}
	return b, nil
}

// numbers is a computed column as float64 with its validity (nil: no nulls); text columns
// (CSV) are parsed, an empty field being null.
func numbers(col arrow.Array, name string, rowErr func(string, int, string, ...any) error) ([]float64, []bool, error) {
	n := col.Len()
	out := make([]float64, n)
	valid := validity(col)
	switch a := col.(type) {
	case *array.Float32:
		for i, x := range a.Float32Values() {
			out[i] = float64(x)
		}
	case *array.Float64:
		copy(out, a.Float64Values())
	case *array.String:
		for i := range n {
			text := strings.TrimSpace(a.Value(i))
			if a.IsNull(i) || text == "" {
				if valid == nil {
					valid = make([]bool, n)
					for j := range valid {
						valid[j] = true
					}
				}
				valid[i] = false
				continue
			}
			x, err := strconv.ParseFloat(text, 64)
			if err != nil {
				return nil, nil, rowErr(name, i, "%s is %q; want a number", name, text)
			}
			out[i] = x
		}
	}
	return out, valid, nil
}
