package polarity

import "testing"

// TestRowChunk: a worker takes the rows of 4 MiB of logits at a time (7 float32 rows of
// 151,936, 14 bfloat16 ones), never more than a quarter of its share of the batch, and at
// least one row.
func TestRowChunk(t *testing.T) {
	for _, c := range []struct {
		name                    string
		rows, workers, rowBytes int
		want                    int
	}{
		{"float32, V = 151936, 1024 rows, 2 workers", 1024, 2, 151936 * 4, 7},
		{"bfloat16, V = 151936, 1024 rows, 2 workers", 1024, 2, 151936 * 2, 14},
		{"short batch: a quarter of a worker's share", 40, 2, 151936 * 4, 5},
		{"fewer rows than 4 per worker: one row", 5, 2, 151936 * 4, 1},
		{"small V: capped by the batch", 100000, 2, 64 * 4, 12500},
		{"rows larger than 4 MiB: one row", 1024, 2, 8 << 20, 1},
		{"one worker", 1024, 1, 151936 * 4, 7},
	} {
		if got := rowChunk(c.rows, c.workers, c.rowBytes); got != c.want {
			t.Errorf("%s: rowChunk(%d, %d, %d) = %d, want %d", c.name, c.rows, c.workers, c.rowBytes, got, c.want)
		}
	}
}
