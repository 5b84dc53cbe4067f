package papoio

// Checking a record batch's columns and viewing them as a polarity.Batch: the logits, the row
// statistics, token ids, advantages, old log-probabilities, the mask and the step.

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/entropy-polarity/papo/polarity"
)

// checkColumns checks that every column of record batch idx has the batch's rows and sound
// buffers (offsets, lengths, bitmaps), before any of its values is read.
func (r *Reader) checkColumns(rec arrow.Record, idx int) error {
	n, sch := rec.NumRows(), rec.Schema()
	for i, col := range rec.Columns() {
		name := sch.Field(i).Name
		msg := ""
		if int64(col.Len()) != n {
			msg = fmt.Sprintf("column %s has %d rows; the batch has %d", name, col.Len(), n)
		} else if err := validateData(col.Data(), 0); err != nil {
			msg = fmt.Sprintf("column %s is corrupt: %v", name, err)
		}
		if msg != "" {
			return &InputError{File: r.name, Batch: idx, Row: -1, Column: name, Msg: msg}
		}
	}
	return nil
}

// rowErrors makes the errors of rows of record batch idx, whose first row is row first of the
// input.
func (r *Reader) rowErrors(idx int, first int64) func(col string, row int, format string, args ...any) error {
	return func(col string, row int, format string, args ...any) error {
		return &InputError{File: r.name, Batch: idx, Row: row, Global: first + int64(row), Column: col,
			Msg: fmt.Sprintf(format, args...)}
	}
}

// makeBatch checks rec against the schema rules and builds the polarity.Batch views.
func (r *Reader) makeBatch(rec arrow.Record, idx int) (*Batch, error) {
	lay := r.lay
	n := int(rec.NumRows())
	b := &Batch{Index: idx, FirstRow: r.rows, Record: rec, file: r.name, lay: lay, mapped: r.mapped}
	if err := r.checkColumns(rec, idx); err != nil {
		return nil, err
	}
	rowErr := r.rowErrors(idx, b.FirstRow)
	batchErr := func(col string, format string, args ...any) error {
		return &InputError{File: r.name, Batch: idx, Row: -1, Column: col, Msg: fmt.Sprintf(format, args...)}
	}

	if lay.stats != nil {
		if err := r.statsColumns(rec, b, rowErr); err != nil {
			return nil, err
		}
		return r.scalarColumns(rec, b, 0, rowErr)
	}

	// Logits. Their values are not checked for NaN or +Inf here: the engine finds those in its
	// single pass over each row, and a scan here would double the memory traffic of the whole
	// program.
	logits := rec.Column(lay.logits)
	if ext, ok := logits.(array.ExtensionArray); ok {
		logits = ext.Storage()
	}
	if logits.NullN() != 0 {
		for i := 0; i < n; i++ {
			if logits.IsNull(i) {
				return nil, rowErr(ColLogits, i, "logits is null; want a row of %s values", r.vText())
			}
		}
	}
	var values arrow.Array
	var start, v int64
	switch a := logits.(type) {
	case *array.FixedSizeList:
		v = int64(lay.v)
		start = int64(a.Offset()) * v
		values = a.ListValues()
	case *array.List:
		offs := a.Offsets()[a.Offset() : a.Offset()+n+1]
		var err error
		if v, err = r.rowLengths(n, func(i int) int64 { return int64(offs[i]) }, rowErr); err != nil {
			return nil, err
		}
		start, values = int64(offs[0]), a.ListValues()
	case *array.LargeList:
		offs := a.Offsets()[a.Offset() : a.Offset()+n+1]
		var err error
		if v, err = r.rowLengths(n, func(i int) int64 { return offs[i] }, rowErr); err != nil {
			return nil, err
		}
		start, values = offs[0], a.ListValues()
	default:
		return nil, batchErr(ColLogits, "logits column is %T; want a list array", logits)
	}
	count := int64(n) * v
	if start+count > int64(values.Len()) {
		return nil, batchErr(ColLogits, "logits has %d values; %d rows of %d need %d from element %d",
			values.Len(), n, v, count, start)
	}
	if values.NullN() != 0 {
		for k := start; k < start+count; k++ {
			if values.IsNull(int(k)) {
				row := int((k - start) / v)
				return nil, rowErr(ColLogits, row, "logits value %d of the row is null; want %s numbers", (k-start)%v, r.vText())
			}
		}
	}
	in := &b.Input
	in.Logits = polarity.Logits{Dtype: lay.dtype, V: int(v)}
	switch vals := values.(type) {
	case *array.Float32:
		in.Logits.F32 = vals.Float32Values()[start : start+count]
	case *array.Float16:
		f16 := vals.Values()
		bits := unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(f16))), len(f16))
		in.Logits.Bits = bits[start : start+count]
	case *array.Uint16:
		in.Logits.Bits = vals.Uint16Values()[start : start+count]
	default:
		return nil, batchErr(ColLogits, "logits elements are %s; want float32, float16 or uint16", values.DataType())
	}

	return r.scalarColumns(rec, b, int(v), rowErr)
}

