package papoio

// The seam for table formats that papoio does not implement itself: TableCodec, what it reads
// and writes (RecordSource, RecordWriter), and the error for a format without a codec.

import (
	"fmt"
	"io"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TableCodec reads and writes one table format that papoio does not implement itself, given
// with WithTables. papoio reads and writes Arrow IPC, CSV and JSONL; Parquet, whose encoder and
// decoder (arrow-go's pqarrow) pull in gRPC and Arrow Flight, has its codec in package
// io/parquet, and package io/files opens and creates files with it. Without a codec, a .parquet
// path is an error that names the file and those two packages. A codec's methods use Arrow and
// standard types only (RecordSource and RecordWriter are aliases of interface types), so its
// package need not import papoio: io/parquet does not.
type TableCodec interface {
	// Name is the format's name, the string of its Format ("parquet" for FormatParquet).
	Name() string
	// ReadTable reads the table in f, a regular file positioned at its start, allocating from
	// mem. The source's Schema carries the file's schema metadata (papo.temperature and the
	// other keys of docs/SCHEMA.md).
	ReadTable(f *os.File, mem memory.Allocator) (RecordSource, error)
	// WriteTable starts a table with schema on w, allocating from mem.
	WriteTable(w io.Writer, schema *arrow.Schema, mem memory.Allocator) (RecordWriter, error)
}

// RecordSource is a table that a TableCodec reads: its schema, then its record batches in the
// manner of arrow-go's readers (Next, then Record, valid until the next Next; Err at the end).
// Close releases it and what it holds of the file; the Reader closes the file itself.
type RecordSource = interface {
	Schema() *arrow.Schema
	Next() bool
	Record() arrow.Record
	Err() error
	Close() error
}

// RecordWriter encodes records in one format: Close finishes the format (a footer) without
// closing what it writes to.
type RecordWriter = interface {
	Write(rec arrow.Record) error
	Close() error
}

// parquetCodec is the Parquet codec given with WithTables, or an error saying that papoio does
// not do it itself (doing: "read", "write") and which packages do.
func (o *options) parquetCodec(doing string) (TableCodec, error) {
	for i := len(o.tables) - 1; i >= 0; i-- {
		if o.tables[i].Name() == string(FormatParquet) {
			return o.tables[i], nil
		}
	}
	return nil, fmt.Errorf("papoio does not %s Parquet itself: package github.com/entropy-polarity/papo/io/files "+
		"does, or papoio.WithTables(parquet.Codec{}) with package github.com/entropy-polarity/papo/io/parquet", doing)
}
