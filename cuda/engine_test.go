//go:build cuda

package cuda

// These tests need a CUDA device. On a host without one, package guard (initialised before
// gorgonia.org/cu, whose init would exit 1) prints "SKIP: no usable CUDA device: CUDA_ERROR_… (…)"
// and the test binary exits 0, without a PASS line, before any test runs (go test: "[no tests
// to run]"; the SKIP line shows with -v).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"gorgonia.org/cu"

	"github.com/entropy-polarity/papo/cuda/fallback"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

func newEngine(t *testing.T, opts Options) *Engine {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatalf("cuda.New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

// The shared table of hard rows and data errors, as the CPU engine runs it.
func TestSharedTable(t *testing.T) {
	e := newEngine(t, Options{})
	t.Logf("device: %s", e.Name())
	polaritytest.CheckEngine(t, e, polaritytest.Seed(t))
}

// The same table with chunks of 64 KiB: most batches then take many chunks, so both slots,
// their events and the copy/compute overlap are exercised.
func TestSharedTableManyChunks(t *testing.T) {
	polaritytest.CheckEngine(t, newEngine(t, Options{ChunkBytes: 64 << 10}), polaritytest.Seed(t))
}

// fillRow writes one test row: N(0, σ²) noise with −Inf entries, extreme values and a spike.
// kind selects the mix.
func fillRow(rng *rand.Rand, z []float32, kind int, dt polarity.Dtype) {
	big := float32(1e4)
	if dt == polarity.Float16 {
		big = 6e4 // near float16's largest finite value, 65504
	}
	for j := range z {
		z[j] = float32(3 * rng.NormFloat64())
		switch kind {
		case 1: // −Inf entries
			if rng.IntN(4) == 0 {
				z[j] = float32(math.Inf(-1))
			}
		case 2: // extreme magnitudes
			if rng.IntN(50) == 0 {
				z[j] = [2]float32{big, -big}[rng.IntN(2)]
			}
		}
	}
	if kind == 3 {
		z[rng.IntN(len(z))] = 40 // peaked: H ≈ 1e-10 at V = 151936
	}
}

func makeBatch(rng *rand.Rand, dt polarity.Dtype, V, rows int) *polarity.Batch {
	z := make([]float32, rows*V)
	for i := range rows {
		fillRow(rng, z[i*V:(i+1)*V], i%4, dt)
	}
	b := &polarity.Batch{Logits: polarity.EncodeLogits(z, V, dt)}
	b.TokenID = make([]int32, rows)
	b.Advantage = make([]float64, rows)
	b.OldLogprob = make([]float32, rows)
	b.Mask = make([]bool, rows)
	for i := range rows {
		b.TokenID[i] = int32(rng.IntN(V))
		if i%3 == 0 { // the maximum: the sampled term of a dominant token
			best := 0
			for j := range V {
				if b.Logits.At(i, j) > b.Logits.At(i, best) {
					best = j
				}
			}
			b.TokenID[i] = int32(best)
		}
		b.Advantage[i] = 2*rng.Float64() - 1
		b.OldLogprob[i] = float32(-5 * rng.Float64())
		b.Mask[i] = rng.IntN(8) != 0
	}
	return b
}

// agree checks that two engines' results for b are the same within the shared tolerances
// (each is compared with the float64 reference), and that validity and exact zeros match.
func agree(t *testing.T, name string, b *polarity.Batch, p polarity.Params, gpu, cpu *polarity.Result) {
	t.Helper()
	polaritytest.Compare(t, name+" (GPU)", "", b, p, gpu, polaritytest.Rel, nil)
	polaritytest.Compare(t, name+" (CPU)", "", b, p, cpu, polaritytest.Rel, nil)
	for i := range b.Rows() {
		if gpu.PolarityValid[i] != cpu.PolarityValid[i] || (gpu.PredictedDeltaH[i] == 0) != (cpu.PredictedDeltaH[i] == 0) {
			t.Errorf("%s: row %d: GPU (valid %v, ΔH %v) and CPU (valid %v, ΔH %v) differ", name, i,
				gpu.PolarityValid[i], gpu.PredictedDeltaH[i], cpu.PolarityValid[i], cpu.PredictedDeltaH[i])
		}
	}
}

// Equivalence with the CPU engine for every dtype and vocabulary size, on rows with −Inf,
// extreme values and spikes, in batches whose row counts are not multiples of the block size
// (256) nor of a chunk, with τ ≠ 1 and PPO clipping.
func TestEquivalenceWithCPU(t *testing.T) {
	seed := polaritytest.Seed(t)
	rng := polaritytest.Rand(seed)
	gpu := newEngine(t, Options{ChunkBytes: 32 << 20})
	cpu := polarity.NewCPU(0)
	ctx := context.Background()
	for _, dt := range []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16} {
		for _, V := range []int{1, 31, 32, 1000, 128256, 151936, 152064} {
			rows := 257
			if V <= 1000 {
				rows = 1 + 256*3 + rng.IntN(255)
			}
			p := polarity.DefaultParams()
			p.Temperature = 0.7
			p.ClipLow, p.ClipHigh = 0.2, 0.28
			name := fmt.Sprintf("%v, V=%d, %d rows", dt, V, rows)
			b := makeBatch(rng, dt, V, rows)
			var g, c polarity.Result
			if err := gpu.Compute(ctx, b, p, &g); err != nil {
				t.Fatalf("%s: GPU: %v", name, err)
			}
			if err := cpu.Compute(ctx, b, p, &c); err != nil {
				t.Fatalf("%s: CPU: %v", name, err)
			}
			agree(t, name, b, p, &g, &c)
		}
	}
}

// subBatch is rows idx of b (logits, token ids and every present column).
func subBatch(b *polarity.Batch, idx []int) *polarity.Batch {
	V := b.Logits.V
	s := &polarity.Batch{Logits: polarity.Logits{Dtype: b.Logits.Dtype, V: V}}
	for _, i := range idx {
		if b.Logits.Dtype == polarity.Float32 {
			s.Logits.F32 = append(s.Logits.F32, b.Logits.F32[i*V:(i+1)*V]...)
		} else {
			s.Logits.Bits = append(s.Logits.Bits, b.Logits.Bits[i*V:(i+1)*V]...)
		}
		s.TokenID = append(s.TokenID, b.TokenID[i])
		if b.Advantage != nil {
			s.Advantage = append(s.Advantage, b.Advantage[i])
		}
	}
	return s
}

func subResult(r *polarity.Result, idx []int) *polarity.Result {
	s := &polarity.Result{}
	s.Resize(len(idx))
	for k, i := range idx {
		s.Entropy[k], s.Logprob[k], s.SampledTerm[k] = r.Entropy[i], r.Logprob[i], r.SampledTerm[i]
		s.Correction[k], s.PolarityFactor[k], s.Polarity[k] = r.Correction[i], r.PolarityFactor[i], r.Polarity[i]
		s.PolarityValid[k], s.PredictedDeltaH[k] = r.PolarityValid[i], r.PredictedDeltaH[i]
	}
	return s
}

// More than 14,134 rows of V = 151,936 in one launch: element offsets pass 2^31 (and byte
// offsets 2^32 in bfloat16), which a 32-bit row offset would wrap. Every row differs (its
// spike's position and height), so a wrapped offset would read another row and be caught.
func TestRowsBeyond32BitOffsets(t *testing.T) {
	const V, rows = 151936, 14300
	if testing.Short() {
		t.Skip("-short: 4.3 GB batch")
	}
	rng := polaritytest.Rand(polaritytest.Seed(t))
	b := &polarity.Batch{Logits: polarity.Logits{Dtype: polarity.BFloat16, V: V}}
	b.Logits.Bits = make([]uint16, rows*V)
	noise := make([]uint16, 1<<16)
	for i := range noise {
		noise[i] = polarity.Float32ToBFloat16(float32(3 * rng.NormFloat64()))
	}
	b.TokenID = make([]int32, rows)
	b.Advantage = make([]float64, rows)
	for r := range rows {
		row := b.Logits.Bits[r*V : (r+1)*V]
		off := rng.IntN(len(noise))
		for j := range row {
			row[j] = noise[(off+j)&(len(noise)-1)]
		}
		spike := (r * 7919) % V
		row[spike] = polarity.Float32ToBFloat16(float32(8 + r%23))
		b.TokenID[r] = int32(spike)
		b.Advantage[r] = 1
	}
	idx := []int{0, 1, 2, 3534, 3535}
	for r := 14100; r < rows; r++ {
		idx = append(idx, r)
	}
	for range 40 {
		idx = append(idx, rng.IntN(rows))
	}
	sub := subBatch(b, idx)
	p := polarity.DefaultParams()
	check := func(name string, got *polarity.Result) {
		t.Helper()
		if got.Len() != rows {
			t.Fatalf("%s: %d rows, want %d", name, got.Len(), rows)
		}
		polaritytest.Compare(t, name, "", sub, p, subResult(got, idx), polaritytest.Rel, nil)
	}
	ctx := context.Background()
	// One chunk: the whole batch in one launch through the Compute pipeline.
	e := newEngine(t, Options{ChunkBytes: 8 << 30})
	var out polarity.Result
	if err := e.Compute(ctx, b, p, &out); err != nil {
		t.Fatalf("Compute: %v", err)
	}
	check("Compute, one launch of 14,300 rows", &out)
	var kout polarity.Result
	if _, err := e.MeasureKernel(b, p, 1, &kout); err != nil {
		t.Fatalf("MeasureKernel: %v", err)
	}
	check("MeasureKernel, one launch of 14,300 rows", &kout)
}

// A device that runs out of memory: the batch is recomputed on the CPU (one line logged), and
// once memory is free again the GPU engine serves the next batch.
func TestOutOfMemoryFallsBackToCPU(t *testing.T) {
	e := newEngine(t, Options{})
	var hog cu.DevicePtr
	err := e.do(func() error {
		free, _, err := cu.MemInfo()
		if err != nil {
			return err
		}
		hog, err = cu.MemAlloc(free - 48<<20)
		return err
	})
	if err != nil {
		t.Fatalf("allocating the device's free memory: %v", asDriverError(err))
	}
	freeHog := func() {
		if hog != 0 {
			_ = e.do(func() error { return cu.MemFree(hog) })
			hog = 0
		}
	}
	defer freeHog()
	var log bytes.Buffer
	cpu := polarity.NewCPU(0)
	f := fallback.New(e, cpu, &log)
	rng := polaritytest.Rand(polaritytest.Seed(t))
	b := makeBatch(rng, polarity.Float32, 151936, 130) // 79 MB of logits, two slots: > 48 MiB
	p := polarity.DefaultParams()
	var got, want polarity.Result
	ctx := context.Background()
	if err := f.Compute(ctx, b, p, &got); err != nil {
		t.Fatalf("with the device full: %v", err)
	}
	if err := cpu.Compute(ctx, b, p, &want); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "CUDA_ERROR_OUT_OF_MEMORY") || strings.Count(log.String(), "\n") != 1 {
		t.Errorf("log: want one line naming CUDA_ERROR_OUT_OF_MEMORY, got %q", log.String())
	}
	for i := range want.Entropy {
		if got.Entropy[i] != want.Entropy[i] || got.PredictedDeltaH[i] != want.PredictedDeltaH[i] {
			t.Fatalf("row %d: the fallen-back batch differs from the CPU engine's", i)
		}
	}
	freeHog()
	log.Reset()
	if err := f.Compute(ctx, b, p, &got); err != nil {
		t.Fatalf("after freeing memory: %v", err)
	}
	if log.Len() != 0 || f.Name() != e.Name() {
		t.Errorf("after freeing memory the GPU should serve again: log %q, engine %q", log.String(), f.Name())
	}
	agree(t, "after out of memory", b, p, &got, &want)
}

