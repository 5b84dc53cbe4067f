package papoio

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// Option configures a Reader.
type Option func(*options)

type options struct {
	maxBuffer   int64
	tempDir     string
	streamOnly  bool
	contract    func(*arrow.Schema) bool
	spoolMemory int // longest IPC file from a pipe held in memory (spoolInMemory; tests lower it)
}

// WithMaxBufferBytes caps any single buffer the reader allocates (a message body, a column's
// values). Lengths in Arrow IPC come from the input, so the cap is what stops a corrupt length
// from asking for terabytes. The default is the machine's physical memory; n ≤ 0 means no cap.
func WithMaxBufferBytes(n int64) Option { return func(o *options) { o.maxBuffer = n } }

// WithTempDir sets where an IPC file read from a non-seekable source (a pipe) is spooled; the
// default is os.TempDir() ($TMPDIR).
func WithTempDir(dir string) Option { return func(o *options) { o.tempDir = dir } }

// WithStreamOnly refuses an IPC file: on a connection that carries several requests, a
// stream's end-of-stream marker ends a request, and an IPC file has none.
func WithStreamOnly() Option { return func(o *options) { o.streamOnly = true } }

// WithContract decides from the schema whether the input must follow the input contract
// (docs/SCHEMA.md). When contract returns false, the Reader checks nothing of the schema and
// yields no batches: a record batch in the input is then an error. A server reads a request
// that carries only metadata (a rollback) that way.
func WithContract(contract func(*arrow.Schema) bool) Option {
	return func(o *options) { o.contract = contract }
}

func newOptions(opts []Option) options {
	o := options{maxBuffer: physicalMemory(), spoolMemory: spoolInMemory}
	if o.maxBuffer <= 0 {
		o.maxBuffer = 64 << 30
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxBuffer <= 0 {
		o.maxBuffer = math.MaxInt64
	}
	return o
}

// Reader reads token rows from an Arrow IPC file or stream, one record batch at a time, and
// checks them against docs/SCHEMA.md. It is an iterator in the manner of arrow-go's readers:
//
//	for r.Next() { use(r.Batch()) }
//	if err := r.Err(); err != nil { ... }
//
// A Reader is not safe for concurrent use.
type Reader struct {
	name  string
	mem   memory.Allocator // the caller's allocator behind the size limit
	limit int64            // largest single allocation (WithMaxBufferBytes)
	lay   *layout
	meta  Meta
	sch   *arrow.Schema

	file       *ipc.FileReader // IPC file with a valid footer
	footer     *fileIndex      // its verified footer
	stream     *ipc.Reader     // IPC stream, or an IPC file without a valid footer
	noFooter   error           // an IPC file without a usable footer, read as a stream; the footer's error
	noContract bool            // WithContract said no: metadata only, no batches
	mapped     bool            // file is a read-only memory map (openMapped)
	records    recordSource    // a Parquet, CSV or JSONL table (table.go)
	closers    []func() error
	index      int   // next batch index
	rows       int64 // rows before the next batch
	batch      *Batch
	err        error
	done       bool
	closed     bool
	closeError error
}

// Batch is one record batch of the input, checked and viewed as a polarity.Batch.
type Batch struct {
	Index    int          // batch number in the input (0-based; empty batches are counted, not yielded)
	FirstRow int64        // index of the batch's first row in the whole input
	Record   arrow.Record // the input record; owned by the Reader until Next (Retain to keep it)
	// Input views the Record without copying where the layout allows: float32 logits, float16
	// and bfloat16 bits, int32 token ids, float64 advantages, float32 old log-probabilities.
	// Columns stored in another type (int64 token ids, float32 advantages, ...) are converted
	// into fresh slices. The views stay valid as long as Record is.
	Input polarity.Batch
	Step  []int64 // nil when there is no step column

	file string
	lay  *layout
}

// Open opens an input file; "-" reads standard input. The format (IPC file, magic "ARROW1", or
// IPC stream) is detected from the first bytes. mem nil means memory.DefaultAllocator.
func Open(path string, mem memory.Allocator, opts ...Option) (*Reader, error) {
	if path == "-" {
		return NewReader(os.Stdin, "stdin", mem, opts...)
	}
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fileError(path, err, "cannot open")
	}
	var r *Reader
	if format := tableFormat(path); format != "" {
		r, err = newTableReader(f, path, format, mem, opts)
	} else {
		r, err = newReader(f, path, mem, opts)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	r.closers = append([]func() error{f.Close}, r.closers...) // closed last
	return r, nil
}

// NewReader reads an input from r; name is used in errors. An IPC file from a source that
// cannot seek (a pipe) is spooled to a temporary file, never held in memory. NewReader does not
// close r.
func NewReader(r io.Reader, name string, mem memory.Allocator, opts ...Option) (*Reader, error) {
	return newReader(r, name, mem, opts)
}

type readAtSeeker interface {
	io.ReaderAt
	io.Seeker
}

// seekable returns r as a random-access section from its current position, when it is one.
func seekable(r io.Reader) (*io.SectionReader, bool) {
	ras, ok := r.(readAtSeeker)
	if !ok {
		return nil, false
	}
	if f, ok := r.(*os.File); ok {
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			return nil, false
		}
	}
	start, err := ras.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, false
	}
	end, err := ras.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, false
	}
	if _, err := ras.Seek(start, io.SeekStart); err != nil {
		return nil, false
	}
	return io.NewSectionReader(ras, start, end-start), true
}

