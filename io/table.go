package papoio

import (
	"bufio"
	"bytes"
	"context"
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
	"github.com/apache/arrow-go/v18/arrow/csv"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// Tables: an input may also be a Parquet, CSV or JSONL file (by its extension), which suits
// row-statistics inputs: a few numbers per token, which a trainer may well write as CSV. CSV and
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

// newTableReader reads a Parquet, CSV or JSONL file.
func newTableReader(f *os.File, name string, format Format, mem memory.Allocator, optList []Option) (*Reader, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	opt := newOptions(optList)
	r := &Reader{name: name, mem: &limitAllocator{mem: mem, limit: opt.maxBuffer}, limit: opt.maxBuffer}
	if err := guard(func() error { return r.openTable(f, format) }); err != nil {
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
	for _, known := range append([]string{ColAdvantage, ColOldLogprob, ColEntropySum, ColPolaritySum, ColPolaritySum2,
		ColAbsAdvantage, ColAbsAdvantageSign}, StatsColumnNames...) {
		if name == known {
			return arrow.PrimitiveTypes.Float64, true
		}
	}
	return nil, false
}

// openTable reads f as a table in format.
func (r *Reader) openTable(f *os.File, format Format) error {
	switch format {
	case FormatParquet:
		pf, err := file.NewParquetReader(f)
		if err != nil {
			return fmt.Errorf("not a readable Parquet file: %w", err)
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: tableRows}, r.mem)
		if err != nil {
			pf.Close()
			return fmt.Errorf("reading the Parquet schema: %w", err)
		}
		rr, err := fr.GetRecordReader(context.Background(), nil, nil)
		if err != nil {
			pf.Close()
			return fmt.Errorf("reading the Parquet file: %w", err)
		}
		r.records, r.sch = rr, rr.Schema()
		r.closers = append(r.closers, func() error { rr.Release(); return pf.Close() })
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
		fields := make([]arrow.Field, len(header))
		for i, h := range header {
			h = strings.TrimSpace(h)
			dt, ok := namedType(h)
			if !ok {
				dt = arrow.BinaryTypes.String
			}
			fields[i] = arrow.Field{Name: h, Type: dt, Nullable: true}
		}
		sch := arrow.NewSchema(fields, nil)
		cr := csv.NewReader(br, sch, csv.WithHeader(false), csv.WithChunk(tableRows), csv.WithAllocator(r.mem),
			csv.WithNullReader(false, ""))
		r.records, r.sch = cr, sch
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

// jsonlReader reads one JSON object per line into record batches; floats may be numbers or the
// strings "NaN", "Infinity" and "-Infinity" (what papo's JSONL writer writes for them).
type jsonlReader struct {
	sc     *bufio.Scanner
	mem    memory.Allocator
	schema *arrow.Schema
	first  map[string]any
	line   int
	rec    arrow.Record
	err    error
}

func newJSONLReader(f io.Reader, mem memory.Allocator) (*jsonlReader, error) {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 64<<20)
	j := &jsonlReader{sc: sc, mem: mem}
	var keys []string
	for sc.Scan() {
		j.line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		obj, order, err := decodeObject(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", j.line, err)
		}
		j.first, keys = obj, order
		break
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if j.first == nil {
		return nil, errors.New("no JSON object in the file")
	}
	fields := make([]arrow.Field, len(keys))
	for i, k := range keys {
		dt, ok := namedType(k)
		if !ok {
			switch j.first[k].(type) {
			case bool:
				dt = arrow.FixedWidthTypes.Boolean
			case json.Number:
				dt = arrow.PrimitiveTypes.Float64
			default:
				dt = arrow.BinaryTypes.String
			}
		}
		fields[i] = arrow.Field{Name: k, Type: dt, Nullable: true}
	}
	j.schema = arrow.NewSchema(fields, nil)
	return j, nil
}

// decodeObject decodes one JSON object, keeping its key order.
func decodeObject(line []byte) (map[string]any, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
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
		if _, dup := obj[k]; !dup {
			order = append(order, k)
		}
		obj[k] = v
	}
	return obj, order, nil
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
				return fmt.Errorf("line %d, column %s: %w", j.line, f.Name, err)
			}
		}
		rows++
		return nil
	}
	if j.first != nil {
		if j.err = add(j.first); j.err != nil {
			return false
		}
		j.first = nil
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

func appendJSON(b array.Builder, v any) error {
	switch b := b.(type) {
	case *array.Int64Builder:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%v: want an integer", v)
		}
		x, err := n.Int64()
		if err != nil {
			return fmt.Errorf("%v: want an integer", v)
		}
		b.Append(x)
	case *array.Float64Builder:
		switch v := v.(type) {
		case json.Number:
			x, err := strconv.ParseFloat(string(v), 64)
			if err != nil {
				return err
			}
			b.Append(x)
		case string:
			switch v {
			case "NaN":
				b.Append(math.NaN())
			case "Infinity":
				b.Append(math.Inf(1))
			case "-Infinity":
				b.Append(math.Inf(-1))
			default:
				return fmt.Errorf("%q: want a number", v)
			}
		default:
			return fmt.Errorf("%v: want a number", v)
		}
	case *array.BooleanBuilder:
		x, ok := v.(bool)
		if !ok {
			return fmt.Errorf("%v: want true or false", v)
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
		return fmt.Errorf("unsupported column type %s", b.Type())
	}
	return nil
}
