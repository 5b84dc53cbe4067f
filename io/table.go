package papoio

import (
	"bufio"
	"bytes"
	stdcsv "encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Tables: an input may also be a Parquet, CSV or JSONL file (by its extension), which suits
// row-statistics inputs: a few numbers per token, which a trainer may well write as CSV. Parquet
// is read by the codec given with WithTables (codec.go), CSV and JSONL here. CSV and
// JSONL carry no schema metadata (give τ and η with --temperature and --lr), and their column
// types follow the column names: token_id, step, sequence_id, group_id and position are int64,
// mask is bool, every other known column float64, and an unknown column keeps its text (CSV)
// or the JSON type of its first value.

// recordSource is what the table readers have in common.
type recordSource interface {
	Next() bool
	Record() arrow.Record
	Err() error
}

// newTableReader reads a Parquet (with its codec), CSV or JSONL file.
func newTableReader(f *os.File, name string, format Format, mem memory.Allocator, optList []Option) (*Reader, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	opt := newOptions(optList)
	r := &Reader{name: name, mem: newLimitAllocator(mem, opt.maxBuffer, opt.bodies), limit: opt.maxBuffer}
	if err := guard(func() error { return r.openTable(f, format, &opt) }); err != nil {
		r.Close()
		return nil, fileError(name, err, "reading the %s table", format)
	}
	return r.checkContract(opt)
}

// tableRows is how many rows a CSV or JSONL record batch holds.
const tableRows = 4096

// tableFormat is the table format that path's extension names ("" for Arrow IPC).
func tableFormat(path string) Format {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".parquet":
		return FormatParquet
	case ".csv":
		return FormatCSV
	case ".jsonl", ".ndjson":
		return FormatJSONL
	}
	return ""
}

var intColumns = map[string]bool{ColTokenID: true, ColStep: true, ColSequenceID: true, ColGroupID: true, ColPosition: true}

// namedType is the type a column of a metadata-free table gets from its name; ok false for an
// unknown name.
func namedType(name string) (arrow.DataType, bool) {
	switch {
	case intColumns[name] || name == ColEntropyTokens || name == ColWeightedTokens:
		return arrow.PrimitiveTypes.Int64, true
	case name == ColMask:
		return arrow.FixedWidthTypes.Boolean, true
	case name == ColLogits:
		return nil, false
	}
	for _, known := range append([]string{ColAdvantage, ColOldLogprob, ColEntropyAfter, ColEntropySum, ColPolaritySum, ColPolaritySum2,
		ColAbsAdvantage, ColAbsAdvantageSign}, StatsColumnNames...) {
		if name == known {
			return arrow.PrimitiveTypes.Float64, true
		}
	}
	return nil, false
}

// openTable reads f as a table in format.
func (r *Reader) openTable(f *os.File, format Format, opt *options) error {
	switch format {
	case FormatParquet:
		codec, err := opt.parquetCodec("read")
		if err != nil {
			return err
		}
		src, err := codec.ReadTable(f, r.mem)
		if err != nil {
			return err
		}
		r.records, r.sch = src, src.Schema()
		r.closers = append(r.closers, src.Close)
		return nil
	case FormatCSV:
		br := bufio.NewReader(f)
		line, err := br.ReadString('\n')
		if err != nil && (err != io.EOF || line == "") {
			return fmt.Errorf("reading the CSV header: %w", unexpected(err))
		}
		header, err := stdcsv.NewReader(strings.NewReader(line)).Read()
		if err != nil {
			return fmt.Errorf("reading the CSV header: %w", err)
		}
		cr := newCSVReader(io.MultiReader(strings.NewReader(line), br), header, r.mem)
		if _, err := cr.cr.Read(); err != nil { // the header again, so that FieldPos counts lines
			return fmt.Errorf("reading the CSV header: %w", err)
		}
		r.records, r.sch = cr, cr.schema
		r.closers = append(r.closers, func() error { cr.Release(); return nil })
		return nil
	case FormatJSONL:
		jr, err := newJSONLReader(f, r.mem)
		if err != nil {
			return err
		}
		r.records, r.sch = jr, jr.schema
		return nil
	}
	return fmt.Errorf("unknown table format %q", format)
}