var parquetMagic = []byte("PAR1")

func newReader(src io.Reader, name string, mem memory.Allocator, optList []Option) (*Reader, error) {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	opt := newOptions(optList)
	r := &Reader{name: name, mem: &limitAllocator{mem: mem, limit: opt.maxBuffer}, limit: opt.maxBuffer}

	var head []byte
	var ra *io.SectionReader
	var br *bufio.Reader
	if sr, ok := seekable(src); ok {
		ra = sr
		head = make([]byte, 8)
		n, err := sr.ReadAt(head, 0)
		if err != nil && err != io.EOF {
			return nil, fileError(name, err, "read")
		}
		head = head[:n]
	} else {
		br = bufio.NewReaderSize(src, 1<<16)
		h, err := br.Peek(8)
		if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
			return nil, fileError(name, err, "read")
		}
		head = h
	}

	var err error
	switch {
	case len(head) == 0:
		return nil, fileError(name, nil, "empty input (0 bytes): want an Arrow IPC file or stream")
	case bytes.HasPrefix(head, ipc.Magic) && opt.streamOnly:
		err = fileError(name, nil, "this is an Arrow IPC file; this reader takes an IPC stream "+
			"(pyarrow.ipc.new_stream, apache-arrow RecordBatchStreamWriter)")
	case bytes.HasPrefix(head, ipc.Magic):
		if ra == nil {
			if ra, err = r.spool(br, opt); err != nil {
				r.Close()
				return nil, err
			}
		}
		if f, ok := src.(*os.File); ok && r.openMapped(f, ra) {
			break
		}
		err = r.openFile(ra)
	case len(head) >= 4 && binary.LittleEndian.Uint32(head) == continuation:
		if br == nil {
			br = bufio.NewReaderSize(ra, 1<<16)
		}
		if err = r.openStream(&streamMessages{r: br, limit: opt.maxBuffer}); err != nil {
			err = fileError(name, err, "")
		}
	case bytes.HasPrefix(head, parquetMagic):
		err = fileError(name, nil, "this is a Parquet file: give it a .parquet name (papo reads Parquet from "+
			"files, and Arrow IPC files or streams from anywhere)")
	default:
		err = fileError(name, nil, "not an Arrow IPC file or stream: it starts with % x; want \"ARROW1\" "+
			"(IPC file) or ff ff ff ff (IPC stream)", head)
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	return r.checkContract(opt)
}

// checkContract checks the schema read against the input contract (unless WithContract says
// otherwise); on failure the Reader is closed.
func (r *Reader) checkContract(opt options) (*Reader, error) {
	if opt.contract != nil && !opt.contract(r.sch) {
		r.noContract = true
		return r, nil
	}
	lay, meta, err := checkSchema(r.name, r.sch)
	if err != nil {
		r.Close()
		return nil, err
	}
	r.lay, r.meta = lay, meta
	return r, nil
}

// spoolInMemory is how much of an IPC file from a pipe is held in memory; a longer one is
// spooled to a temporary file. Small files (a trainer's request, a test) then cost no file
// system calls: creating and unlinking a temporary file took about 125 µs here, more than
// reading a small input.
const spoolInMemory = 4 << 20

