package papoio

import (
	"bufio"
	"encoding/csv"
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
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/atomicfile"
)

// Format is an output file format.
type Format string

const (
	FormatIPCFile   Format = "arrow"   // Arrow IPC file (.arrow, .feather)
	FormatIPCStream Format = "arrows"  // Arrow IPC stream (.arrows, and "-" for stdout)
	FormatParquet   Format = "parquet" // Parquet, written by the codec given with WithTables (io/parquet's)
	FormatCSV       Format = "csv"     // CSV with a header row; null is an empty field
	FormatJSONL     Format = "jsonl"   // one JSON object per row; null is null
)

const supportedExtensions = ".arrow (Arrow IPC file), .arrows (Arrow IPC stream), .parquet, .csv, .jsonl, " +
	"or - for an Arrow IPC stream on standard output"

// FormatOf is the output format that a path's extension selects.
func FormatOf(path string) (Format, error) {
	if path == "-" {
		return FormatIPCStream, nil
	}
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".arrow", ".feather":
		return FormatIPCFile, nil
	case ".arrows":
		return FormatIPCStream, nil
	case ".parquet":
		return FormatParquet, nil
	case ".csv":
		return FormatCSV, nil
	case ".jsonl", ".ndjson":
		return FormatJSONL, nil
	default:
		if ext == "" {
			return "", fmt.Errorf("%s: no file extension to choose the output format; want %s", path, supportedExtensions)
		}
		return "", fmt.Errorf("%s: unknown output extension %q; want %s", path, ext, supportedExtensions)
	}
}

// sink is where a format writes: it counts nothing, but Abort can turn it into a discard so
// that closing the format writer (to release its memory) writes nowhere.
type sink struct {
	w       io.Writer
	discard bool
}

func (s *sink) Write(p []byte) (int, error) {
	if s.discard {
		return len(p), nil
	}
	return s.w.Write(p)
}

// largeWrites buffers small writes in buf and passes large ones to w, buf's own writer, after
// the bytes buf holds. An IPC writer writes each of a record's buffers with its own call, most
// of them too small for bufio to pass through (a 512 KiB column into a 1 MiB buffer): copying
// them into the buffer first was 15 % of papo analyze's CPU on a 4M-row file, every byte of
// the output moved twice.
type largeWrites struct {
	buf *bufio.Writer
	w   io.Writer
}

// largeWrite is the smallest write that goes past the buffer (or the buffer's size, when smaller).
const largeWrite = 32 << 10

func (l *largeWrites) Write(p []byte) (int, error) {
	if len(p) < min(largeWrite, l.buf.Size()) {
		return l.buf.Write(p)
	}
	if err := l.buf.Flush(); err != nil {
		return 0, err
	}
	return l.w.Write(p)
}

// positionWriter reports the bytes written through it as its position: arrow-go's IPC file
// writer asks for the position (Seek(0, io.SeekCurrent)) but never seeks, so the file can go
// through a bufio.Writer.
type positionWriter struct {
	w   io.Writer
	pos int64
}

func (p *positionWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.pos += int64(n)
	return n, err
}

func (p *positionWriter) Seek(offset int64, whence int) (int64, error) {
	if offset != 0 || whence != io.SeekCurrent {
		return p.pos, fmt.Errorf("positionWriter: only Seek(0, io.SeekCurrent) is supported")
	}
	return p.pos, nil
}

// Writer writes records to a file whose format the extension selects. The file appears at its
// path only when Close succeeds (an atomicfile.File); "-" writes an IPC stream to standard
// output, which is not atomic.
type Writer struct {
	path      string
	format    Format
	schema    *arrow.Schema
	file      *atomicfile.File // nil for standard output and NewWriter
	sink      *sink
	buf       *bufio.Writer
	enc       RecordWriter
	flushEach bool
	done      bool
	err       error // first write error: Close fails with it
}

// Create starts an output file with schema. mem nil means memory.DefaultAllocator. Of the
// options it uses WithTables: a .parquet path needs the Parquet codec.
func Create(path string, schema *arrow.Schema, mem memory.Allocator, opts ...Option) (*Writer, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	if path == "-" {
		return NewWriter(os.Stdout, path, format, schema, mem, opts...)
	}
	f, err := atomicfile.Create(path)
	if err != nil {
		return nil, err
	}
	opt := newOptions(opts)
	w, err := newWriter(f, path, format, schema, mem, false, &opt)
	if err != nil {
		f.Abort()
		return nil, err
	}
	w.file = f
	return w, nil
}

// NewWriter writes records in format to out (a socket, a pipe), flushing after every record so
// that a reader sees each batch as soon as it is written. name is used in errors. Close
// finishes the format (an IPC stream's end-of-stream marker) but does not close out. Of the
// options it uses WithTables: FormatParquet needs the Parquet codec.
func NewWriter(out io.Writer, name string, format Format, schema *arrow.Schema, mem memory.Allocator, opts ...Option) (*Writer, error) {
	opt := newOptions(opts)
	return newWriter(out, name, format, schema, mem, true, &opt)
}

