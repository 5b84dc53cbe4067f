package papoio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/atomicfile"
)

// StepPartials is one row of `papo stats`: one rank's additive share of a step (papo.StepPartials
// with its step). Summing the ranks' tables column by column, except step, gives the global
// table that `papo reweight --global-stats` takes.
type StepPartials struct {
	Step             int64   `json:"step"`
	EntropyTokens    int64   `json:"entropy_tokens"`
	EntropySum       float64 `json:"entropy_sum"`
	WeightedTokens   int64   `json:"weighted_tokens"`
	PolaritySum      float64 `json:"polarity_sum"`
	PolaritySum2     float64 `json:"polarity_sum2"`
	AbsAdvantage     float64 `json:"abs_advantage_sum"`
	AbsAdvantageSign float64 `json:"abs_advantage_sign_sum"`
}

// The partials table's columns.
const (
	ColEntropyTokens    = "entropy_tokens"
	ColEntropySum       = "entropy_sum"
	ColWeightedTokens   = "weighted_tokens"
	ColPolaritySum      = "polarity_sum"
	ColPolaritySum2     = "polarity_sum2"
	ColAbsAdvantage     = "abs_advantage_sum"
	ColAbsAdvantageSign = "abs_advantage_sign_sum"
)

var partialsSchema = arrow.NewSchema([]arrow.Field{
	{Name: ColStep, Type: arrow.PrimitiveTypes.Int64},
	{Name: ColEntropyTokens, Type: arrow.PrimitiveTypes.Int64},
	{Name: ColEntropySum, Type: arrow.PrimitiveTypes.Float64},
	{Name: ColWeightedTokens, Type: arrow.PrimitiveTypes.Int64},
	{Name: ColPolaritySum, Type: arrow.PrimitiveTypes.Float64},
	{Name: ColPolaritySum2, Type: arrow.PrimitiveTypes.Float64},
	{Name: ColAbsAdvantage, Type: arrow.PrimitiveTypes.Float64},
	{Name: ColAbsAdvantageSign, Type: arrow.PrimitiveTypes.Float64},
}, nil)

// PartialsSchema is the schema of the partials table.
func PartialsSchema() *arrow.Schema { return partialsSchema }

// PartialsRecord builds the partials table; the caller releases it.
func PartialsRecord(mem memory.Allocator, rows []StepPartials) arrow.Record {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	i64 := func(get func(*StepPartials) int64) arrow.Array {
		return tableColumn(mem, arrow.PrimitiveTypes.Int64, rows, get)
	}
	f64 := func(get func(*StepPartials) float64) arrow.Array {
		return tableColumn(mem, arrow.PrimitiveTypes.Float64, rows, get)
	}
	cols := []arrow.Array{
		i64(func(s *StepPartials) int64 { return s.Step }),
		i64(func(s *StepPartials) int64 { return s.EntropyTokens }),
		f64(func(s *StepPartials) float64 { return s.EntropySum }),
		i64(func(s *StepPartials) int64 { return s.WeightedTokens }),
		f64(func(s *StepPartials) float64 { return s.PolaritySum }),
		f64(func(s *StepPartials) float64 { return s.PolaritySum2 }),
		f64(func(s *StepPartials) float64 { return s.AbsAdvantage }),
		f64(func(s *StepPartials) float64 { return s.AbsAdvantageSign }),
	}
	defer releaseAll(cols)
	return array.NewRecord(partialsSchema, cols, int64(len(rows)))
}

// FinishPartials writes the partials table to path (any output format; Parquet with WithTables),
// uncommitted like FinishSummary.
func FinishPartials(path string, rows []StepPartials, mem memory.Allocator, opts ...Option) (*atomicfile.File, error) {
	return finishTable(path, PartialsRecord(mem, rows), mem, opts)
}

// ReadPartials reads a partials table (Arrow IPC file or stream, CSV or JSONL, or Parquet with
// WithTables, as written by `papo stats` or summed by a trainer), steps increasing. Of the
// options it uses WithTables.
func ReadPartials(path string, opts ...Option) ([]StepPartials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fileError(path, err, "cannot open")
	}
	defer f.Close()
	r := &Reader{name: path, mem: newLimitAllocator(memory.DefaultAllocator, 1<<30, nil), limit: 1 << 30}
	defer r.Close()
	if format := tableFormat(path); format != "" {
		opt := newOptions(opts)
		if err := guard(func() error { return r.openTable(f, format, &opt) }); err != nil {
			return nil, fileError(path, err, "reading the %s table", format)
		}
	} else {
		head := make([]byte, 6)
		n, _ := io.ReadFull(f, head)
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fileError(path, err, "read")
		}
		err := guard(func() error {
			if n == 6 && bytes.Equal(head, ipc.Magic[:6]) {
				fr, err := ipc.NewFileReader(f)
				if err != nil {
					return err
				}
				r.closers = append(r.closers, fr.Close)
				r.records, r.sch = &fileRecords{fr: fr}, fr.Schema()
				return nil
			}
			sr, err := ipc.NewReader(f)
			if err != nil {
				return err
			}
			r.closers = append(r.closers, func() error { sr.Release(); return nil })
			r.records, r.sch = sr, sr.Schema()
			return nil
		})
		if err != nil {
			return nil, fileError(path, err, "not an Arrow IPC file or stream")
		}
	}
	idx := map[string]int{}
	for _, f := range partialsSchema.Fields() {
		is := r.sch.FieldIndices(f.Name)
		if len(is) != 1 {
			return nil, fileError(path, nil, "the partials table needs one column %s (papo stats writes it)", f.Name)
		}
		idx[f.Name] = is[0]
	}
	var rows []StepPartials
	for r.records.Next() {
		rec := r.records.Record()
		get := func(name string, i int) (float64, error) {
			col := rec.Column(idx[name])
			if col.IsNull(i) {
				return 0, fmt.Errorf("row %d: %s is null", len(rows), name)
			}
			switch a := col.(type) {
			case *array.Int64:
				return float64(a.Value(i)), nil
			case *array.Int32:
				return float64(a.Value(i)), nil
			case *array.Float64:
				return a.Value(i), nil
			case *array.Float32:
				return float64(a.Value(i)), nil
			}
			return 0, fmt.Errorf("column %s has type %s; want numbers", name, col.DataType())
		}
		for i := 0; i < int(rec.NumRows()); i++ {
			var v [8]float64
			for k, f := range partialsSchema.Fields() {
				x, err := get(f.Name, i)
				if err != nil {
					return nil, fileError(path, err, "partials")
				}
				v[k] = x
			}
			p, err := partialsFromValues(v)
			if err != nil {
				return nil, fileError(path, err, "partials row %d", len(rows))
			}
			if len(rows) > 0 && p.Step <= rows[len(rows)-1].Step {
				prev := rows[len(rows)-1].Step
				if p.Step == prev {
					return nil, fileError(path, nil, "partials row %d: step %d is listed twice: want one row per step", len(rows), p.Step)
				}
				return nil, fileError(path, nil, "partials row %d: step %d after step %d: want increasing steps", len(rows), p.Step, prev)
			}
			rows = append(rows, p)
		}
	}
	if err := r.records.Err(); err != nil && !errors.Is(err, io.EOF) {
		return nil, fileError(path, err, "reading the partials")
	}
	return rows, nil
}