// statsColumns views (float64) or converts (float32) the row-statistics columns; a null is an
// error naming the row. Their values are checked by polarity.ComputeStats.
func (r *Reader) statsColumns(rec arrow.Record, b *Batch, rowErr func(string, int, string, ...any) error) error {
	n := int(rec.NumRows())
	var cols [6][]float64
	for k, idx := range r.lay.stats {
		col, name := rec.Column(idx), StatsColumnNames[k]
		if col.NullN() != 0 {
			for i := 0; i < n; i++ {
				if col.IsNull(i) {
					return rowErr(name, i, "%s is null; want the row statistic (docs/SCHEMA.md)", name)
				}
			}
		}
		switch a := col.(type) {
		case *array.Float64:
			cols[k] = a.Float64Values()
		case *array.Float32:
			cols[k] = make([]float64, n)
			for i, x := range a.Float32Values() {
				cols[k][i] = float64(x)
			}
		}
	}
	b.Input.Stats = polarity.NewStatsColumns(cols)
	return nil
}

// scalarColumns reads token ids (checked against v; v = 0: only ≥ 0), advantages, old
// log-probabilities, the mask and the step.
func (r *Reader) scalarColumns(rec arrow.Record, b *Batch, v int, rowErr func(string, int, string, ...any) error) (*Batch, error) {
	lay, in, n := r.lay, &b.Input, int(rec.NumRows())
	if err := r.tokenIDs(rec.Column(lay.tokenID), v, in, rowErr); err != nil {
		return nil, err
	}
	if lay.advantage >= 0 {
		if err := advantages(rec.Column(lay.advantage), in, rowErr); err != nil {
			return nil, err
		}
	}
	if lay.oldLogprob >= 0 {
		if err := oldLogprobs(rec.Column(lay.oldLogprob), in, rowErr); err != nil {
			return nil, err
		}
	}
	if lay.mask >= 0 {
		m := rec.Column(lay.mask).(*array.Boolean)
		in.Mask = make([]bool, n)
		if n > 0 {
			unpackBits(in.Mask, m.Data().Buffers()[1].Bytes(), m.Data().Offset())
		}
		if m.NullN() != 0 {
			// A null mask counts as trained: a trainer that leaves it out means "no mask".
			for i := range in.Mask {
				in.Mask[i] = in.Mask[i] || m.IsNull(i)
			}
		}
	}
	if lay.step >= 0 {
		col := rec.Column(lay.step)
		if col.NullN() != 0 {
			for i := 0; i < n; i++ {
				if col.IsNull(i) {
					return nil, rowErr(ColStep, i, "step is null; want the training step")
				}
			}
		}
		switch a := col.(type) {
		case *array.Int64:
			b.Step = a.Int64Values()
		case *array.Int32:
			b.Step = make([]int64, n)
			for i, s := range a.Int32Values() {
				b.Step[i] = int64(s)
			}
		}
	}
	return b, nil
}

func (r *Reader) vText() string {
	if r.meta.V > 0 {
		return fmt.Sprintf("V=%d", r.meta.V)
	}
	return "V"
}

