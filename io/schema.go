package papoio

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/entropy-polarity/papo/polarity"
)

// Input columns of docs/SCHEMA.md.
const (
	ColLogits     = "logits"
	ColTokenID    = "token_id"
	ColAdvantage  = "advantage"
	ColSequenceID = "sequence_id"
	ColGroupID    = "group_id"
	ColPosition   = "position"
	ColStep       = "step"
	ColMask       = "mask"
	ColOldLogprob = "old_logprob"
	// ColEntropyAfter is the entropy of the same row after the trainer's first update on the
	// step (a PPO/GRPO epoch μ > 1 recomputes it anyway); papo carries it through, and papo
	// report measures the predicted ΔĤ against it (docs/SCHEMA.md).
	ColEntropyAfter = "entropy_after"

	// Row statistics on u = z/τ (docs/SCHEMA.md), in place of logits.
	ColLogitMax     = "logit_max"
	ColSumExpRest   = "sum_exp_rest"
	ColSumExpV      = "sum_exp_v"
	ColSumExp2      = "sum_exp2"
	ColSumExp2V     = "sum_exp2_v"
	ColSampledLogit = "sampled_logit"
)

// Output columns of docs/SCHEMA.md, appended after the input columns other than logits.
const (
	ColEntropy             = "entropy"
	ColLogprob             = "logprob"
	ColSampledTerm         = "sampled_term"
	ColCorrection          = "correction"
	ColPolarityFactor      = "polarity_factor"
	ColPolarity            = "polarity"
	ColPredictedDeltaH     = "predicted_dH"
	ColWeight              = "weight"
	ColReweightedAdvantage = "reweighted_advantage"
)

// Metadata keys. MetaDtype is field metadata on the logits field (or its list's element field);
// the others are schema metadata.
const (
	MetaDtype       = "papo.dtype"
	MetaTemperature = "papo.temperature"
	MetaLR          = "papo.lr"
	MetaClipLow     = "papo.clip_low"
	MetaClipHigh    = "papo.clip_high"
	MetaRunID       = "papo.run_id"
)

// outputColumns are the computed columns, in output order.
var outputColumns = []string{
	ColEntropy, ColLogprob, ColSampledTerm, ColCorrection, ColPolarityFactor,
	ColPolarity, ColPredictedDeltaH, ColWeight, ColReweightedAdvantage,
}

// CollisionPrefix is prepended to an input column that has the name of an output column
// (a trainer that exports its own "entropy"), so that both reach the output.
const CollisionPrefix = "input_"

// Meta describes an input: what its schema promises.
type Meta struct {
	// V is the vocabulary size. For list<...> logits it is known after the first row and is
	// 0 before.
	V     int
	Dtype polarity.Dtype
	// Params come from the schema metadata papo.temperature, papo.lr, papo.clip_low and
	// papo.clip_high; keys that are absent keep polarity.DefaultParams().
	Params polarity.Params
	RunID  string // papo.run_id
	// Which optional columns are present.
	HasAdvantage, HasOldLogprob, HasMask, HasStep bool
	// RowStats: the input carries row statistics instead of logits (V and Dtype are then 0).
	RowStats bool
}

// StatsColumnNames are the row-statistics columns, in polarity.StatsColumns order.
var StatsColumnNames = []string{ColLogitMax, ColSumExpRest, ColSumExpV, ColSumExp2, ColSumExp2V, ColSampledLogit}

type listKind uint8

const (
	fixedSizeList listKind = iota
	varList
	largeList
)

func (k listKind) String() string {
	switch k {
	case varList:
		return "list"
	case largeList:
		return "large_list"
	}
	return "fixed_size_list"
}

// layout is where the known columns are and how the logits are stored.
type layout struct {
	logits, tokenID, advantage, oldLogprob, mask, step int // field index, -1 when absent
	kind                                               listKind
	elem                                               arrow.Type // FLOAT32, FLOAT16 or UINT16
	dtype                                              polarity.Dtype
	v                                                  int   // 0 for list kinds until the first row
	stats                                              []int // the row-statistics columns (StatsColumnNames), nil with logits
	passIdx                                            []int
	passSchema                                         *arrow.Schema
}

const acceptedLogits = "fixed_size_list<float32>[V], fixed_size_list<float16>[V], " +
	"fixed_size_list<uint16>[V] with field metadata papo.dtype=bfloat16, " +
	"or list<...>/large_list<...> of the same element types with every row V long"

