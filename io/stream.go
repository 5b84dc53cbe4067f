package papoio

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

const continuation = 0xFFFFFFFF

// bodyChunk is the first allocation for a stream message's body, which then doubles as the
// bytes arrive.
const bodyChunk = 1 << 20

// errNoContinuation: the bytes where a message should start are not a message.
type errNoContinuation struct{ found uint32 }

func (e *errNoContinuation) Error() string {
	return fmt.Sprintf("found 0x%08x where a message must start with the continuation marker 0xffffffff: "+
		"the stream is corrupt (or older than Arrow 0.15, which is not supported)", e.found)
}

// messageReader hands arrow-go's ipc.Reader one message at a time after checking it. It
// replaces arrow-go's own message reader for three reasons: a stream cut inside a message is an
// error (arrow-go takes a cut right after a length prefix for a clean end), every flatbuffer
// is verified (see flatbuf.go), and lengths are checked against the allocation limit before
// anything is allocated.
type messageReader struct {
	src      *streamMessages
	mem      memory.Allocator
	limit    int64
	refCount atomic.Int64
	msg      *ipc.Message
}

func newMessageReader(src *streamMessages, mem memory.Allocator, limit int64) *messageReader {
	m := &messageReader{src: src, mem: mem, limit: limit}
	m.refCount.Store(1)
	return m
}

func (m *messageReader) Retain() { m.refCount.Add(1) }

func (m *messageReader) Release() {
	if m.refCount.Add(-1) == 0 && m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
}

// Message returns the next message, valid until the next call, or io.EOF at a clean end.
func (m *messageReader) Message() (*ipc.Message, error) {
	if m.msg != nil {
		m.msg.Release()
		m.msg = nil
	}
	metaBytes, readBody, err := m.src.next()
	if err != nil {
		return nil, err
	}
	_, bodyLen, err := verifyMessage(metaBytes)
	if err != nil {
		return nil, err
	}
	if bodyLen > m.limit {
		return nil, &errBufferLimit{size: bodyLen, limit: m.limit, streamBody: true}
	}
	if la, ok := m.mem.(*limitAllocator); ok {
		if b := la.takePooled(int(bodyLen)); b != nil {
			body := memory.NewBufferWithAllocator(b, la) // Release gives b back to the pool
			defer body.Release()
			if err := readBody(b, 0, int(bodyLen)); err != nil {
				return nil, err
			}
			meta := memory.NewBufferBytes(metaBytes)
			defer meta.Release()
			m.msg = ipc.NewMessage(meta, body)
			return m.msg, nil
		}
	}
	body := memory.NewResizableBuffer(m.mem)
	defer body.Release()
	// The body grows with the bytes that arrive (bodyChunk, then doubling): a length that a
	// client declares but does not send costs at most twice what it sent (45 bytes declaring
	// 1 GiB reserved 1 GiB before). The doubling's copies add up to less than one body.
	for have := 0; have < int(bodyLen); {
		next := int(bodyLen)
		if next > bodyChunk {
			next = min(next, max(bodyChunk, 2*have))
		}
		if err := resize(body, next); err != nil {
			return nil, err
		}
		if err := readBody(body.Bytes()[have:next], have, int(bodyLen)); err != nil {
			return nil, err
		}
		have = next
	}
	meta := memory.NewBufferBytes(metaBytes)
	defer meta.Release()
	m.msg = ipc.NewMessage(meta, body)
	return m.msg, nil
}

// errNoEOS: the bytes end between two messages, without the end-of-stream marker. The format
// lets a writer omit the marker, but every writer papo meets (arrow-go, pyarrow, the JavaScript
// package) writes it on close, so a stream without it is one whose writer died or whose copy was
// cut: reading it as complete would hand over a prefix of the data as the whole.
type errNoEOS struct{}

func (errNoEOS) Error() string {
	return "the stream ends between two messages without its end-of-stream marker (ff ff ff ff 00 00 00 00): " +
		"it is cut short"
}