// spool makes a non-seekable IPC file random-access, so that its footer can be read: in memory
// up to spoolInMemory bytes, in a temporary file in the WithTempDir directory beyond that.
func (r *Reader) spool(src io.Reader, opt options) (*io.SectionReader, error) {
	head, err := io.ReadAll(io.LimitReader(src, int64(opt.spoolMemory)+1))
	if err != nil {
		return nil, fileError(r.name, err, "reading an IPC file from a pipe")
	}
	if len(head) <= opt.spoolMemory {
		return io.NewSectionReader(bytes.NewReader(head), 0, int64(len(head))), nil
	}
	f, err := os.CreateTemp(opt.tempDir, "papo-spool-*.arrow")
	if err != nil {
		return nil, fileError(r.name, err, "spooling an IPC file from a pipe")
	}
	// Unlinked at once where the OS allows it, so a crash leaves nothing behind.
	removed := os.Remove(f.Name()) == nil
	r.closers = append(r.closers, func() error {
		err := f.Close()
		if !removed {
			os.Remove(f.Name())
		}
		return err
	})
	n, err := io.Copy(f, io.MultiReader(bytes.NewReader(head), src))
	if err != nil {
		return nil, fileError(r.name, err, "spooling an IPC file from a pipe to %s", f.Name())
	}
	return io.NewSectionReader(f, 0, n), nil
}

// guard runs an arrow-go call that may panic on corrupt input and turns the panic into an error.
func guard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if e, ok := p.(error); ok {
				err = fmt.Errorf("corrupt input: %w", e)
			} else {
				err = fmt.Errorf("corrupt input: %v", p)
			}
		}
	}()
	return fn()
}

// openMapped opens a regular IPC file with a valid footer through a read-only memory map
// (arrow-go's NewMappedFileReader): record batches are views of the mapping, so a batch of any
// size costs no allocation and no copy, and WithMaxBufferBytes does not apply to its body. It
// reports false where the file cannot be mapped (then openFile reads it with ReadAt) or has no
// valid footer (openFile reads it as a stream and reports the damage). The mapping is removed
// by Close: records and views of a mapped file must not be used after it. A file truncated by
// another process while it is mapped is not supported (the access would fault).
func (r *Reader) openMapped(f *os.File, ra *io.SectionReader) bool {
	if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != 0 || ra.Size() < 8 {
		return false // NewReader on a file positioned past its start: read from there with ReadAt
	}
	data, unmap, err := mapFile(f, ra.Size())
	if err != nil {
		return false
	}
	mra := io.NewSectionReader(bytes.NewReader(data), 0, int64(len(data)))
	idx, err := readFileIndex(mra, r.limit)
	if err != nil {
		unmap()
		return false
	}
	idx.bodyLimit = math.MaxInt64
	var fr *ipc.FileReader
	if err := guard(func() error {
		var err error
		fr, err = ipc.NewMappedFileReader(data, ipc.WithAllocator(r.mem))
		return err
	}); err != nil {
		unmap()
		return false
	}
	r.closers = append(r.closers, unmap, fr.Close) // fr closed first, then the mapping
	r.file, r.footer, r.sch, r.mapped = fr, idx, fr.Schema(), true
	return true
}

func (r *Reader) openFile(ra *io.SectionReader) error {
	idx, footerErr := readFileIndex(ra, r.limit)
	if footerErr == nil {
		var fr *ipc.FileReader
		err := guard(func() error {
			var err error
			fr, err = ipc.NewFileReader(ra, ipc.WithAllocator(r.mem))
			return err
		})
		if err != nil {
			return fileError(r.name, err, "reading the IPC file's footer")
		}
		r.file, r.footer, r.sch = fr, idx, fr.Schema()
		r.closers = append(r.closers, fr.Close)
		return nil
	}
	// No usable footer: most often a truncated file. Its body is an IPC stream after the 8-byte
	// magic (where the writer put a schema message: arrow-go and pyarrow do, the JavaScript
	// package does not), so read that; the batches before the damage are read, and the end is
	// an error.
	body := io.NewSectionReader(ra, 8, max(ra.Size()-8, 0))
	if err := r.openStream(&streamMessages{r: bufio.NewReaderSize(body, 1<<16), limit: r.limit}); err != nil {
		return fileError(r.name, footerErr, "not a readable Arrow IPC file (no valid footer, and no schema "+
			"after the file magic: %v); the footer", err)
	}
	r.noFooter = footerErr
	return nil
}