// columnTypes lists the accepted types of every known column but logits.
var columnTypes = map[string][]arrow.Type{
	ColTokenID:      {arrow.INT32, arrow.INT64},
	ColAdvantage:    {arrow.FLOAT32, arrow.FLOAT64},
	ColOldLogprob:   {arrow.FLOAT32, arrow.FLOAT64},
	ColMask:         {arrow.BOOL},
	ColStep:         {arrow.INT64, arrow.INT32},
	ColSequenceID:   {arrow.INT64, arrow.INT32},
	ColGroupID:      {arrow.INT64, arrow.INT32},
	ColPosition:     {arrow.INT32, arrow.INT64},
	ColEntropyAfter: {arrow.FLOAT32, arrow.FLOAT64},
}

func typeNames(ts []arrow.Type) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = strings.ToLower(t.String())
	}
	return strings.Join(names, " or ")
}

// checkSchema validates s against docs/SCHEMA.md and returns where everything is.
func checkSchema(file string, s *arrow.Schema) (*layout, Meta, error) {
	fail := func(col, format string, args ...any) (*layout, Meta, error) {
		e := fileError(file, nil, format, args...)
		e.Column = col
		return nil, Meta{}, e
	}
	lay := &layout{logits: -1, tokenID: -1, advantage: -1, oldLogprob: -1, mask: -1, step: -1}
	index := func(name string) (int, error) {
		idx := s.FieldIndices(name)
		switch len(idx) {
		case 0:
			return -1, nil
		case 1:
			return idx[0], nil
		}
		return -1, fmt.Errorf("column %s appears %d times; want it once", name, len(idx))
	}
	names := []string{ColLogits, ColTokenID, ColAdvantage, ColOldLogprob, ColMask, ColStep,
		ColSequenceID, ColGroupID, ColPosition, ColEntropyAfter}
	found := make(map[string]int, len(names))
	for _, name := range names {
		i, err := index(name)
		if err != nil {
			return fail(name, "%v", err)
		}
		found[name] = i
	}
	present := func() string {
		fs := s.Fields()
		if len(fs) == 0 {
			return "the schema has no columns"
		}
		parts := make([]string, len(fs))
		for i, f := range fs {
			parts[i] = f.Name + " " + f.Type.String()
		}
		return "present: " + strings.Join(parts, ", ")
	}
	// Row statistics instead of logits: all six columns, float32 or float64.
	var stats, missing []string
	for _, name := range StatsColumnNames {
		i, err := index(name)
		if err != nil {
			return fail(name, "%v", err)
		}
		if i < 0 {
			missing = append(missing, name)
			continue
		}
		stats = append(stats, name)
		if id := s.Field(i).Type.ID(); id != arrow.FLOAT32 && id != arrow.FLOAT64 {
			return fail(name, "row-statistics column %s has type %s; want float32 or float64", name, s.Field(i).Type)
		}
		lay.stats = append(lay.stats, i)
	}
	switch {
	case found[ColLogits] >= 0 && len(stats) > 0:
		return fail(ColLogits, "the input has both logits and row statistics (%s): give one of them", strings.Join(stats, ", "))
	case found[ColLogits] < 0 && len(stats) > 0 && len(missing) > 0:
		return fail(missing[0], "row statistics instead of logits need all of %s; missing %s (%s)",
			strings.Join(StatsColumnNames, ", "), strings.Join(missing, ", "), present())
	case found[ColLogits] < 0 && len(stats) == 0:
		return fail(ColLogits, "missing required column %s, or the row statistics %s instead (%s)",
			ColLogits, strings.Join(StatsColumnNames, ", "), present())
	}
	if found[ColTokenID] < 0 {
		return fail(ColTokenID, "missing required column %s (%s)", ColTokenID, present())
	}
	for _, name := range names[1:] {
		i := found[name]
		if i < 0 {
			continue
		}
		dt := s.Field(i).Type
		ok := false
		for _, t := range columnTypes[name] {
			ok = ok || dt.ID() == t
		}
		if !ok {
			return fail(name, "column %s has type %s; want %s", name, dt, typeNames(columnTypes[name]))
		}
	}
	lay.logits, lay.tokenID = found[ColLogits], found[ColTokenID]
	lay.advantage, lay.oldLogprob = found[ColAdvantage], found[ColOldLogprob]
	lay.mask, lay.step = found[ColMask], found[ColStep]

	if lay.stats == nil {
		if err := lay.checkLogits(s.Field(lay.logits)); err != nil {
			return fail(ColLogits, "%s", err)
		}
	}

	params, err := ParamsFromMetadata(s.Metadata())
	if err != nil {
		e := fileError(file, nil, "schema metadata %s", err)
		return nil, Meta{}, e
	}
	runID, _ := s.Metadata().GetValue(MetaRunID)

	// The passthrough columns: all but the logits, or all but the row statistics that stand for
	// them (the output of either input has the same columns).
	fields := make([]arrow.Field, 0, s.NumFields())
	for i, f := range s.Fields() {
		if i != lay.logits && !slices.Contains(lay.stats, i) {
			lay.passIdx = append(lay.passIdx, i)
			fields = append(fields, f)
		}
	}
	md := s.Metadata()
	lay.passSchema = arrow.NewSchema(fields, &md)

	meta := Meta{
		V: lay.v, Dtype: lay.dtype, Params: params, RunID: runID,
		HasAdvantage: lay.advantage >= 0, HasOldLogprob: lay.oldLogprob >= 0,
		HasMask: lay.mask >= 0, HasStep: lay.step >= 0, RowStats: lay.stats != nil,
	}
	return lay, meta, nil
}