// nonFiniteToken is the bare token NaN, Infinity or -Infinity that b starts with, or "".
func nonFiniteToken(b []byte) string {
	for _, tok := range [...]string{"NaN", "Infinity", "-Infinity"} {
		if bytes.HasPrefix(b, []byte(tok)) {
			return tok
		}
	}
	return ""
}

// jsonlReader reads one JSON object per line into record batches. Its columns are every key of
// every line, in the order they first appear (a key absent from a line is a null there), so no
// line's data is dropped; the file is read twice, once for the columns and once for the rows.
// Floats may be numbers, the bare tokens NaN, Infinity and -Infinity (what Python's json.dumps
// writes, and DuckDB reads), or those words as strings (what papo wrote before).
type jsonlReader struct {
	sc     *bufio.Scanner
	mem    memory.Allocator
	schema *arrow.Schema
	line   int
	row    int
	rec    arrow.Record
	err    error
}

// jsonKind is the kind of a JSON value, for a column whose name gives no type.
type jsonKind int

const (
	kindNull jsonKind = iota
	kindBool
	kindNumber
	kindString
	kindOther // an object or an array, kept as its JSON text
)

func (k jsonKind) String() string {
	return [...]string{"null", "true or false", "a number", "a string", "an object or array"}[k]
}

func kindOf(v any) jsonKind {
	switch v := v.(type) {
	case nil:
		return kindNull
	case bool:
		return kindBool
	case json.Number:
		return kindNumber
	case string:
		if _, ok := nonFinite[v]; ok {
			return kindNumber
		}
		return kindString
	}
	return kindOther
}

var nonFinite = map[string]float64{"NaN": math.NaN(), "Infinity": math.Inf(1), "-Infinity": math.Inf(-1)}

func newJSONLScanner(f io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 64<<20)
	return sc
}

func newJSONLReader(f io.ReadSeeker, mem memory.Allocator) (*jsonlReader, error) {
	var keys []string
	kinds := map[string]jsonKind{}
	seen := map[string]int{} // the line where a key's kind was first seen
	sc := newJSONLScanner(f)
	line, objects := 0, 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		obj, order, err := decodeObject(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		objects++
		for _, k := range order {
			prev, known := kinds[k]
			if !known {
				keys = append(keys, k)
			}
			kind := kindOf(obj[k])
			switch {
			case kind == kindNull || kind == prev:
			case prev == kindNull:
				kinds[k], seen[k] = kind, line
				continue
			default:
				if _, named := namedType(k); !named {
					return nil, fmt.Errorf("line %d, column %s: %s, but line %d has %s there", line, k, kind, seen[k], prev)
				}
			}
			if !known {
				kinds[k], seen[k] = kind, line
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if objects == 0 {
		return nil, errors.New("no JSON object in the file")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding for the rows: %w", err)
	}
	fields := make([]arrow.Field, len(keys))
	for i, k := range keys {
		dt, ok := namedType(k)
		if !ok {
			switch kinds[k] {
			case kindBool:
				dt = arrow.FixedWidthTypes.Boolean
			case kindNumber:
				dt = arrow.PrimitiveTypes.Float64
			default:
				dt = arrow.BinaryTypes.String
			}
		}
		fields[i] = arrow.Field{Name: k, Type: dt, Nullable: true}
	}
	return &jsonlReader{sc: newJSONLScanner(f), mem: mem, schema: arrow.NewSchema(fields, nil)}, nil
}

// decodeObject decodes one JSON object, keeping its key order. A key given twice is an error:
// which of the two values was meant cannot be known.
func decodeObject(line []byte) (map[string]any, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(quoteNonFinite(line)))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, nil, errors.New("want one JSON object per line")
	}
	obj := map[string]any{}
	var order []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		k, _ := t.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, nil, fmt.Errorf("key %q: %w", k, err)
		}
		if _, dup := obj[k]; dup {
			return nil, nil, fmt.Errorf("key %q appears twice", k)
		}
		order = append(order, k)
		obj[k] = v
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, nil, errors.New("the object is not closed")
	}
	if dec.More() {
		return nil, nil, errors.New("want one JSON object per line, found more after it")
	}
	return obj, order, nil
}

