package papoio

import (
	"encoding/binary"
	"fmt"
)

// A small flatbuffers verifier for the Arrow IPC metadata (Message.fbs, Schema.fbs, File.fbs).
//
// arrow-go trusts metadata: a corrupt vector length in a schema becomes make([]T, n) with n
// up to 2³², which the Go runtime answers with a fatal "out of memory" that no recover catches.
// Every message is therefore checked here before arrow-go sees it: each table, vector and string
// that arrow-go reads must lie inside the buffer. Values are not checked (arrow-go and the
// reader's own checks do that); only the shape.

type fbBuf []byte

func (b fbBuf) u8(at int64) (uint8, bool) {
	if at < 0 || at+1 > int64(len(b)) {
		return 0, false
	}
	return b[at], true
}

func (b fbBuf) u16(at int64) (uint16, bool) {
	if at < 0 || at+2 > int64(len(b)) {
		return 0, false
	}
	return binary.LittleEndian.Uint16(b[at:]), true
}

func (b fbBuf) u32(at int64) (uint32, bool) {
	if at < 0 || at+4 > int64(len(b)) {
		return 0, false
	}
	return binary.LittleEndian.Uint32(b[at:]), true
}

func (b fbBuf) i64(at int64) (int64, bool) {
	if at < 0 || at+8 > int64(len(b)) {
		return 0, false
	}
	return int64(binary.LittleEndian.Uint64(b[at:])), true
}

type fbTable struct {
	b      fbBuf
	pos    int64 // table start
	vt     int64 // vtable start
	vtSize int64
}

var errFlatbuffer = fmt.Errorf("metadata is not a valid Arrow flatbuffer")

func fbErr(what string) error { return fmt.Errorf("%w: %s", errFlatbuffer, what) }

func fbRoot(b fbBuf) (fbTable, error) {
	root, ok := b.u32(0)
	if !ok {
		return fbTable{}, fbErr("shorter than 4 bytes")
	}
	return fbTableAt(b, int64(root))
}

func fbTableAt(b fbBuf, pos int64) (fbTable, error) {
	soff, ok := b.u32(pos)
	if !ok {
		return fbTable{}, fbErr("table outside the buffer")
	}
	vt := pos - int64(int32(soff))
	vtSize, ok := b.u16(vt)
	if !ok || vtSize < 4 || vtSize%2 != 0 || vt+int64(vtSize) > int64(len(b)) {
		return fbTable{}, fbErr("vtable outside the buffer")
	}
	tSize, _ := b.u16(vt + 2)
	if pos+int64(tSize) > int64(len(b)) {
		return fbTable{}, fbErr("table runs past the buffer")
	}
	return fbTable{b: b, pos: pos, vt: vt, vtSize: int64(vtSize)}, nil
}

// field is the position of field id, 0 when absent. size is the width of an inline value.
func (t fbTable) field(id int, size int64) (int64, error) {
	slot := 4 + 2*int64(id)
	if slot+2 > t.vtSize {
		return 0, nil
	}
	o, _ := t.b.u16(t.vt + slot)
	if o == 0 {
		return 0, nil
	}
	at := t.pos + int64(o)
	if at+size > int64(len(t.b)) {
		return 0, fbErr(fmt.Sprintf("field %d outside the buffer", id))
	}
	return at, nil
}

func (t fbTable) u8(id int) (uint8, error) {
	at, err := t.field(id, 1)
	if err != nil || at == 0 {
		return 0, err
	}
	v, _ := t.b.u8(at)
	return v, nil
}

func (t fbTable) i64(id int) (int64, error) {
	at, err := t.field(id, 8)
	if err != nil || at == 0 {
		return 0, err
	}
	v, _ := t.b.i64(at)
	return v, nil
}

// ref follows the offset in field id; 0 when the field is absent.
func (t fbTable) ref(id int) (int64, error) {
	at, err := t.field(id, 4)
	if err != nil || at == 0 {
		return 0, err
	}
	off, _ := t.b.u32(at)
	return at + int64(off), nil
}

func (t fbTable) table(id int) (fbTable, bool, error) {
	at, err := t.ref(id)
	if err != nil || at == 0 {
		return fbTable{}, false, err
	}
	sub, err := fbTableAt(t.b, at)
	return sub, err == nil, err
}

// vector checks the vector in field id (elements of elemSize bytes) and returns where its
// elements start and how many there are.
func (t fbTable) vector(id int, elemSize int64) (start, n int64, err error) {
	at, err := t.ref(id)
	if err != nil || at == 0 {
		return 0, 0, err
	}
	l, ok := t.b.u32(at)
	if !ok {
		return 0, 0, fbErr(fmt.Sprintf("vector %d outside the buffer", id))
	}
	start, n = at+4, int64(l)
	if start+n*elemSize > int64(len(t.b)) {
		return 0, 0, fbErr(fmt.Sprintf("vector %d of %d elements runs past the buffer", id, n))
	}
	return start, n, nil
}

// tables checks a vector of tables and calls fn on each.
func (t fbTable) tables(id int, fn func(fbTable) error) error {
	start, n, err := t.vector(id, 4)
	if err != nil {
		return err
	}
	for i := int64(0); i < n; i++ {
		at := start + 4*i
		off, _ := t.b.u32(at)
		sub, err := fbTableAt(t.b, at+int64(off))
		if err != nil {
			return err
		}
		if err := fn(sub); err != nil {
			return err
		}
	}
	return nil
}

