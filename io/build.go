package papoio

import (
	"fmt"
	"math"
	"strconv"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// fixedWidth are the Go types that back Arrow fixed-width columns here.
type fixedWidth interface {
	~int32 | ~int64 | ~uint16 | ~float32 | ~float64
}

// viewPrimitive is an array of type dt over vals' memory, not copied (the validity, nil for
// none, is packed into a bitmap): it is valid while vals is unchanged. dt's width must be T's.
func viewPrimitive[T fixedWidth](mem memory.Allocator, dt arrow.DataType, vals []T, valid []bool) arrow.Array {
	var zero T
	bytes := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(vals))), len(vals)*int(unsafe.Sizeof(zero)))
	return primitiveArray(mem, dt, len(vals), memory.NewBufferBytes(bytes), valid)
}

// newPrimitive copies vals (and the validity, nil for none) into an array of type dt, whose
// width must be that of T.
func newPrimitive[T fixedWidth](mem memory.Allocator, dt arrow.DataType, vals []T, valid []bool) arrow.Array {
	n := len(vals)
	var zero T
	values := newBuffer(mem, n*int(unsafe.Sizeof(zero)))
	if n > 0 {
		copy(unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(values.Bytes()))), n), vals)
	}
	return primitiveArray(mem, dt, n, values, valid)
}

// primitiveArray is the array of type dt of n values in the buffer values (released here: the
// array holds its own reference) with the validity valid (nil: none).
func primitiveArray(mem memory.Allocator, dt arrow.DataType, n int, values *memory.Buffer, valid []bool) arrow.Array {
	defer values.Release()
	bitmap, nulls := newBitmap(mem, valid)
	if bitmap != nil {
		defer bitmap.Release()
	}
	data := array.NewData(dt, n, []*memory.Buffer{bitmap, values}, nil, nulls, 0)
	defer data.Release()
	return array.MakeFromData(data)
}

// newBitmap packs valid into a validity bitmap; nil when every value is valid.
func newBitmap(mem memory.Allocator, valid []bool) (*memory.Buffer, int) {
	nulls := 0
	for _, ok := range valid {
		if !ok {
			nulls++
		}
	}
	if nulls == 0 {
		return nil, 0
	}
	bm := newBuffer(mem, int(bitutil.BytesForBits(int64(len(valid)))))
	bytes := bm.Bytes()
	clear(bytes)
	for i, ok := range valid {
		if ok {
			bitutil.SetBit(bytes, i)
		}
	}
	return bm, nulls
}

func newBool(mem memory.Allocator, vals []bool) arrow.Array {
	n := len(vals)
	values := newBuffer(mem, int(bitutil.BytesForBits(int64(n))))
	defer values.Release()
	bytes := values.Bytes()
	clear(bytes)
	for i, v := range vals {
		if v {
			bitutil.SetBit(bytes, i)
		}
	}
	data := array.NewData(arrow.FixedWidthTypes.Boolean, n, []*memory.Buffer{nil, values}, nil, 0, 0)
	defer data.Release()
	return array.MakeFromData(data)
}

func widen32(vals []int32) []int64 {
	out := make([]int64, len(vals))
	for i, v := range vals {
		out[i] = int64(v)
	}
	return out
}

func narrow64(vals []int64) ([]int32, error) {
	out := make([]int32, len(vals))
	for i, v := range vals {
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil, fmt.Errorf("value %d at row %d does not fit int32", v, i)
		}
		out[i] = int32(v)
	}
	return out, nil
}

// intColumn builds an int32 or int64 column from either width.
func intColumn(mem memory.Allocator, dt arrow.DataType, v64 []int64, v32 []int32) (arrow.Array, error) {
	switch dt.ID() {
	case arrow.INT64:
		if v64 == nil {
			v64 = widen32(v32)
		}
		return newPrimitive(mem, dt, v64, nil), nil
	case arrow.INT32:
		if v32 == nil {
			var err error
			if v32, err = narrow64(v64); err != nil {
				return nil, err
			}
		}
		return newPrimitive(mem, dt, v32, nil), nil
	}
	return nil, fmt.Errorf("type %s; want int32 or int64", dt)
}

func floatColumn(mem memory.Allocator, dt arrow.DataType, v64 []float64, v32 []float32, valid []bool) (arrow.Array, error) {
	switch dt.ID() {
	case arrow.FLOAT64:
		if v64 == nil {
			v64 = make([]float64, len(v32))
			for i, x := range v32 {
				v64[i] = float64(x)
			}
		}
		return newPrimitive(mem, dt, v64, valid), nil
	case arrow.FLOAT32:
		if v32 == nil {
			v32 = make([]float32, len(v64))
			for i, x := range v64 {
				v32[i] = float32(x)
			}
		}
		return newPrimitive(mem, dt, v32, valid), nil
	}
	return nil, fmt.Errorf("type %s; want float32 or float64", dt)
}

