package papoio

// Options: Option and the With* functions, for the Reader (Open, NewReader) and, of them only
// WithTables, for the writers (Create, NewWriter and the table writers).

import (
	"math"

	"github.com/apache/arrow-go/v18/arrow"
)

// Option configures a Reader, or a Writer: the writers use WithTables and ignore the others.
type Option func(*options)

type options struct {
	maxBuffer   int64
	tempDir     string
	streamOnly  bool
	contract    func(*arrow.Schema) bool
	spoolMemory int          // longest IPC file from a pipe held in memory (spoolInMemory; tests lower it)
	tables      []TableCodec // WithTables
	bodies      *BufferPool  // WithBufferPool
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

// WithTables gives codecs for table formats that papoio does not implement itself (io/parquet's
// Codec for Parquet; see TableCodec). A later codec for a format replaces an earlier one.
func WithTables(codecs ...TableCodec) Option {
	return func(o *options) { o.tables = append(o.tables, codecs...) }
}

// WithBufferPool has the Reader take its large buffers from p and give them back to it, for the
// Readers that come after (BufferPool): a server passes one pool to the Reader of every
// request. The Reader allocates from p's allocator then, not from the one given to it.
func WithBufferPool(p *BufferPool) Option { return func(o *options) { o.bodies = p } }

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
