package papoio

import (
	"testing"

	"github.com/entropy-polarity/papo/internal/deptest"
)

// TestNoParquetDependency (issue 21 item 13): the contract package pulls in neither Parquet
// (io/parquet has it) nor the gRPC and Arrow Flight packages that pqarrow brought with it, so a
// trainer that imports papoio for Arrow IPC stays lean.
func TestNoParquetDependency(t *testing.T) {
	deptest.Forbid(t, "github.com/entropy-polarity/papo/io", "/parquet", "google.golang.org/grpc", "arrow/flight")
}
