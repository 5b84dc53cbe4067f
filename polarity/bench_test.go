package polarity_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

// BenchmarkCPU measures the CPU engine on Qwen-sized rows (V = 151936) of N(0, 3²) logits, 64
// rows per Compute (37 MiB of float32), with one thread and with GOMAXPROCS threads. It
// reports tokens/s and GB/s of logits read (bytes per element × V × tokens / s).
//
//	go test ./polarity -run='^$' -bench=CPU -benchtime=3x
func BenchmarkCPU(b *testing.B) {
	const V, rows = 151936, 64
	rng := polaritytest.Rand(1)
	for _, dt := range []polarity.Dtype{polarity.Float32, polarity.BFloat16, polarity.Float16} {
		batch := randomBatch(rng, dt, rows, V)
		for _, threads := range []int{1, runtime.GOMAXPROCS(0)} {
			b.Run(fmt.Sprintf("%v/V=%d/threads=%d", dt, V, threads), func(b *testing.B) {
				e := polarity.NewCPU(threads)
				var r polarity.Result
				bytes := int64(rows * V * dt.Size())
				b.SetBytes(bytes)
				for b.Loop() {
					if err := e.Compute(context.Background(), batch, polarity.DefaultParams(), &r); err != nil {
						b.Fatal(err)
					}
				}
				sec := b.Elapsed().Seconds()
				b.ReportMetric(float64(rows*b.N)/sec, "tokens/s")
				b.ReportMetric(float64(bytes)*float64(b.N)/sec/1e9, "GB/s")
			})
		}
	}
}