func (r *Reader) openStream(src *streamMessages) error {
	mr := newMessageReader(src, r.mem, r.limit)
	var sr *ipc.Reader
	err := guard(func() error {
		var err error
		sr, err = ipc.NewReaderFromMessageReader(mr, ipc.WithAllocator(r.mem))
		return err
	})
	if err != nil {
		mr.Release()
		return fmt.Errorf("reading the schema: %w", err)
	}
	r.stream, r.sch = sr, sr.Schema()
	r.closers = append(r.closers, func() error { sr.Release(); return nil })
	return nil
}

// Mapped reports whether the input is an IPC file read through a memory map (no copies).
func (r *Reader) Mapped() bool { return r.mapped }

// Schema is the input schema.
func (r *Reader) Schema() *arrow.Schema { return r.sch }

// Meta describes the input. For list<...> logits, V is 0 until the first row has been read.
func (r *Reader) Meta() Meta { return r.meta }

// Batch is the current batch, valid until the next call to Next.
func (r *Reader) Batch() *Batch { return r.batch }

// Err is the error that ended the iteration, nil at a clean end.
func (r *Reader) Err() error { return r.err }

// Close releases the current batch and the input. It is safe to call more than once.
func (r *Reader) Close() error {
	if r.closed {
		return r.closeError
	}
	r.closed = true
	r.releaseBatch()
	for i := len(r.closers) - 1; i >= 0; i-- {
		if err := r.closers[i](); err != nil && r.closeError == nil {
			r.closeError = fileError(r.name, err, "close")
		}
	}
	r.closers = nil
	r.mem.(*limitAllocator).drain()
	return r.closeError
}

func (r *Reader) releaseBatch() {
	if r.batch != nil {
		r.batch.Record.Release()
		r.batch = nil
	}
}

// Next advances to the next non-empty batch. It returns false at the end of the input or on an
// error (see Err). The previous batch's Record is released.
func (r *Reader) Next() bool {
	r.releaseBatch()
	rec, idx, ok := r.advance()
	if !ok {
		return false
	}
	if r.noContract {
		rec.Release()
		r.err = &InputError{File: r.name, Batch: idx, Row: -1, Msg: "this input carries metadata only " +
			"and must have no record batches; it has one"}
		return false
	}
	b, err := r.makeBatch(rec, idx)
	if err != nil {
		rec.Release()
		r.err = err
		return false
	}
	r.rows += rec.NumRows()
	r.batch = b
	return true
}

// advance returns the next non-empty record batch (owned by the caller) and its index, or false
// at the end of the input or on an error, which it sets as r.err: a read that fails, and an IPC
// file without a valid footer (cut short), whose batches were read as a stream. Reader.Next and
// OutputReader.Next both read through it.
func (r *Reader) advance() (arrow.Record, int, bool) {
	if r.err != nil || r.done || r.closed {
		return nil, 0, false
	}
	for {
		idx := r.index
		rec, err := r.nextRecord()
		if err != nil {
			msg := "reading the record batch"
			var notMessage *errNoContinuation
			var noEOS errNoEOS
			switch {
			case r.noFooter != nil && errors.As(err, &noEOS):
				msg = fmt.Sprintf("the IPC file ends after %d record batches without a valid footer: "+
					"it is truncated or its footer is corrupt; the footer", idx)
				err = r.noFooter
			case errors.As(err, &noEOS):
				msg = fmt.Sprintf("after %d complete record batches", idx)
			case r.noFooter != nil && idx > 0 && errors.As(err, &notMessage):
				// After complete batches, bytes that are not a message are the remains of a footer.
				msg = fmt.Sprintf("the IPC file's footer, after %d complete record batches, is cut or corrupt; the footer", idx)
				err = r.noFooter
			case r.noFooter != nil:
				msg = "the IPC file has no valid footer (it is truncated or corrupt); reading its record batch"
			}
			r.err = &InputError{File: r.name, Batch: idx, Row: -1, Msg: msg, Err: err}
			return nil, idx, false
		}
		if rec == nil {
			r.done = true
			if r.noFooter != nil {
				r.err = &InputError{File: r.name, Batch: idx, Row: -1, Err: r.noFooter,
					Msg: fmt.Sprintf("the IPC file ends after %d record batches without a valid footer: "+
						"it is truncated or its footer is corrupt; the footer", idx)}
			}
			return nil, idx, false
		}
		r.index++
		if rec.NumRows() == 0 {
			rec.Release()
			continue
		}
		return rec, idx, true
	}
}

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