// fileRecords iterates an IPC file's records.
type fileRecords struct {
	fr  *ipc.FileReader
	i   int
	rec arrow.Record
	err error
}

func (f *fileRecords) Next() bool {
	if f.rec != nil {
		f.rec.Release()
		f.rec = nil
	}
	if f.i >= f.fr.NumRecords() {
		return false
	}
	f.rec, f.err = f.fr.RecordAt(f.i)
	f.i++
	return f.err == nil
}
func (f *fileRecords) Record() arrow.Record { return f.rec }
func (f *fileRecords) Err() error           { return f.err }

// maxExactCount is the largest count that float64 (JSON numbers, a pandas column) holds exactly.
const maxExactCount = 1 << 53

// partialsFromValues is a partials row from its eight values in the table's column order. The
// step and the two counts must be whole numbers (an integral float, 59.0 or 1.25e2, as an
// all-reduce or pandas writes them, is read as that integer), the counts ≥ 0, the sums finite,
// abs_advantage_sum ≥ 0: anything else is refused with the step, the column and the value.
func partialsFromValues(v [8]float64) (StepPartials, error) {
	names := partialsSchema.Fields()
	step := v[0]
	if !(math.Abs(step) <= maxExactCount) || step != math.Trunc(step) {
		return StepPartials{}, fmt.Errorf("%s %v: want a whole number", ColStep, step)
	}
	for k := 1; k < len(v); k++ {
		x := v[k]
		var bad string
		switch {
		case names[k].Type.ID() == arrow.INT64 && !(x >= 0 && x <= maxExactCount && x == math.Trunc(x)):
			bad = "want a whole number ≥ 0 (a count)"
		case math.IsNaN(x) || math.IsInf(x, 0):
			bad = "want a finite sum"
		case names[k].Name == ColAbsAdvantage && x < 0:
			bad = "want a sum ≥ 0"
		}
		if bad != "" {
			return StepPartials{}, fmt.Errorf("step %d: %s %v: %s", int64(step), names[k].Name, x, bad)
		}
	}
	return StepPartials{Step: int64(v[0]), EntropyTokens: int64(v[1]), EntropySum: v[2], WeightedTokens: int64(v[3]),
		PolaritySum: v[4], PolaritySum2: v[5], AbsAdvantage: v[6], AbsAdvantageSign: v[7]}, nil
}

// DecodePartialsJSON reads a partials table as a JSON array of objects with the table's
// columns as keys (papo serve's papo.global_stats). Numbers follow partialsFromValues; a
// missing or unknown key and a step listed twice are refused, naming the row and the key.
func DecodePartialsJSON(data []byte) ([]StepPartials, error) {
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(data, &objs); err != nil {
		return nil, fmt.Errorf("want a JSON array of partials objects: %v", err)
	}
	fields := partialsSchema.Fields()
	rows := make([]StepPartials, 0, len(objs))
	seen := make(map[int64]int, len(objs))
	for i, o := range objs {
		for k := range o {
			if partialsSchema.FieldIndices(k) == nil {
				return nil, fmt.Errorf("row %d: unknown key %q (want %s)", i, k, partialsColumns())
			}
		}
		var v [8]float64
		for k, f := range fields {
			raw, ok := o[f.Name]
			if !ok {
				return nil, fmt.Errorf("row %d: no key %q (want %s)", i, f.Name, partialsColumns())
			}
			if err := json.Unmarshal(raw, &v[k]); err != nil {
				return nil, fmt.Errorf("row %d: %s %s: want a number", i, f.Name, raw)
			}
		}
		p, err := partialsFromValues(v)
		if err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		if j, dup := seen[p.Step]; dup {
			return nil, fmt.Errorf("row %d: step %d is listed twice (rows %d and %d): want one row per step", i, p.Step, j, i)
		}
		seen[p.Step] = i
		rows = append(rows, p)
	}
	return rows, nil
}

func partialsColumns() string {
	var names []string
	for _, f := range partialsSchema.Fields() {
		names = append(names, f.Name)
	}
	return strings.Join(names, ", ")
}