// streamMessages splits an IPC stream into messages: next returns a message's metadata
// flatbuffer and a function that reads its body into a buffer. At the end-of-stream marker (8
// bytes, ff ff ff ff 00 00 00 00, or 4 zero bytes as before Arrow 0.15) it returns io.EOF. The
// bytes ending between two messages, before the marker, is an *errNoEOS; a stream cut anywhere
// else is io.ErrUnexpectedEOF.
type streamMessages struct {
	r     io.Reader
	limit int64
	eos   bool
}

func (s *streamMessages) next() ([]byte, func(b []byte, off, total int) error, error) {
	if s.eos {
		return nil, nil, io.EOF
	}
	var prefix [8]byte
	n, err := io.ReadFull(s.r, prefix[:4])
	if n == 0 && err == io.EOF {
		return nil, nil, errNoEOS{}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("truncated message prefix (%d of 4 bytes): %w", n, unexpected(err))
	}
	cont := binary.LittleEndian.Uint32(prefix[:4])
	if cont == 0 {
		// Pre-1.0 end-of-stream marker: four zero bytes.
		s.eos = true
		return nil, nil, io.EOF
	}
	if cont != continuation {
		return nil, nil, &errNoContinuation{found: cont}
	}
	if n, err := io.ReadFull(s.r, prefix[4:]); err != nil {
		return nil, nil, fmt.Errorf("truncated message length (%d of 4 bytes): %w", n, unexpected(err))
	}
	metaLen := int32(binary.LittleEndian.Uint32(prefix[4:]))
	if metaLen == 0 {
		s.eos = true
		return nil, nil, io.EOF
	}
	if metaLen < 0 {
		return nil, nil, fmt.Errorf("message metadata length %d is negative: the stream is corrupt", metaLen)
	}
	if int64(metaLen) > s.limit {
		return nil, nil, &errBufferLimit{size: int64(metaLen), limit: s.limit}
	}
	// Read through a bytes.Buffer, so that a corrupt length allocates only as much as the
	// bytes that actually arrive.
	var meta bytes.Buffer
	if _, err := meta.ReadFrom(io.LimitReader(s.r, int64(metaLen))); err != nil {
		return nil, nil, fmt.Errorf("reading message metadata: %w", err)
	}
	if meta.Len() != int(metaLen) {
		return nil, nil, fmt.Errorf("truncated message metadata (%d of %d bytes): %w", meta.Len(), metaLen, io.ErrUnexpectedEOF)
	}
	body := func(b []byte, off, total int) error {
		if n, err := io.ReadFull(s.r, b); err != nil {
			return fmt.Errorf("truncated message body (%d of %d bytes): %w", off+n, total, unexpected(err))
		}
		return nil
	}
	return meta.Bytes(), body, nil
}

// fileIndex is the verified footer of an IPC file: where its dictionaries and record batches lie.
// arrow-go's FileReader reads them, after verify has checked each message's metadata.
type fileIndex struct {
	ra    *io.SectionReader
	end   int64 // where the footer starts: no block may reach past it
	limit int64 // largest metadata, and body unless bodyLimit is set
	// bodyLimit, when not 0, replaces limit for message bodies: a memory-mapped file's bodies
	// are views of the mapping, not allocations.
	bodyLimit int64
	dicts     []fileBlock
	batches   []fileBlock
}

// readFileIndex reads and verifies the footer of the IPC file in ra.
func readFileIndex(ra *io.SectionReader, limit int64) (*fileIndex, error) {
	size := ra.Size()
	const trailer = 4 + 6 // footer length, "ARROW1"
	if size < 8+trailer {
		return nil, fmt.Errorf("%d bytes is too short for an IPC file (magic, footer)", size)
	}
	var tail [trailer]byte
	if _, err := ra.ReadAt(tail[:], size-trailer); err != nil {
		return nil, fmt.Errorf("reading the footer: %w", err)
	}
	if !bytes.Equal(tail[4:], ipc.Magic) {
		return nil, fmt.Errorf("the file does not end with the magic \"ARROW1\"")
	}
	footerLen := int64(int32(binary.LittleEndian.Uint32(tail[:4])))
	end := size - trailer - footerLen
	if footerLen <= 0 || end < 8 || footerLen > limit {
		return nil, fmt.Errorf("footer length %d does not fit a file of %d bytes", footerLen, size)
	}
	footer := make([]byte, footerLen)
	if _, err := ra.ReadAt(footer, end); err != nil {
		return nil, fmt.Errorf("reading the footer: %w", err)
	}
	dicts, batches, err := verifyFooter(footer)
	if err != nil {
		return nil, fmt.Errorf("footer: %w", err)
	}
	idx := &fileIndex{ra: ra, end: end, limit: limit, dicts: dicts, batches: batches}
	for i, b := range dicts {
		if err := idx.verify(b); err != nil {
			return nil, fmt.Errorf("dictionary %d: %w", i, err)
		}
	}
	return idx, nil
}