// quoteNonFinite turns the bare tokens NaN, Infinity and -Infinity outside strings into JSON
// strings, which encoding/json accepts; line is returned as it is when it has none.
func quoteNonFinite(line []byte) []byte {
	var out []byte
	inString, escaped := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			if out != nil {
				out = append(out, c)
			}
			continue
		}
		if c == '"' {
			inString = true
		}
		if tok := nonFiniteToken(line[i:]); tok != "" {
			if out == nil {
				out = append(make([]byte, 0, len(line)+8), line[:i]...)
			}
			out = append(append(append(out, '"'), tok...), '"')
			i += len(tok) - 1
			continue
		}
		if out != nil {
			out = append(out, c)
		}
	}
	if out == nil {
		return line
	}
	return out
}

func (j *jsonlReader) Schema() *arrow.Schema { return j.schema }
func (j *jsonlReader) Record() arrow.Record  { return j.rec }
func (j *jsonlReader) Err() error            { return j.err }
func (j *jsonlReader) Retain()               {}
func (j *jsonlReader) Release() {
	if j.rec != nil {
		j.rec.Release()
		j.rec = nil
	}
}

func (j *jsonlReader) Next() bool {
	j.Release()
	if j.err != nil {
		return false
	}
	b := array.NewRecordBuilder(j.mem, j.schema)
	defer b.Release()
	rows := 0
	add := func(obj map[string]any) error {
		for i, f := range j.schema.Fields() {
			v, ok := obj[f.Name]
			if !ok || v == nil {
				b.Field(i).AppendNull()
				continue
			}
			if err := appendJSON(b.Field(i), v); err != nil {
				text, _ := json.Marshal(v)
				return &CellError{Line: j.line, Row: j.row, Column: f.Name, Text: string(text), Want: err.Error()}
			}
		}
		j.row++
		rows++
		return nil
	}
	for rows < tableRows && j.sc.Scan() {
		j.line++
		if len(bytes.TrimSpace(j.sc.Bytes())) == 0 {
			continue
		}
		obj, _, err := decodeObject(j.sc.Bytes())
		if err != nil {
			j.err = fmt.Errorf("line %d: %w", j.line, err)
			return false
		}
		if j.err = add(obj); j.err != nil {
			return false
		}
	}
	if err := j.sc.Err(); err != nil {
		j.err = err
		return false
	}
	if rows == 0 {
		return false
	}
	j.rec = b.NewRecord()
	return true
}

// appendJSON appends one JSON value; the error says what the column wants.
func appendJSON(b array.Builder, v any) error {
	switch b := b.(type) {
	case *array.Int64Builder:
		n, ok := v.(json.Number)
		if !ok {
			return errors.New("an integer")
		}
		x, err := parseInteger(string(n))
		if err != nil {
			return err
		}
		b.Append(x)
	case *array.Float64Builder:
		switch v := v.(type) {
		case json.Number:
			x, err := strconv.ParseFloat(string(v), 64)
			if err != nil && !errors.Is(err, strconv.ErrRange) {
				return errors.New("a number")
			}
			b.Append(x)
		case string:
			x, ok := nonFinite[v]
			if !ok {
				return errors.New("a number")
			}
			b.Append(x)
		default:
			return errors.New("a number")
		}
	case *array.BooleanBuilder:
		x, ok := v.(bool)
		if !ok {
			return errors.New("true or false")
		}
		b.Append(x)
	case *array.StringBuilder:
		switch v := v.(type) {
		case string:
			b.Append(v)
		default:
			enc, _ := json.Marshal(v)
			b.Append(string(enc))
		}
	default:
		return fmt.Errorf("a column of a supported type, not %s", b.Type())
	}
	return nil
}