func newWriter(out io.Writer, name string, format Format, schema *arrow.Schema, mem memory.Allocator, flushEach bool,
	opt *options) (*Writer, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	w := &Writer{path: name, format: format, schema: schema, flushEach: flushEach}
	w.sink = &sink{w: out}
	// A file gets 1 MiB of buffer. A socket or pipe writer is flushed after every record, so a
	// larger buffer only costs its allocation and clearing for every writer, and papo serve opens
	// two a request (1 MiB: 9 % of its CPU on 256-token requests; 64 KiB: still half of the
	// bytes it allocated, a GC cycle every ~8 such requests). 8 KiB holds a record's message
	// header and small buffers; writes of its size or more pass it (largeWrites). One client
	// alternating two servers, 256-token requests: median 397/357 → 376/336 µs, p90 1.03/0.97
	// → 0.82/0.72 ms; 4,096-token requests 2.17/1.63 → 1.42/1.59 ms.
	size := 1 << 20
	if flushEach {
		size = 8 << 10
	}
	w.buf = bufio.NewWriterSize(w.sink, size)
	err := guard(func() error {
		var err error
		w.enc, err = newRecordWriter(format, &largeWrites{buf: w.buf, w: w.sink}, schema, mem, opt)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return w, nil
}

func newRecordWriter(format Format, w io.Writer, schema *arrow.Schema, mem memory.Allocator, opt *options) (RecordWriter, error) {
	switch format {
	case FormatIPCFile:
		return ipc.NewFileWriter(&positionWriter{w: w}, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	case FormatIPCStream:
		return ipc.NewWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem)), nil
	case FormatParquet:
		codec, err := opt.parquetCodec("write")
		if err != nil {
			return nil, err
		}
		return codec.WriteTable(w, schema, mem)
	case FormatCSV:
		return &csvWriter{w: csv.NewWriter(w), schema: schema}, nil
	case FormatJSONL:
		return newJSONLWriter(w, schema), nil
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

// Path is the destination path ("-" for standard output).
func (w *Writer) Path() string { return w.path }

// Format is the output format.
func (w *Writer) Format() Format { return w.format }

// Write appends a record; its schema must be the writer's. A failed Write spoils the output:
// later calls fail, and Close discards the file.
func (w *Writer) Write(rec arrow.Record) error {
	if w.done {
		return fmt.Errorf("%s: write after Close or Abort", w.path)
	}
	if w.err != nil {
		return w.err
	}
	var err error
	if !rec.Schema().Equal(w.schema) {
		err = fmt.Errorf("record schema %s does not match the output schema %s", rec.Schema(), w.schema)
	} else {
		err = guard(func() error { return w.enc.Write(rec) })
	}
	if err == nil && w.flushEach {
		err = w.buf.Flush()
	}
	if err != nil {
		w.err = fmt.Errorf("%s: write: %w", w.path, err)
		return w.err
	}
	return nil
}

// Close finishes the file (footer, flush) and moves it into place. After a failed Write, Close
// discards the file and returns the write's error.
func (w *Writer) Close() error {
	f, err := w.Finish()
	if err != nil || f == nil {
		return err
	}
	return f.Commit()
}

// Finish finishes the file (footer, flush, fsync) without moving it into place, and hands over
// the uncommitted file: the caller commits it, alone or with others in one transaction
// (atomicfile.CommitAll), or aborts it. The file is nil for standard output and NewWriter. After
// a failed Write, Finish discards the file and returns the write's error.
func (w *Writer) Finish() (*atomicfile.File, error) {
	if w.done {
		return nil, fmt.Errorf("%s: already closed or aborted", w.path)
	}
	if w.err != nil {
		err := w.err
		w.Abort()
		return nil, err
	}
	err := guard(w.enc.Close)
	if err == nil {
		err = w.buf.Flush()
	}
	if err == nil && w.file != nil {
		err = w.file.Sync()
	}
	if err != nil {
		w.Abort()
		return nil, fmt.Errorf("%s: close: %w", w.path, err)
	}
	w.done = true
	return w.file, nil
}

// Abort discards the output: the destination keeps what it had before Create. It is safe after
// Close (it does nothing then), so `defer w.Abort()` is the idiom. On standard output, Abort
// stops writing; what was written stays written.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	// Close the format writer into a discarding sink: that releases its buffers.
	w.sink.discard = true
	guard(w.enc.Close)
	if w.file != nil {
		return w.file.Abort()
	}
	return nil
}

// WriteSummary writes the per-step summary table to path (same extension rules and options as
// Create, atomic).
func WriteSummary(path string, rows []StepSummary, mem memory.Allocator, opts ...Option) error {
	f, err := FinishSummary(path, rows, mem, opts...)
	if err != nil || f == nil {
		return err
	}
	return f.Commit()
}

// FinishSummary writes the per-step summary table to path like WriteSummary but, as
// Writer.Finish, leaves the file uncommitted for the caller (nil for "-").
func FinishSummary(path string, rows []StepSummary, mem memory.Allocator, opts ...Option) (*atomicfile.File, error) {
	return finishTable(path, SummaryRecord(mem, rows), mem, opts)
}

// finishTable writes one record as a whole file at path (any output format), uncommitted; it
// releases rec.
func finishTable(path string, rec arrow.Record, mem memory.Allocator, opts []Option) (*atomicfile.File, error) {
	defer rec.Release()
	w, err := Create(path, rec.Schema(), mem, opts...)
	if err != nil {
		return nil, err
	}
	defer w.Abort()
	if err := w.Write(rec); err != nil {
		return nil, err
	}
	return w.Finish()
}

// csvWriter writes a header row, then one line per row. Nulls are empty fields; floats use the
// shortest representation that reads back to the same value.
type csvWriter struct {
	w      *csv.Writer
	schema *arrow.Schema
	header bool
	row    []string
}

func (c *csvWriter) writeHeader() error {
	if c.header {
		return nil
	}
	c.header = true
	names := make([]string, c.schema.NumFields())
	for i, f := range c.schema.Fields() {
		names[i] = f.Name
	}
	return c.w.Write(names)
}

func (c *csvWriter) Write(rec arrow.Record) error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	cols := rec.Columns()
	if cap(c.row) < len(cols) {
		c.row = make([]string, len(cols))
	}
	row := c.row[:len(cols)]
	for i := 0; i < int(rec.NumRows()); i++ {
		for j, col := range cols {
			row[j] = csvCell(col, i)
		}
		if err := c.w.Write(row); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}

func csvCell(col arrow.Array, i int) string {
	if col.IsNull(i) {
		return ""
	}
	switch a := col.(type) {
	case *array.Float32:
		return strconv.FormatFloat(float64(a.Value(i)), 'g', -1, 32)
	case *array.Float64:
		return strconv.FormatFloat(a.Value(i), 'g', -1, 64)
	case *array.Int64:
		return strconv.FormatInt(a.Value(i), 10)
	case *array.Int32:
		return strconv.FormatInt(int64(a.Value(i)), 10)
	case *array.String:
		return a.Value(i)
	case *array.LargeString:
		return a.Value(i)
	}
	return col.ValueStr(i)
}

func (c *csvWriter) Close() error {
	if err := c.writeHeader(); err != nil {
		return err
	}
	c.w.Flush()
	return c.w.Error()
}

// jsonlWriter writes one JSON object per row, keys in schema order. JSON has no NaN or
// infinity: they are written as the bare tokens NaN, Infinity and -Infinity, as Python's
// json.dumps writes them, so that DuckDB and pandas read the column as numbers (as strings they
// would make it a text column).
type jsonlWriter struct {
	w    io.Writer
	keys [][]byte // `"name":` per column
	line []byte
}

func newJSONLWriter(w io.Writer, schema *arrow.Schema) *jsonlWriter {
	j := &jsonlWriter{w: w}
	for _, f := range schema.Fields() {
		name, _ := json.Marshal(f.Name)
		j.keys = append(j.keys, append(name, ':'))
	}
	return j
}

func (j *jsonlWriter) Write(rec arrow.Record) error {
	cols := rec.Columns()
	for i := 0; i < int(rec.NumRows()); i++ {
		line := append(j.line[:0], '{')
		for c, col := range cols {
			if c > 0 {
				line = append(line, ',')
			}
			line = append(line, j.keys[c]...)
			var err error
			if line, err = appendJSONValue(line, col, i); err != nil {
				return fmt.Errorf("row %d, column %s: %w", i, rec.ColumnName(c), err)
			}
		}
		line = append(line, '}', '\n')
		j.line = line
		if _, err := j.w.Write(line); err != nil {
			return err
		}
	}
	return nil
}

func (j *jsonlWriter) Close() error { return nil }

func appendJSONFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

func appendJSONValue(b []byte, col arrow.Array, i int) ([]byte, error) {
	if col.IsNull(i) {
		return append(b, "null"...), nil
	}
	switch a := col.(type) {
	case *array.Float32:
		return appendJSONFloat(b, float64(a.Value(i)), 32), nil
	case *array.Float64:
		return appendJSONFloat(b, a.Value(i), 64), nil
	case *array.Int64:
		return strconv.AppendInt(b, a.Value(i), 10), nil
	case *array.Int32:
		return strconv.AppendInt(b, int64(a.Value(i)), 10), nil
	case *array.Boolean:
		return strconv.AppendBool(b, a.Value(i)), nil
	}
	v, err := json.Marshal(col.GetOneForMarshal(i))
	if err != nil {
		var unsupported *json.UnsupportedValueError
		if errors.As(err, &unsupported) {
			return nil, fmt.Errorf("%s value %s cannot be written as JSON: %w", col.DataType(), col.ValueStr(i), err)
		}
		return nil, err
	}
	return append(b, v...), nil
}