// nextRecord returns the next record, owned by the caller, or nil at the end.
func (r *Reader) nextRecord() (arrow.Record, error) {
	if r.file != nil {
		if r.index >= len(r.footer.batches) {
			return nil, nil
		}
		if err := r.footer.verify(r.footer.batches[r.index]); err != nil {
			return nil, err
		}
	}
	var rec arrow.Record
	err := guard(func() error {
		if r.file != nil {
			var err error
			rec, err = r.file.RecordAt(r.index)
			return err
		}
		if r.records != nil {
			if r.records.Next() {
				rec = r.records.Record()
				rec.Retain()
				return nil
			}
			if err := r.records.Err(); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		}
		if r.stream.Next() {
			rec = r.stream.Record()
			rec.Retain()
			return nil
		}
		return r.stream.Err()
	})
	if err != nil {
		if rec != nil {
			rec.Release()
		}
		return nil, err
	}
	return rec, nil
}

// makeBatch checks rec against the schema rules and builds the polarity.Batch views.
func (r *Reader) makeBatch(rec arrow.Record, idx int) (*Batch, error) {
	lay := r.lay
	n := int(rec.NumRows())
	b := &Batch{Index: idx, FirstRow: r.rows, Record: rec, file: r.name, lay: lay}
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
		for i := range in.Mask {
			// A null mask counts as trained: a trainer that leaves it out means "no mask".
			in.Mask[i] = m.IsNull(i) || m.Value(i)
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
	bm := col.NullBitmapBytes()
	off := col.Data().Offset()
	for i := range valid {
		valid[i] = len(bm) == 0 || bitutil.BitIsSet(bm, off+i)
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
	for i, x := range in.Advantage {
		if (valid == nil || valid[i]) && (math.IsNaN(x) || math.IsInf(x, 0)) {
			return rowErr(ColAdvantage, i, "advantage is %v; want a finite number (null means no advantage)", x)
		}
	}
	in.AdvantageValid = valid
	return nil
}

func oldLogprobs(col arrow.Array, in *polarity.Batch, rowErr func(string, int, string, ...any) error) error {
	valid := validity(col)
	check := func(i int, x float64) error {
		if (valid == nil || valid[i]) && (math.IsNaN(x) || math.IsInf(x, 1)) {
			return rowErr(ColOldLogprob, i, "old_logprob is %v; want log π_old(a) ≤ 0 (null means absent)", x)
		}
		return nil
	}
	switch a := col.(type) {
	case *array.Float32:
		in.OldLogprob = a.Float32Values()
		for i, x := range in.OldLogprob {
			if err := check(i, float64(x)); err != nil {
				return err
			}
		}
	case *array.Float64:
		in.OldLogprob = make([]float32, a.Len())
		for i, x := range a.Float64Values() {
			if err := check(i, x); err != nil {
				return err
			}
			in.OldLogprob[i] = float32(x)
		}
	}
	in.OldLogprobValid = valid
	return nil
}

// Passthrough is the batch's record without the logits column: the input columns that go to the
// output unchanged, copied into memory from mem (nil: memory.DefaultAllocator). They are copied
// because the reader's columns are zero-copy slices of one message body: sharing them would keep
// the batch's logits alive for as long as the caller keeps the small columns (a whole training
// step, in papo's pipeline). A column of a type arrow-go cannot copy is shared instead. The
// caller releases the new record.
func (b *Batch) Passthrough(mem memory.Allocator) arrow.Record {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	cols := make([]arrow.Array, len(b.lay.passIdx))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i, idx := range b.lay.passIdx {
		col := b.Record.Column(idx)
		c, err := array.Concatenate([]arrow.Array{col}, mem)
		if err != nil {
			col.Retain()
			c = col
		}
		cols[i] = c
	}
	return array.NewRecord(b.lay.passSchema, cols, b.Record.NumRows())
}
