package synth

import (
	"testing"

	"github.com/entropy-polarity/papo/internal/deptest"
)

// TestNoParquetDependency: the generator writes Arrow IPC through papoio, without Parquet and
// the gRPC and Arrow Flight packages that come with it.
func TestNoParquetDependency(t *testing.T) {
	deptest.Forbid(t, "github.com/entropy-polarity/papo/synth", "/parquet", "google.golang.org/grpc", "arrow/flight")
}