// BuildInput builds an input record for schema (from InputSchema, or any schema whose columns
// docs/SCHEMA.md names, with fixed_size_list, list or large_list logits) from cols. It serves
// generators and tests; the caller releases the record.
func BuildInput(mem memory.Allocator, schema *arrow.Schema, cols *InputColumns) (arrow.Record, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	b := &cols.Batch
	n := len(b.TokenID)
	if b.Logits.V <= 0 {
		return nil, fmt.Errorf("build input: logits V=%d; want V > 0", b.Logits.V)
	}
	if b.Logits.Rows() != n {
		return nil, fmt.Errorf("build input: %d logits rows of V=%d and %d token ids; want as many of each",
			b.Logits.Rows(), b.Logits.V, n)
	}
	lengths := map[string]int{
		ColAdvantage: len(b.Advantage), ColOldLogprob: len(b.OldLogprob), ColMask: len(b.Mask),
		ColStep: len(cols.Step), ColSequenceID: len(cols.SequenceID), ColGroupID: len(cols.GroupID),
		ColPosition: len(cols.Position),
	}
	arrs := make([]arrow.Array, 0, schema.NumFields())
	defer func() { releaseAll(arrs) }()
	for _, f := range schema.Fields() {
		var arr arrow.Array
		var err error
		if l, known := lengths[f.Name]; known && l != n {
			return nil, fmt.Errorf("build input: column %s has %d values; want %d (one per token id)", f.Name, l, n)
		}
		switch f.Name {
		case ColLogits:
			arr, err = buildLogits(mem, f.Type, &b.Logits)
		case ColTokenID:
			arr, err = intColumn(mem, f.Type, nil, b.TokenID)
		case ColAdvantage:
			if b.Advantage == nil && n > 0 {
				err = fmt.Errorf("no advantages given")
				break
			}
			if b.AdvantageValid != nil && len(b.AdvantageValid) != n {
				err = fmt.Errorf("%d validity flags for %d rows", len(b.AdvantageValid), n)
				break
			}
			arr, err = floatColumn(mem, f.Type, b.Advantage, nil, b.AdvantageValid)
		case ColOldLogprob:
			if b.OldLogprob == nil && n > 0 {
				err = fmt.Errorf("no old log-probabilities given")
				break
			}
			if b.OldLogprobValid != nil && len(b.OldLogprobValid) != n {
				err = fmt.Errorf("%d validity flags for %d rows", len(b.OldLogprobValid), n)
				break
			}
			arr, err = floatColumn(mem, f.Type, nil, b.OldLogprob, b.OldLogprobValid)
		case ColMask:
			if (b.Mask == nil && n > 0) || f.Type.ID() != arrow.BOOL {
				err = fmt.Errorf("want a mask and type bool")
				break
			}
			arr = newBool(mem, b.Mask)
		case ColStep, ColSequenceID, ColGroupID, ColPosition:
			v64 := map[string][]int64{ColStep: cols.Step, ColSequenceID: cols.SequenceID, ColGroupID: cols.GroupID}[f.Name]
			if n > 0 && ((f.Name == ColPosition && cols.Position == nil) || (f.Name != ColPosition && v64 == nil)) {
				err = fmt.Errorf("no values given")
				break
			}
			var v32 []int32
			if f.Name == ColPosition {
				v32 = cols.Position
			}
			arr, err = intColumn(mem, f.Type, v64, v32)
		default:
			extra, ok := cols.Extra[f.Name]
			switch {
			case !ok:
				err = fmt.Errorf("no values given")
			case !arrow.TypeEqual(extra.DataType(), f.Type):
				err = fmt.Errorf("extra column has type %s; the schema says %s", extra.DataType(), f.Type)
			case extra.Len() != n:
				err = fmt.Errorf("extra column has %d values; want %d", extra.Len(), n)
			default:
				extra.Retain()
				arr = extra
			}
		}
		if err != nil {
			return nil, fmt.Errorf("build input: column %s: %w", f.Name, err)
		}
		arrs = append(arrs, arr)
	}
	return array.NewRecord(schema, arrs, int64(n)), nil
}

