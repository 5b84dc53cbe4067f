package synth

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
)

// WriteFile generates the data set of g into path (an Arrow IPC file or stream, by its
// extension; "-" is a stream on standard output), atomically: on an error nothing appears at
// path. It returns the number of token rows written. It writes through papoio without a
// Parquet codec, so that synth does not pull in Parquet: a .parquet path is an error.
func WriteFile(path string, g *Generator, mem memory.Allocator) (int64, error) {
	cfg := g.Config()
	schema := papoio.InputSchema(cfg.V, cfg.Dtype, cfg.Columns(), cfg.Metadata())
	w, err := papoio.Create(path, schema, mem)
	if err != nil {
		return 0, err
	}
	defer w.Abort()
	var rows int64
	for g.Next() {
		rec, err := papoio.BuildInput(mem, schema, g.Columns())
		if err != nil {
			return 0, fmt.Errorf("synth: %s: %w", path, err)
		}
		err = w.Write(rec)
		rows += rec.NumRows()
		rec.Release()
		if err != nil {
			return 0, err
		}
	}
	if err := w.Close(); err != nil {
		return 0, err
	}
	return rows, nil
}
