package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/entropy-polarity/papo/polarity"
)

// ReadBandwidth measures how fast threads goroutines can read a buffer of size bytes that
// does not fit in cache (best of reps passes, in bytes/s). It sums float32 values with vector
// loads (ReadISA), the access pattern of an engine's pass over logits without the arithmetic:
// a scalar loop is bound by its additions, not by memory, and understates the machine several
// times over.
func ReadBandwidth(threads, size, reps int) float64 {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	buf := make([]float32, size/4)
	for i := range buf {
		buf[i] = float32(i & 1023)
	}
	best := 0.0
	sink := make([]float32, threads)
	for range reps {
		start := time.Now()
		var wg sync.WaitGroup
		part := len(buf) / threads
		for w := range threads {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				sink[w] = readChunked(buf[w*part : (w+1)*part])
			}(w)
		}
		wg.Wait()
		if bw := float64(part*threads*4) / time.Since(start).Seconds(); bw > best {
			best = bw
		}
	}
	_ = sink
	return best
}

// ReadISA names the loop ReadBandwidth reads with: "avx2" or "go".
func ReadISA() string { return readISA() }

// readChunked is readSum over 1 MiB pieces, so that no assembly call runs long enough to
// hold off the Go scheduler.
func readChunked(x []float32) float32 {
	const piece = 1 << 18
	var s float32
	for len(x) > piece {
		s += readSum(x[:piece])
		x = x[piece:]
	}
	return s + readSum(x)
}

// sumGo uses eight independent accumulators so the loop is bound by loads, not by the
// latency of one chain of additions (the portable read).
func sumGo(x []float32) float32 {
	var a [8]float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		a[0] += x[i]
		a[1] += x[i+1]
		a[2] += x[i+2]
		a[3] += x[i+3]
		a[4] += x[i+4]
		a[5] += x[i+5]
		a[6] += x[i+6]
		a[7] += x[i+7]
	}
	for ; i < len(x); i++ {
		a[0] += x[i]
	}
	return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7]
}

// Workload is a batch of synthetic logits rows for timing: N(0, 3²) noise with one +12
// spike per row, the mix of entropy an engine sees in practice matters little to its speed.
type Workload struct {
	Batch  polarity.Batch
	Params polarity.Params
}

// NewWorkload builds rows×V logits of the given dtype.
func NewWorkload(rows, v int, dtype polarity.Dtype, seed uint64) *Workload {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := &Workload{Params: polarity.DefaultParams()}
	b := &w.Batch
	z := make([]float32, rows*v)
	noise := make([]float32, 1<<16)
	for i := range noise {
		noise[i] = float32(3 * rng.NormFloat64())
	}
	for r := range rows {
		off := rng.IntN(len(noise))
		spike := rng.IntN(v)
		for j := range v {
			z[r*v+j] = noise[(off+j)&(len(noise)-1)]
		}
		z[r*v+spike] += 12
		b.TokenID = append(b.TokenID, int32(spike))
		b.Advantage = append(b.Advantage, rng.NormFloat64())
	}
	b.Logits = polarity.EncodeLogits(z, v, dtype)
	return w
}

// Bytes is the size of the workload's logits.
func (w *Workload) Bytes() int64 {
	return int64(w.Batch.Rows()) * int64(w.Batch.Logits.V) * int64(w.Batch.Logits.Dtype.Size())
}

// Throughput is one engine's measured speed on a workload.
type Throughput struct {
	Engine       string
	Dtype        polarity.Dtype
	V, Rows      int
	Seconds      float64 // best pass
	TokensPerSec float64
	BytesPerSec  float64
	// Result is the engine's output of the last pass (for checking it against others').
	Result polarity.Result
}

// Run times reps passes of e over w (after one warm-up pass) and keeps the best.
func Run(ctx context.Context, e polarity.Engine, w *Workload, reps int) (Throughput, error) {
	var out polarity.Result
	if err := e.Compute(ctx, &w.Batch, w.Params, &out); err != nil {
		return Throughput{}, fmt.Errorf("warm-up: %w", err)
	}
	best := 0.0
	for range max(reps, 1) {
		start := time.Now()
		if err := e.Compute(ctx, &w.Batch, w.Params, &out); err != nil {
			return Throughput{}, err
		}
		if s := time.Since(start).Seconds(); best == 0 || s < best {
			best = s
		}
	}
	rows := w.Batch.Rows()
	return Throughput{
		Engine: e.Name(), Dtype: w.Batch.Logits.Dtype, V: w.Batch.Logits.V, Rows: rows, Seconds: best,
		TokensPerSec: float64(rows) / best, BytesPerSec: float64(w.Bytes()) / best, Result: out,
	}, nil
}