// buildLogits copies l into a fixed_size_list, list or large_list column of type dt.
func buildLogits(mem memory.Allocator, dt arrow.DataType, l *polarity.Logits) (arrow.Array, error) {
	var elem arrow.DataType
	switch t := dt.(type) {
	case *arrow.FixedSizeListType:
		if int(t.Len()) != l.V {
			return nil, fmt.Errorf("schema has V=%d; the logits have V=%d", t.Len(), l.V)
		}
		elem = t.Elem()
	case *arrow.ListType:
		elem = t.Elem()
	case *arrow.LargeListType:
		elem = t.Elem()
	default:
		return nil, fmt.Errorf("type %s; want fixed_size_list, list or large_list", dt)
	}
	var child arrow.Array
	switch {
	case l.Dtype == polarity.Float32 && elem.ID() == arrow.FLOAT32:
		child = newPrimitive(mem, elem, l.F32, nil)
	case l.Dtype == polarity.Float16 && (elem.ID() == arrow.FLOAT16 || elem.ID() == arrow.UINT16),
		l.Dtype == polarity.BFloat16 && elem.ID() == arrow.UINT16:
		child = newPrimitive(mem, elem, l.Bits, nil)
	default:
		return nil, fmt.Errorf("%s logits cannot be stored as %s elements", l.Dtype, elem)
	}
	defer child.Release()
	rows := l.Rows()
	var buffers []*memory.Buffer
	switch dt.(type) {
	case *arrow.FixedSizeListType:
		buffers = []*memory.Buffer{nil}
	case *arrow.ListType:
		if int64(rows)*int64(l.V) > math.MaxInt32 {
			return nil, fmt.Errorf("%d×%d values overflow list<...>'s int32 offsets; use large_list", rows, l.V)
		}
		offs := make([]int32, rows+1)
		for i := range offs {
			offs[i] = int32(i * l.V)
		}
		o := newPrimitive(mem, arrow.PrimitiveTypes.Int32, offs, nil)
		defer o.Release()
		buffers = []*memory.Buffer{nil, o.Data().Buffers()[1]}
	case *arrow.LargeListType:
		offs := make([]int64, rows+1)
		for i := range offs {
			offs[i] = int64(i) * int64(l.V)
		}
		o := newPrimitive(mem, arrow.PrimitiveTypes.Int64, offs, nil)
		defer o.Release()
		buffers = []*memory.Buffer{nil, o.Data().Buffers()[1]}
	}
	data := array.NewData(dt, rows, buffers, []arrow.ArrayData{child.Data()}, 0, 0)
	defer data.Release()
	return array.MakeFromData(data), nil
}

// BuildOutput builds an output record for schema: OutputSchema of the input's, or a selection
// of its columns (SelectColumns), each built from its source: a passthrough column
// (Batch.Passthrough, shared, not copied) or a computed column of r for batch b. Only the
// columns schema names are built. The computed columns view r's and weight's memory (not
// copied; reweighted_advantage is converted into new memory): the record is valid while they
// are unchanged, so a caller writes it before reusing them (as every papo Sink does). weight nil
// means every weight is 1; reweighted nil means w·A. polarity and reweighted_advantage are null
// for tokens without an advantage. The caller releases the record.
func BuildOutput(mem memory.Allocator, schema *arrow.Schema, passthrough arrow.Record, b *polarity.Batch,
	r *polarity.Result, weight []float32, reweighted []float64) (arrow.Record, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	src, err := outputSources(schema, passthrough)
	if err != nil {
		return nil, err
	}
	n := int(passthrough.NumRows())
	check := func(what string, l int) error {
		if l != n {
			return fmt.Errorf("build output: %s has %d rows; the passthrough record has %d", what, l, n)
		}
		return nil
	}
	for _, c := range []struct {
		what string
		l    int
	}{
		{"the batch", b.Rows()}, {"entropy", len(r.Entropy)}, {"logprob", len(r.Logprob)},
		{"sampled_term", len(r.SampledTerm)}, {"correction", len(r.Correction)},
		{"polarity_factor", len(r.PolarityFactor)}, {"polarity", len(r.Polarity)},
		{"polarity validity", len(r.PolarityValid)}, {"predicted_dH", len(r.PredictedDeltaH)},
	} {
		if err := check(c.what, c.l); err != nil {
			return nil, err
		}
	}
	if weight != nil {
		if err := check("weight", len(weight)); err != nil {
			return nil, err
		}
	}
	if reweighted != nil {
		if err := check("reweighted_advantage", len(reweighted)); err != nil {
			return nil, err
		}
	}
	f32 := arrow.PrimitiveTypes.Float32
	arrs := make([]arrow.Array, 0, schema.NumFields())
	defer func() { releaseAll(arrs) }()
	for _, k := range src {
		if k < 0 { // passthrough column -k-1
			c := passthrough.Column(-k - 1)
			c.Retain()
			arrs = append(arrs, c)
			continue
		}
		var a arrow.Array
		switch outputColumns[k] {
		case ColEntropy:
			a = viewPrimitive(mem, f32, r.Entropy, nil)
		case ColLogprob:
			a = viewPrimitive(mem, f32, r.Logprob, nil)
		case ColSampledTerm:
			a = viewPrimitive(mem, f32, r.SampledTerm, nil)
		case ColCorrection:
			a = viewPrimitive(mem, f32, r.Correction, nil)
		case ColPolarityFactor:
			a = viewPrimitive(mem, f32, r.PolarityFactor, nil)
		case ColPolarity:
			a = viewPrimitive(mem, f32, r.Polarity, r.PolarityValid)
		case ColPredictedDeltaH:
			a = viewPrimitive(mem, f32, r.PredictedDeltaH, nil)
		case ColWeight:
			a = weightColumn(mem, weight, n)
		case ColReweightedAdvantage:
			a = reweightedColumn(mem, b, weight, reweighted)
		}
		arrs = append(arrs, a)
	}
	return array.NewRecord(schema, arrs, int64(n)), nil
}