// rows is the number of rows of the file's record batches, from their messages' metadata,
// each verified as verify does (the error is verify's, or a message that is not a record batch).
func (f *fileIndex) rows() (int64, error) {
	var total int64
	for _, b := range f.batches {
		msg, header, err := f.message(b)
		if err != nil {
			return 0, err
		}
		if header != fbHeaderRecordBatch {
			return 0, fmt.Errorf("message at byte %d: not a record batch", b.offset)
		}
		m, err := fbRoot(msg)
		if err != nil {
			return 0, err
		}
		rb, _, err := m.table(2) // verifyMessage found it
		if err != nil {
			return 0, err
		}
		n, err := rb.i64(0)
		if err != nil || n < 0 || n > math.MaxInt64-total {
			return 0, fmt.Errorf("message at byte %d: no row count that adds up", b.offset)
		}
		total += n
	}
	return total, nil
}

// verify checks that block b lies inside the file and holds a valid message whose body fits it.
func (f *fileIndex) verify(b fileBlock) error {
	_, _, err := f.message(b)
	return err
}

// message is block b's message flatbuffer (its prefix left out) and its header type, verified
// as verify says.
func (f *fileIndex) message(b fileBlock) (msg []byte, header uint8, err error) {
	if b.offset < 8 || b.offset%8 != 0 || b.metaLen <= 0 || b.metaLen%8 != 0 || b.bodyLen < 0 || b.bodyLen%8 != 0 ||
		b.offset > f.end || int64(b.metaLen) > f.end-b.offset || b.bodyLen > f.end-b.offset-int64(b.metaLen) {
		return nil, 0, fmt.Errorf("the footer places it at byte %d (%d bytes of metadata, %d of body): "+
			"want 8-byte aligned parts inside the %d bytes before the footer", b.offset, b.metaLen, b.bodyLen, f.end)
	}
	if int64(b.metaLen) > f.limit {
		return nil, 0, &errBufferLimit{size: int64(b.metaLen), limit: f.limit}
	}
	if bl := cmp.Or(f.bodyLimit, f.limit); b.bodyLen > bl {
		return nil, 0, &errBufferLimit{size: b.bodyLen, limit: bl}
	}
	meta := make([]byte, b.metaLen)
	if _, err := f.ra.ReadAt(meta, b.offset); err != nil {
		return nil, 0, fmt.Errorf("reading message metadata at byte %d: %w", b.offset, err)
	}
	// The block's metadata length includes the prefix: continuation marker and length, or (before
	// Arrow 0.15) the length alone.
	skip := 4
	if binary.LittleEndian.Uint32(meta) == continuation {
		skip = 8
	}
	if len(meta) < skip+4 {
		return nil, 0, fmt.Errorf("message metadata of %d bytes at byte %d is shorter than its prefix", len(meta), b.offset)
	}
	header, bodyLen, err := verifyMessage(meta[skip:])
	if err != nil {
		return nil, 0, fmt.Errorf("message at byte %d: %w", b.offset, err)
	}
	if bodyLen > b.bodyLen {
		return nil, 0, fmt.Errorf("message at byte %d declares a body of %d bytes; the footer gives it %d", b.offset, bodyLen, b.bodyLen)
	}
	return meta[skip:], header, nil
}

// resize grows a buffer, turning the allocation limit's panic into an error.
func resize(b *memory.Buffer, n int) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if e, ok := p.(*errBufferLimit); ok {
				err = e
				return
			}
			panic(p)
		}
	}()
	b.Resize(n)
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
