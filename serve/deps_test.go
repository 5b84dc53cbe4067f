package serve

import (
	"testing"

	"github.com/entropy-polarity/papo/internal/deptest"
)

// TestNoParquetDependency: the server reads and writes Arrow IPC streams and Flight (which
// brings gRPC, legitimately) but not Parquet.
func TestNoParquetDependency(t *testing.T) {
	deptest.Forbid(t, "github.com/entropy-polarity/papo/serve", "/parquet")
}
