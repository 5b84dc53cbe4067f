package serve

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// MaxSchemaBytes caps a request's schema message (its metadata: the request keys, papo.config,
// papo.global_stats). It is checked from the message's length prefix, before the message is
// read, and the token is checked when the schema has been read, before any record batch.
const MaxSchemaBytes = 1 << 20

// checkSchemaLength peeks at the length prefix of a request's first message and refuses a
// schema over MaxSchemaBytes without reading it.
func checkSchemaLength(br *bufio.Reader) error {
	prefix, err := br.Peek(8)
	if err != nil || binary.LittleEndian.Uint32(prefix[:4]) != 0xffffffff {
		return nil // the reader reports what is wrong
	}
	if n := int32(binary.LittleEndian.Uint32(prefix[4:])); n > MaxSchemaBytes {
		return errorf(KindTooLarge, "the request's schema message is %d bytes, over the server's cap of %d bytes "+
			"(schema metadata: papo.config, papo.global_stats, ...)", n, MaxSchemaBytes)
	}
	return nil
}

// ipcMessage is one message of an IPC stream as framed on the wire.
type ipcMessage struct {
	meta    []byte // the metadata flatbuffer
	bodyLen int64
}

// readMessageHead reads the next message's prefix and metadata from r; at the end-of-stream
// marker it returns io.EOF. Metadata over metaLimit and bodies over bodyLimit are refused
// before they are read; the metadata is read as it arrives.
func readMessageHead(r io.Reader, metaLimit, bodyLimit int64) (msg ipcMessage, err error) {
	var prefix [8]byte
	if _, err := io.ReadFull(r, prefix[:4]); err != nil {
		return msg, fmt.Errorf("reading a message prefix: %w", err)
	}
	if binary.LittleEndian.Uint32(prefix[:4]) == 0 {
		return msg, io.EOF // the pre-1.0 end-of-stream marker
	}
	if _, err := io.ReadFull(r, prefix[4:]); err != nil {
		return msg, fmt.Errorf("reading a message length: %w", err)
	}
	metaLen := int64(int32(binary.LittleEndian.Uint32(prefix[4:])))
	switch cont := binary.LittleEndian.Uint32(prefix[:4]); {
	case cont != 0xffffffff:
		return msg, fmt.Errorf("found 0x%08x where a message must start with 0xffffffff", cont)
	case metaLen == 0:
		return msg, io.EOF
	case metaLen < 0 || metaLen > metaLimit:
		return msg, fmt.Errorf("message metadata of %d bytes: want 1 to %d", metaLen, metaLimit)
	}
	var meta bytes.Buffer
	if n, err := meta.ReadFrom(io.LimitReader(r, metaLen)); err != nil || n != metaLen {
		return msg, fmt.Errorf("message metadata cut after %d of %d bytes: %w", n, metaLen, io.ErrUnexpectedEOF)
	}
	msg.meta = meta.Bytes()
	defer func() {
		if p := recover(); p != nil { // arrow-go reads the flatbuffer without verifying it
			err = fmt.Errorf("corrupt message metadata: %v", p)
		}
	}()
	m := ipc.NewMessage(memory.NewBufferBytes(msg.meta), memory.NewBufferBytes(nil))
	msg.bodyLen = m.BodyLen()
	m.Release()
	if msg.bodyLen < 0 || msg.bodyLen > bodyLimit {
		return msg, fmt.Errorf("message body of %d bytes: want 0 to %d", msg.bodyLen, bodyLimit)
	}
	return msg, nil
}

// skipStream reads and drops the rest of an IPC stream up to its end-of-stream marker (the
// request's answer is known already); nothing is held but one message's metadata.
func skipStream(r io.Reader, bodyLimit int64) error {
	for {
		msg, err := readMessageHead(r, MaxSchemaBytes, bodyLimit)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, r, msg.bodyLen); err != nil {
			return fmt.Errorf("message body cut: %w", err)
		}
	}
}