// checkLogits decides the list kind, element type, dtype and (for fixed_size_list) V.
func (lay *layout) checkLogits(f arrow.Field) error {
	dt := f.Type
	if ext, ok := dt.(arrow.ExtensionType); ok {
		// arrow.fixed_shape_tensor and similar extensions: what matters is the storage.
		dt = ext.StorageType()
	}
	var elem arrow.Field
	switch t := dt.(type) {
	case *arrow.FixedSizeListType:
		lay.kind = fixedSizeList
		elem = t.ElemField()
		if t.Len() <= 0 {
			return fmt.Errorf("logits is %s: want V > 0 elements per row", dt)
		}
		lay.v = int(t.Len())
	case *arrow.ListType:
		lay.kind, elem = varList, t.ElemField()
	case *arrow.LargeListType:
		lay.kind, elem = largeList, t.ElemField()
	default:
		return fmt.Errorf("logits has type %s; want %s", f.Type, acceptedLogits)
	}

	declared, where := "", ""
	if v, ok := f.Metadata.GetValue(MetaDtype); ok {
		declared, where = v, "logits field"
	} else if v, ok := elem.Metadata.GetValue(MetaDtype); ok {
		declared, where = v, "logits element field"
	}
	var want polarity.Dtype
	if declared != "" {
		d, err := polarity.ParseDtype(strings.TrimSpace(strings.ToLower(declared)))
		if err != nil {
			return fmt.Errorf("%s metadata %s=%q: %v", where, MetaDtype, declared, err)
		}
		want = d
	}
	lay.elem = elem.Type.ID()
	switch lay.elem {
	case arrow.FLOAT32:
		lay.dtype = polarity.Float32
	case arrow.FLOAT16:
		lay.dtype = polarity.Float16
	case arrow.UINT16:
		if declared == "" {
			return fmt.Errorf("logits elements are uint16 without field metadata %s: "+
				"add %s=bfloat16 to the logits field if they are raw bfloat16 bits", MetaDtype, MetaDtype)
		}
		if want == polarity.Float32 {
			return fmt.Errorf("logits elements are uint16 but %s says %s=%q; want bfloat16 (or float16) for 16-bit raw bits",
				where, MetaDtype, declared)
		}
		lay.dtype = want
	default:
		return fmt.Errorf("logits elements have type %s; want %s", elem.Type, acceptedLogits)
	}
	if declared != "" && want != lay.dtype {
		return fmt.Errorf("logits elements are %s but %s says %s=%q", elem.Type, where, MetaDtype, declared)
	}
	return nil
}

// ParamsFromMetadata reads polarity.Params (papo.temperature, papo.lr, papo.clip_low,
// papo.clip_high) from schema metadata; absent keys keep the defaults.
func ParamsFromMetadata(md arrow.Metadata) (polarity.Params, error) {
	p := polarity.DefaultParams()
	get := func(key string) (string, bool) {
		v, ok := md.GetValue(key)
		return strings.TrimSpace(v), ok
	}
	if v, ok := get(MetaTemperature); ok {
		t, err := strconv.ParseFloat(v, 64)
		if err != nil || !(t >= polarity.MinTemperature && t <= polarity.MaxTemperature) {
			return p, fmt.Errorf("%s=%q: want a finite number > 0, in [%.4g, %.4g] (the temperatures the kernels can represent)",
				MetaTemperature, v, polarity.MinTemperature, polarity.MaxTemperature)
		}
		p.Temperature = t
	}
	if v, ok := get(MetaLR); ok {
		lr, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(lr) || math.IsInf(lr, 0) {
			return p, fmt.Errorf("%s=%q: want a finite number", MetaLR, v)
		}
		p.LR = lr
	}
	for _, c := range []struct {
		key string
		dst *float64
	}{{MetaClipLow, &p.ClipLow}, {MetaClipHigh, &p.ClipHigh}} {
		v, ok := get(c.key)
		if !ok {
			continue
		}
		e, err := polarity.ParseEpsilon(v)
		if err != nil {
			return p, fmt.Errorf("%s=%w", c.key, err)
		}
		*c.dst = e
	}
	if err := p.Validate(); err != nil {
		return p, fmt.Errorf("%s, %s: %w", MetaTemperature, MetaLR, err)
	}
	return p, nil
}

