package papoio

// Opening an input: Open and NewReader, the format detected from the first bytes, an IPC file
// from a pipe spooled, an IPC file memory-mapped or read with ReadAt, an IPC stream, and the
// schema checked against the contract.

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

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

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
	r := &Reader{name: name, mem: newLimitAllocator(mem, opt.maxBuffer, opt.bodies), limit: opt.maxBuffer}

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