// rowLengths checks that every row of a list<...> logits column has the input's V values (set by
// its first row) and returns V. Equal lengths make the rows contiguous in the values array.
func (r *Reader) rowLengths(n int, off func(int) int64, rowErr func(string, int, string, ...any) error) (int64, error) {
	v := int64(r.meta.V)
	for i := 0; i < n; i++ {
		l := off(i+1) - off(i)
		if v == 0 {
			if l <= 0 || l > math.MaxInt32 {
				return 0, rowErr(ColLogits, i, "the first logits row has %d values; want V in [1, %d]", l, math.MaxInt32)
			}
			v = l
			r.meta.V, r.lay.v = int(l), int(l)
			continue
		}
		if l != v {
			return 0, rowErr(ColLogits, i, "logits row has %d values; want V=%d (the length of the input's first row)", l, v)
		}
	}
	return v, nil
}

func (r *Reader) tokenIDs(col arrow.Array, v int, in *polarity.Batch, rowErr func(string, int, string, ...any) error) error {
	n := col.Len()
	want := fmt.Sprintf("[0, %d)", v)
	if v == 0 { // row statistics: V is not known
		want = "[0, 2^31)"
	}
	if col.NullN() != 0 {
		for i := 0; i < n; i++ {
			if col.IsNull(i) {
				return rowErr(ColTokenID, i, "token_id is null; want the sampled token in %s", want)
			}
		}
	}
	switch a := col.(type) {
	case *array.Int32:
		ids := a.Int32Values()
		for i, id := range ids {
			if id < 0 || (v > 0 && int(id) >= v) {
				return rowErr(ColTokenID, i, "token_id %d is outside %s", id, want)
			}
		}
		in.TokenID = ids
	case *array.Int64:
		ids := make([]int32, n)
		for i, id := range a.Int64Values() {
			if id < 0 || id > math.MaxInt32 || (v > 0 && id >= int64(v)) {
				return rowErr(ColTokenID, i, "token_id %d is outside %s", id, want)
			}
			ids[i] = int32(id)
		}
		in.TokenID = ids
	}
	return nil
}

// validity is the per-row presence of col, nil when no value is null.
func validity(col arrow.Array) []bool {
	if col.NullN() == 0 {
		return nil
	}
	valid := make([]bool, col.Len())
	if bm := col.NullBitmapBytes(); len(bm) != 0 {
		unpackBits(valid, bm, col.Data().Offset())
	} else {
		for i := range valid {
			valid[i] = true
		}
	}
	return valid
}

func advantages(col arrow.Array, in *polarity.Batch, rowErr func(string, int, string, ...any) error) error {
	valid := validity(col)
	switch a := col.(type) {
	case *array.Float64:
		in.Advantage = a.Float64Values()
	case *array.Float32:
		in.Advantage = make([]float64, a.Len())
		for i, x := range a.Float32Values() {
			in.Advantage[i] = float64(x)
		}
	}
	// One subtraction and compare a row finds NaN and ±Inf (x − x is NaN for them, 0 for any
	// finite x); only then are the validities looked at, for the first such value present.
	for i, x := range in.Advantage {
		if x-x != 0 && (valid == nil || valid[i]) {
			return rowErr(ColAdvantage, i, "advantage is %v; want a finite number (null means no advantage)", x)
		}
	}
	in.AdvantageValid = valid
	return nil
}

func oldLogprobs(col arrow.Array, in *polarity.Batch, rowErr func(string, int, string, ...any) error) error {
	valid := validity(col)
	// NaN and +Inf are refused (−Inf is a probability of 0): both fail x < +Inf, one compare a
	// row; the validities are looked at only for such a value.
	bad := func(i int, x float64) error {
		return rowErr(ColOldLogprob, i, "old_logprob is %v; want log π_old(a) ≤ 0 (null means absent)", x)
	}
	switch a := col.(type) {
	case *array.Float32:
		in.OldLogprob = a.Float32Values()
		inf := float32(math.Inf(1))
		for i, x := range in.OldLogprob {
			if !(x < inf) && (valid == nil || valid[i]) {
				return bad(i, float64(x))
			}
		}
	case *array.Float64:
		in.OldLogprob = make([]float32, a.Len())
		for i, x := range a.Float64Values() {
			if !(x < math.Inf(1)) && (valid == nil || valid[i]) {
				return bad(i, x)
			}
			in.OldLogprob[i] = float32(x)
		}
	}
	in.OldLogprobValid = valid
	return nil
}