// InputColumns are the columns BuildInput writes. Batch.Logits and Batch.TokenID are required;
// every other slice is optional (nil: the column is absent, unless the schema asks for it).
type InputColumns struct {
	Batch      polarity.Batch
	SequenceID []int64
	GroupID    []int64
	Step       []int64
	Position   []int32
	// Extra are further columns by name (carried through to the output unchanged). InputSchema
	// adds them after the known columns, sorted by name.
	Extra map[string]arrow.Array
}

// logitsElemType is the Arrow element type that stores d.
func logitsElemType(d polarity.Dtype) arrow.DataType {
	switch d {
	case polarity.Float16:
		return arrow.FixedWidthTypes.Float16
	case polarity.BFloat16:
		return arrow.PrimitiveTypes.Uint16
	}
	return arrow.PrimitiveTypes.Float32
}

// LogitsField is the docs/SCHEMA.md logits field: fixed_size_list<elem>[v], with the papo.dtype
// field metadata for bfloat16.
func LogitsField(v int, dtype polarity.Dtype) arrow.Field {
	f := arrow.Field{
		Name: ColLogits,
		Type: arrow.FixedSizeListOfNonNullable(int32(v), logitsElemType(dtype)),
	}
	if dtype == polarity.BFloat16 {
		f.Metadata = arrow.NewMetadata([]string{MetaDtype}, []string{"bfloat16"})
	}
	return f
}

// InputSchema is the input schema of docs/SCHEMA.md for vocabulary size v and dtype, with the
// optional columns that cols holds (advantage float64, old_logprob float32, mask, sequence_id,
// group_id, position, step, then cols.Extra by name) and meta as schema metadata. It serves
// generators and tests.
func InputSchema(v int, dtype polarity.Dtype, cols InputColumns, meta map[string]string) *arrow.Schema {
	fields := []arrow.Field{
		LogitsField(v, dtype),
		{Name: ColTokenID, Type: arrow.PrimitiveTypes.Int32},
	}
	b := &cols.Batch
	if b.Advantage != nil {
		fields = append(fields, arrow.Field{Name: ColAdvantage, Type: arrow.PrimitiveTypes.Float64, Nullable: true})
	}
	if cols.SequenceID != nil {
		fields = append(fields, arrow.Field{Name: ColSequenceID, Type: arrow.PrimitiveTypes.Int64})
	}
	if cols.GroupID != nil {
		fields = append(fields, arrow.Field{Name: ColGroupID, Type: arrow.PrimitiveTypes.Int64})
	}
	if cols.Position != nil {
		fields = append(fields, arrow.Field{Name: ColPosition, Type: arrow.PrimitiveTypes.Int32})
	}
	if cols.Step != nil {
		fields = append(fields, arrow.Field{Name: ColStep, Type: arrow.PrimitiveTypes.Int64})
	}
	if b.Mask != nil {
		fields = append(fields, arrow.Field{Name: ColMask, Type: arrow.FixedWidthTypes.Boolean, Nullable: true})
	}
	if b.OldLogprob != nil {
		fields = append(fields, arrow.Field{Name: ColOldLogprob, Type: arrow.PrimitiveTypes.Float32, Nullable: true})
	}
	extra := make([]string, 0, len(cols.Extra))
	for name := range cols.Extra {
		extra = append(extra, name)
	}
	sort.Strings(extra)
	for _, name := range extra {
		fields = append(fields, arrow.Field{Name: name, Type: cols.Extra[name].DataType(), Nullable: true})
	}
	var md *arrow.Metadata
	if len(meta) > 0 {
		m := arrow.MetadataFrom(meta)
		md = &m
	}
	return arrow.NewSchema(fields, md)
}