// outputSources maps each column of schema to its source: k ≥ 0 the computed column
// outputColumns[k], k < 0 the passthrough column -k-1 (by its name in the output, with
// CollisionPrefix where it collides with a computed column). An output schema whose first
// columns are the passthrough record's maps them by position.
func outputSources(schema *arrow.Schema, passthrough arrow.Record) ([]int, error) {
	computed := make(map[string]int, len(outputColumns))
	for k, name := range outputColumns {
		computed[name] = k
	}
	np := int(passthrough.NumCols())
	outName := func(j int) string {
		name := passthrough.ColumnName(j)
		if _, ok := computed[name]; ok {
			return CollisionPrefix + name
		}
		return name
	}
	byName := make(map[string]int, np)
	for j := np - 1; j >= 0; j-- { // the first of equal names wins
		byName[outName(j)] = j
	}
	src := make([]int, schema.NumFields())
	for i, f := range schema.Fields() {
		j, pass := byName[f.Name]
		if i < np && f.Name == outName(i) {
			j, pass = i, true
		}
		if pass {
			if got := passthrough.Column(j).DataType(); !arrow.TypeEqual(got, f.Type) {
				return nil, fmt.Errorf("build output: passthrough column %d (%s) is %s; the schema says %s",
					j, passthrough.ColumnName(j), got, f.Type)
			}
			src[i] = -j - 1
			continue
		}
		k, ok := computed[f.Name]
		if !ok {
			return nil, fmt.Errorf("build output: schema column %d (%s) is neither an input column nor one papo computes", i, f.Name)
		}
		if !arrow.TypeEqual(f.Type, arrow.PrimitiveTypes.Float32) {
			return nil, fmt.Errorf("build output: schema column %d (%s) is %s; want float", i, f.Name, f.Type)
		}
		src[i] = k
	}
	return src, nil
}

// weightColumn is the weight column: weight, or n ones for nil.
func weightColumn(mem memory.Allocator, weight []float32, n int) arrow.Array {
	if weight == nil {
		weight = make([]float32, n)
		for i := range weight {
			weight[i] = 1
		}
	}
	return viewPrimitive(mem, arrow.PrimitiveTypes.Float32, weight, nil)
}

// reweightedColumn is the reweighted_advantage column: reweighted (nil: w·A) as float32, null
// for tokens without an advantage.
func reweightedColumn(mem memory.Allocator, b *polarity.Batch, weight []float32, reweighted []float64) arrow.Array {
	n := b.Rows()
	values := newBuffer(mem, 4*n)
	rw := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(values.Bytes()))), n)
	var hasA []bool
	if b.Advantage == nil || b.AdvantageValid != nil {
		hasA = make([]bool, n)
	}
	// One plain conversion loop for the case given (the loop with its cases inside was ~11 ms
	// of a 4M-token serve request, after the step's last batch), then the tokens without an
	// advantage set to null, in a second pass only where there are any.
	switch {
	case b.Advantage == nil: // every token null: the nulls below
	case reweighted != nil:
		for i, r := range reweighted[:n] {
			rw[i] = float32(r)
		}
	case weight != nil:
		for i, w := range weight[:n] {
			rw[i] = float32(float64(w) * b.Advantage[i])
		}
	default:
		for i, a := range b.Advantage[:n] {
			rw[i] = float32(a)
		}
	}
	for i := range hasA {
		if hasA[i] = b.HasAdvantage(i); !hasA[i] {
			rw[i] = 0
		}
	}
	return primitiveArray(mem, arrow.PrimitiveTypes.Float32, n, values, hasA)
}

