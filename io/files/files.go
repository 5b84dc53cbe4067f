package files

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/atomicfile"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/parquet"
)

// Tables is the option that gives papoio every table codec papo has: Parquet.
func Tables() papoio.Option { return papoio.WithTables(parquet.Codec{}) }

// with is opts after Tables, so that a codec among opts replaces papo's.
func with(opts []papoio.Option) []papoio.Option {
	return append([]papoio.Option{Tables()}, opts...)
}

// Open is papoio.Open with Tables.
func Open(path string, mem memory.Allocator, opts ...papoio.Option) (*papoio.Reader, error) {
	return papoio.Open(path, mem, with(opts)...)
}

// OpenOutput is papoio.OpenOutput with Tables.
func OpenOutput(path string, mem memory.Allocator, opts ...papoio.Option) (*papoio.OutputReader, error) {
	return papoio.OpenOutput(path, mem, with(opts)...)
}

// Create is papoio.Create with Tables.
func Create(path string, schema *arrow.Schema, mem memory.Allocator, opts ...papoio.Option) (*papoio.Writer, error) {
	return papoio.Create(path, schema, mem, with(opts)...)
}

// FinishSummary is papoio.FinishSummary with Tables.
func FinishSummary(path string, rows []papoio.StepSummary, mem memory.Allocator, opts ...papoio.Option) (*atomicfile.File, error) {
	return papoio.FinishSummary(path, rows, mem, with(opts)...)
}

// FinishPartials is papoio.FinishPartials with Tables.
func FinishPartials(path string, rows []papoio.StepPartials, mem memory.Allocator, opts ...papoio.Option) (*atomicfile.File, error) {
	return papoio.FinishPartials(path, rows, mem, with(opts)...)
}

// ReadPartials is papoio.ReadPartials with Tables.
func ReadPartials(path string, opts ...papoio.Option) ([]papoio.StepPartials, error) {
	return papoio.ReadPartials(path, with(opts)...)
}