// Compute calls from several goroutines run one at a time on the context thread and each gets
// its own batch's results.
func TestConcurrentCompute(t *testing.T) {
	e := newEngine(t, Options{ChunkBytes: 1 << 20})
	rng := polaritytest.Rand(polaritytest.Seed(t))
	p := polarity.DefaultParams()
	var wg sync.WaitGroup
	batches := make([]*polarity.Batch, 4)
	for k := range batches {
		batches[k] = makeBatch(rng, polarity.BFloat16, 32000+k, 50)
	}
	errs := make([]error, len(batches))
	results := make([]polarity.Result, len(batches))
	for k := range batches {
		wg.Go(func() { errs[k] = e.Compute(context.Background(), batches[k], p, &results[k]) })
	}
	wg.Wait()
	for k := range batches {
		if errs[k] != nil {
			t.Fatalf("batch %d: %v", k, errs[k])
		}
		polaritytest.Compare(t, fmt.Sprintf("concurrent batch %d", k), "", batches[k], p, &results[k], polaritytest.Rel, nil)
	}
}

func TestCancelledContext(t *testing.T) {
	e := newEngine(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out polarity.Result
	b := makeBatch(polaritytest.Rand(1), polarity.Float32, 100, 3)
	if err := e.Compute(ctx, b, polarity.DefaultParams(), &out); !errors.Is(err, context.Canceled) {
		t.Errorf("Compute with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestProbeAndOptions(t *testing.T) {
	var buf bytes.Buffer
	if err := Probe(&buf); err != nil {
		t.Fatalf("Probe: %v\n%s", err, buf.String())
	}
	if !strings.Contains(buf.String(), "kernels load") {
		t.Errorf("Probe output does not report a device whose kernels load:\n%s", buf.String())
	}
	t.Logf("probe:\n%s", buf.String())
	n, _ := cu.NumDevices()
	if _, err := New(Options{Device: n}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("New on device %d of %d: %v, want a clear error", n, n, err)
	}
	e := newEngine(t, Options{})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	var out polarity.Result
	b := makeBatch(polaritytest.Rand(1), polarity.Float32, 100, 3)
	if err := e.Compute(context.Background(), b, polarity.DefaultParams(), &out); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("Compute after Close: %v", err)
	}
}

// The benchmarks' measurements run and give positive times.
func TestMeasure(t *testing.T) {
	e := newEngine(t, Options{})
	c, err := e.MeasureCopy(64<<20, 3)
	if err != nil || !(c.Min > 0) {
		t.Fatalf("MeasureCopy: %+v, %v", c, err)
	}
	b := makeBatch(polaritytest.Rand(2), polarity.BFloat16, 151936, 64)
	var out polarity.Result
	k, err := e.MeasureKernel(b, polarity.DefaultParams(), 3, &out)
	if err != nil || !(k.Min > 0) {
		t.Fatalf("MeasureKernel: %+v, %v", k, err)
	}
	polaritytest.Compare(t, "MeasureKernel results", "", b, polarity.DefaultParams(), &out, polaritytest.Rel, nil)
	t.Logf("copy of 64 MiB: %.1f µs (%.0f GB/s read+write); kernel over 64 bf16 rows: %.1f µs (%.0f GB/s read)",
		c.Min*1e6, 2*float64(64<<20)/c.Min/1e9, k.Min*1e6, float64(64*151936*2)/k.Min/1e9)
}