// tableColumn is one column of a table of row structs: get(row) for every row.
func tableColumn[R any, T fixedWidth](mem memory.Allocator, dt arrow.DataType, rows []R, get func(*R) T) arrow.Array {
	v := make([]T, len(rows))
	for i := range rows {
		v[i] = get(&rows[i])
	}
	return newPrimitive(mem, dt, v, nil)
}

// SummaryRecord builds the per-step summary table (SummarySchema); the caller releases it.
func SummaryRecord(mem memory.Allocator, rows []StepSummary) arrow.Record {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	i64 := func(get func(*StepSummary) int64) arrow.Array {
		return tableColumn(mem, arrow.PrimitiveTypes.Int64, rows, get)
	}
	f64 := func(get func(*StepSummary) float64) arrow.Array {
		return tableColumn(mem, arrow.PrimitiveTypes.Float64, rows, get)
	}
	arrs := []arrow.Array{
		i64(func(s *StepSummary) int64 { return s.Step }),
		i64(func(s *StepSummary) int64 { return s.Tokens }),
		f64(func(s *StepSummary) float64 { return s.MeanEntropy }),
		f64(func(s *StepSummary) float64 { return s.EMAEntropy }),
		f64(func(s *StepSummary) float64 { return s.Phase }),
		f64(func(s *StepSummary) float64 { return s.ExpandingFraction }),
		f64(func(s *StepSummary) float64 { return s.SumPositivePolarity }),
		f64(func(s *StepSummary) float64 { return s.SumNegativePolarity }),
		f64(func(s *StepSummary) float64 { return s.PredictedDeltaH }),
		f64(func(s *StepSummary) float64 { return s.ReweightedPredictedDeltaH }),
		f64(func(s *StepSummary) float64 { return s.WeightMin }),
		f64(func(s *StepSummary) float64 { return s.WeightMean }),
		f64(func(s *StepSummary) float64 { return s.WeightMax }),
	}
	defer releaseAll(arrs)
	return array.NewRecord(summarySchema, arrs, int64(len(rows)))
}

// RowStatsSchema is the schema of `papo analyze --row-stats`: the input's columns except
// logits, then the six row statistics (float64), with papo.temperature set to the τ they were
// computed with, so that the file is an input of its own.
func RowStatsSchema(in *arrow.Schema, tau float64) *arrow.Schema {
	var fields []arrow.Field
	for _, f := range in.Fields() {
		if f.Name != ColLogits {
			fields = append(fields, f)
		}
	}
	for _, name := range StatsColumnNames {
		fields = append(fields, arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Float64})
	}
	md := in.Metadata()
	keys, values := append([]string(nil), md.Keys()...), append([]string(nil), md.Values()...)
	if i := md.FindKey(MetaTemperature); i >= 0 {
		values[i] = strconv.FormatFloat(tau, 'g', -1, 64)
	} else {
		keys, values = append(keys, MetaTemperature), append(values, strconv.FormatFloat(tau, 'g', -1, 64))
	}
	out := arrow.NewMetadata(keys, values)
	return arrow.NewSchema(fields, &out)
}

// BuildRowStats builds a record of schema (RowStatsSchema) from the passthrough columns and the
// rows' statistics; the caller releases it.
func BuildRowStats(mem memory.Allocator, schema *arrow.Schema, passthrough arrow.Record, st *polarity.StatsColumns) (arrow.Record, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	np, n := int(passthrough.NumCols()), int(passthrough.NumRows())
	if schema.NumFields() != np+len(StatsColumnNames) {
		return nil, fmt.Errorf("build row statistics: schema has %d columns; want %d passthrough + %d statistics",
			schema.NumFields(), np, len(StatsColumnNames))
	}
	arrs := make([]arrow.Array, 0, schema.NumFields())
	for i := 0; i < np; i++ {
		c := passthrough.Column(i)
		c.Retain()
		arrs = append(arrs, c)
	}
	for k, col := range st.Cols() {
		if len(col) != n {
			for _, a := range arrs {
				a.Release()
			}
			return nil, fmt.Errorf("build row statistics: %s has %d rows; the passthrough record has %d", StatsColumnNames[k], len(col), n)
		}
		arrs = append(arrs, newPrimitive(mem, arrow.PrimitiveTypes.Float64, col, nil))
	}
	rec := array.NewRecord(schema, arrs, int64(n))
	for _, a := range arrs {
		a.Release()
	}
	return rec, nil
}