// OutputSchema is the output schema for an input schema: every input field except logits or
// the row statistics that stand for them (StatsColumnNames), with the schema metadata, then the
// computed columns of docs/SCHEMA.md. An input column named like a computed column is renamed
// with CollisionPrefix.
func OutputSchema(in *arrow.Schema) *arrow.Schema {
	taken := make(map[string]bool, len(outputColumns))
	for _, name := range outputColumns {
		taken[name] = true
	}
	fields := make([]arrow.Field, 0, in.NumFields()+len(outputColumns))
	for _, f := range in.Fields() {
		if f.Name == ColLogits || slices.Contains(StatsColumnNames, f.Name) {
			continue
		}
		if taken[f.Name] {
			f.Name = CollisionPrefix + f.Name
		}
		fields = append(fields, f)
	}
	f32 := arrow.PrimitiveTypes.Float32
	for _, name := range outputColumns {
		nullable := name == ColPolarity || name == ColReweightedAdvantage
		fields = append(fields, arrow.Field{Name: name, Type: f32, Nullable: nullable})
	}
	md := in.Metadata()
	return arrow.NewSchema(fields, &md)
}

// NeedsPassthrough reports whether an output schema (OutputSchema, or SelectColumns of it) has
// a column of the input: without one, BuildOutput needs no passthrough columns, only the row
// count (a record of no columns).
func NeedsPassthrough(out *arrow.Schema) bool {
	for _, f := range out.Fields() {
		if !slices.Contains(outputColumns, f.Name) {
			return true
		}
	}
	return false
}

// SelectColumns is the schema of the columns names of out (an output schema), in that order,
// with out's metadata: the reply a client that asks for some columns gets. An unknown or
// repeated name is an error that lists out's columns.
func SelectColumns(out *arrow.Schema, names []string) (*arrow.Schema, error) {
	if len(names) == 0 {
		return nil, errors.New("no columns named")
	}
	fields := make([]arrow.Field, 0, len(names))
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		idx := out.FieldIndices(name)
		switch {
		case name == "":
			return nil, errors.New("an empty column name")
		case seen[name]:
			return nil, fmt.Errorf("column %q is named twice", name)
		case len(idx) == 0:
			avail := make([]string, out.NumFields())
			for i, f := range out.Fields() {
				avail[i] = f.Name
			}
			return nil, fmt.Errorf("column %q is not in the output; its columns are %s", name, strings.Join(avail, ", "))
		}
		seen[name] = true
		fields = append(fields, out.Field(idx[0]))
	}
	md := out.Metadata()
	return arrow.NewSchema(fields, &md), nil
}

// StepSummary is one row of the per-step summary table.
type StepSummary struct {
	Step, Tokens        int64
	MeanEntropy         float64
	EMAEntropy          float64
	Phase               float64
	ExpandingFraction   float64
	SumPositivePolarity float64
	SumNegativePolarity float64
	PredictedDeltaH     float64 // Σ predicted ΔH with the input advantages
	// ReweightedPredictedDeltaH is Σ predicted ΔH with the reweighted advantages (Σ w·ΔĤ):
	// compared with PredictedDeltaH it shows which way the reweighting moves entropy.
	ReweightedPredictedDeltaH float64
	WeightMin                 float64
	WeightMean                float64
	WeightMax                 float64
}

var summarySchema = arrow.NewSchema([]arrow.Field{
	{Name: "step", Type: arrow.PrimitiveTypes.Int64},
	{Name: "tokens", Type: arrow.PrimitiveTypes.Int64},
	{Name: "mean_entropy", Type: arrow.PrimitiveTypes.Float64},
	{Name: "ema_entropy", Type: arrow.PrimitiveTypes.Float64},
	{Name: "phase", Type: arrow.PrimitiveTypes.Float64},
	{Name: "expanding_fraction", Type: arrow.PrimitiveTypes.Float64},
	{Name: "sum_positive_polarity", Type: arrow.PrimitiveTypes.Float64},
	{Name: "sum_negative_polarity", Type: arrow.PrimitiveTypes.Float64},
	{Name: "predicted_dH", Type: arrow.PrimitiveTypes.Float64},
	{Name: "reweighted_predicted_dH", Type: arrow.PrimitiveTypes.Float64},
	{Name: "weight_min", Type: arrow.PrimitiveTypes.Float64},
	{Name: "weight_mean", Type: arrow.PrimitiveTypes.Float64},
	{Name: "weight_max", Type: arrow.PrimitiveTypes.Float64},
}, nil)

// SummarySchema is the schema of the per-step summary table.
func SummarySchema() *arrow.Schema { return summarySchema }