func (t fbTable) str(id int) error {
	_, _, err := t.vector(id, 1)
	return err
}

func verifyKeyValues(t fbTable, id int) error {
	return t.tables(id, func(kv fbTable) error {
		if err := kv.str(0); err != nil {
			return err
		}
		return kv.str(1)
	})
}

// Message header types (Message.fbs MessageHeader).
const (
	fbHeaderSchema          = 1
	fbHeaderDictionaryBatch = 2
	fbHeaderRecordBatch     = 3
)

// verifyMessage checks a Message flatbuffer and returns its header type and body length.
func verifyMessage(b []byte) (header uint8, bodyLen int64, err error) {
	msg, err := fbRoot(b)
	if err != nil {
		return 0, 0, err
	}
	if header, err = msg.u8(1); err != nil {
		return 0, 0, err
	}
	if bodyLen, err = msg.i64(3); err != nil {
		return 0, 0, err
	}
	if bodyLen < 0 {
		return 0, 0, fbErr(fmt.Sprintf("negative body length %d", bodyLen))
	}
	if err := verifyKeyValues(msg, 4); err != nil {
		return 0, 0, err
	}
	h, ok, err := msg.table(2)
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, fbErr("message without a header")
	}
	switch header {
	case fbHeaderSchema:
		err = verifySchema(h)
	case fbHeaderDictionaryBatch:
		if _, err = h.i64(0); err != nil {
			break
		}
		data, ok, e := h.table(1)
		if err = e; err == nil && ok {
			err = verifyRecordBatch(data)
		}
	case fbHeaderRecordBatch:
		err = verifyRecordBatch(h)
	default:
		err = fmt.Errorf("message type %d: want a schema, dictionary batch or record batch", header)
	}
	return header, bodyLen, err
}

func verifySchema(s fbTable) error {
	if err := s.tables(1, func(f fbTable) error { return verifyField(f, 0) }); err != nil {
		return err
	}
	if err := verifyKeyValues(s, 2); err != nil {
		return err
	}
	_, _, err := s.vector(3, 8)
	return err
}

const fbTypeUnion, fbTypeTimestamp = 14, 10

func verifyField(f fbTable, depth int) error {
	if depth > maxNesting {
		return fbErr(fmt.Sprintf("fields nested deeper than %d", maxNesting))
	}
	if err := f.str(0); err != nil {
		return err
	}
	typeType, err := f.u8(2)
	if err != nil {
		return err
	}
	typ, ok, err := f.table(3)
	if err != nil {
		return err
	}
	if ok {
		switch typeType {
		case fbTypeUnion:
			if _, _, err := typ.vector(1, 4); err != nil {
				return err
			}
		case fbTypeTimestamp:
			if err := typ.str(1); err != nil {
				return err
			}
		}
	}
	dict, ok, err := f.table(4)
	if err != nil {
		return err
	}
	if ok {
		if _, _, err := dict.table(1); err != nil {
			return err
		}
	}
	if err := f.tables(5, func(c fbTable) error { return verifyField(c, depth+1) }); err != nil {
		return err
	}
	return verifyKeyValues(f, 6)
}

func verifyRecordBatch(rb fbTable) error {
	if _, err := rb.i64(0); err != nil {
		return err
	}
	if _, _, err := rb.vector(1, 16); err != nil { // FieldNode structs
		return err
	}
	_, nbuf, err := rb.vector(2, 16) // Buffer structs
	if err != nil {
		return err
	}
	if _, _, err := rb.table(3); err != nil {
		return err
	}
	start, n, err := rb.vector(4, 8)
	if err != nil {
		return err
	}
	for i := int64(0); i < n; i++ {
		c, _ := rb.b.i64(start + 8*i)
		if c < 0 || c > nbuf {
			return fbErr(fmt.Sprintf("variadic buffer count %d with %d buffers", c, nbuf))
		}
	}
	return nil
}

// fileBlock is a File.fbs Block: where a message lies in an IPC file.
type fileBlock struct {
	offset  int64
	metaLen int32
	bodyLen int64
}

// verifyFooter checks a Footer flatbuffer and returns its dictionary and record batch blocks.
func verifyFooter(b []byte) (dicts, batches []fileBlock, err error) {
	footer, err := fbRoot(b)
	if err != nil {
		return nil, nil, err
	}
	schema, ok, err := footer.table(1)
	if err != nil {
		return nil, nil, err
	}
	if ok {
		if err := verifySchema(schema); err != nil {
			return nil, nil, err
		}
	}
	blocks := func(id int) ([]fileBlock, error) {
		start, n, err := footer.vector(id, 24)
		if err != nil {
			return nil, err
		}
		out := make([]fileBlock, n)
		for i := range out {
			at := start + 24*int64(i)
			out[i].offset, _ = fbBuf(b).i64(at)
			m, _ := fbBuf(b).u32(at + 8)
			out[i].metaLen = int32(m)
			out[i].bodyLen, _ = fbBuf(b).i64(at + 16)
		}
		return out, nil
	}
	if dicts, err = blocks(2); err != nil {
		return nil, nil, err
	}
	if batches, err = blocks(3); err != nil {
		return nil, nil, err
	}
	return dicts, batches, verifyKeyValues(footer, 4)
}
