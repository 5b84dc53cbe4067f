package papoio

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// BenchmarkRead reads 4 batches of 16 rows of a Qwen-sized vocabulary (V = 151,936) from memory:
// the cost of io per byte of logits, which the engines' own pass over the same bytes dwarfs only
// if io stays near memcpy speed.
func BenchmarkRead(b *testing.B) {
	const v, rows, batches = 151936, 16, 4
	for _, dtype := range []polarity.Dtype{polarity.Float32, polarity.BFloat16} {
		for _, stream := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s stream=%v", dtype, stream), func(b *testing.B) {
				schema := InputSchema(v, dtype, testColumns(dtype, 1, 1, 0), nil)
				sizes := make([]int, batches)
				for i := range sizes {
					sizes[i] = rows
				}
				recs := buildBatches(b, memory.DefaultAllocator, schema, dtype, v, sizes, nil)
				data := encodeIPC(b, stream, schema, recs...)
				releaseRecords(recs)
				b.SetBytes(int64(len(data)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					r, err := NewReader(bytes.NewReader(data), "bench", nil)
					if err != nil {
						b.Fatal(err)
					}
					n := 0
					for r.Next() {
						n += r.Batch().Input.Rows()
					}
					if r.Err() != nil || n != rows*batches {
						b.Fatal(n, r.Err())
					}
					r.Close()
				}
			})
		}
	}
}
