package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/entropy-polarity/papo/cuda/fallback"
	"github.com/entropy-polarity/papo/cuda/hostref"
	"github.com/entropy-polarity/papo/cuda/pipeline"
	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

// jitter is the simulated device's longest random delay per operation: long enough that the
// host and both streams interleave in many orders, short enough for hundreds of batches.
const jitter = 200 * time.Microsecond

// newPipeline is a pipeline on d whose chunks hold chunkRows rows of V logits of dtype dt.
func newPipeline(t *testing.T, d *sim, chunkRows int, V int, dt polarity.Dtype) *pipeline.Pipeline {
	t.Helper()
	p, err := pipeline.New(d, "sim:0", pipeline.Options{ChunkBytes: int64(chunkRows * V * dt.Size()), CopyThreads: 2})
	if err != nil {
		t.Fatalf("pipeline.New: %v", err)
	}
	return p
}

// closeAndCheck closes p, destroys the simulated context if p lost it, and fails t on any
// hazard the device saw or anything left allocated by a pipeline that did not lose its context.
func closeAndCheck(t *testing.T, d *sim, p *pipeline.Pipeline) {
	t.Helper()
	broken := p.Broken() != nil
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if !broken {
		if l := d.leaks(); l != "" {
			t.Errorf("after Close: %s", l)
		}
	}
	d.destroyContext()
	checkHazards(t, d)
}

func checkHazards(t *testing.T, d *sim) {
	t.Helper()
	hz := d.Hazards()
	for k, h := range hz {
		if k == 10 {
			t.Errorf("… and %d more hazards", len(hz)-10)
			break
		}
		t.Errorf("hazard: %s", h)
	}
}

// randomBatch is rows rows of N(0, 3²) logits with −Inf entries, and every kind of row input:
// advantages (some absent), old log-probabilities near the current ones (some absent, so that
// some tokens are clipped), and a mask.
func randomBatch(rng *rand.Rand, dt polarity.Dtype, V, rows int) *polarity.Batch {
	z := make([]float32, rows*V)
	for j := range z {
		z[j] = float32(3 * rng.NormFloat64())
		if rng.IntN(20) == 0 && j%V != 0 {
			z[j] = float32(math.Inf(-1))
		}
	}
	b := &polarity.Batch{
		Logits:          polarity.EncodeLogits(z, V, dt),
		TokenID:         make([]int32, rows),
		Advantage:       make([]float64, rows),
		AdvantageValid:  make([]bool, rows),
		OldLogprob:      make([]float32, rows),
		OldLogprobValid: make([]bool, rows),
		Mask:            make([]bool, rows),
	}
	for i := range rows {
		b.TokenID[i] = int32(rng.IntN(V))
		if z[i*V+int(b.TokenID[i])] == float32(math.Inf(-1)) {
			b.TokenID[i] = 0 // never −Inf (column 0 is finite)
		}
		b.Advantage[i] = rng.NormFloat64()
		b.AdvantageValid[i] = rng.IntN(8) != 0
		b.OldLogprob[i] = float32(-math.Log(float64(V)) + rng.NormFloat64())
		b.OldLogprobValid[i] = rng.IntN(3) != 0
		b.Mask[i] = rng.IntN(6) != 0
	}
	return b
}

// equalResults reports the first element where got and want differ bit for bit.
func equalResults(got, want *polarity.Result) error {
	if got.Len() != want.Len() {
		return fmt.Errorf("%d rows, want %d", got.Len(), want.Len())
	}
	cols := []struct {
		name      string
		got, want []float32
	}{
		{"entropy", got.Entropy, want.Entropy}, {"logprob", got.Logprob, want.Logprob},
		{"sampled_term", got.SampledTerm, want.SampledTerm}, {"correction", got.Correction, want.Correction},
		{"polarity_factor", got.PolarityFactor, want.PolarityFactor}, {"polarity", got.Polarity, want.Polarity},
		{"predicted_dh", got.PredictedDeltaH, want.PredictedDeltaH},
	}
	for _, c := range cols {
		for i := range c.want {
			if math.Float32bits(c.got[i]) != math.Float32bits(c.want[i]) {
				return fmt.Errorf("row %d %s = %g, want %g", i, c.name, c.got[i], c.want[i])
			}
		}
	}
	for i := range want.PolarityValid {
		if got.PolarityValid[i] != want.PolarityValid[i] {
			return fmt.Errorf("row %d polarity valid = %v, want %v", i, got.PolarityValid[i], want.PolarityValid[i])
		}
	}
	return nil
}

// The shared table of hard rows and data errors (the one the CPU engine and the GPU tests run),
// through the pipeline on the simulated device, in chunks of one to a few rows.
func TestSharedTable(t *testing.T) {
	seed := polaritytest.Seed(t)
	d := newSim(uint64(seed), jitter)
	p, err := pipeline.New(d, "sim:0", pipeline.Options{ChunkBytes: 64 << 10, CopyThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	polaritytest.CheckEngine(t, p, seed)
	closeAndCheck(t, d, p)
}

// Random batches of every dtype, V and chunking: the results are the kernel arithmetic's, bit
// for bit (hostref.Engine), wherever the rows' alignment is the same as in the host run (chunks
// of a multiple of 16 rows, or rows of a multiple of 16 bytes), and within the GPU tolerance of
// the float64 reference everywhere.
func TestRandomBatches(t *testing.T) {
	seed, rng := fixture(t)
	ctx := context.Background()
	params := polarity.DefaultParams()
	for _, dt := range []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16} {
		for _, V := range []int{1, 7, 31, 1000, 4099} {
			for _, chunkRows := range []int{1, 3, 16, 1000} {
				name := fmt.Sprintf("%v V=%d chunk=%d rows", dt, V, chunkRows)
				b := randomBatch(rng, dt, V, 20+rng.IntN(30))
				d := newSim(rng.Uint64(), jitter/4)
				p := newPipeline(t, d, chunkRows, V, dt)
				var got, want polarity.Result
				for rep := range 2 { // the second batch reuses the slots' buffers
					if err := p.Compute(ctx, b, params, &got); err != nil {
						t.Fatalf("%s: Compute %d: %v", name, rep, err)
					}
				}
				closeAndCheck(t, d, p)
				polaritytest.Compare(t, name, "", b, params, &got, polaritytest.Rel, nil)
				if chunkRows%16 == 0 || (V*dt.Size())%16 == 0 {
					if err := hostref.New().Compute(ctx, b, params, &want); err != nil {
						t.Fatal(err)
					}
					if err := equalResults(&got, &want); err != nil {
						t.Errorf("%s: differs from the kernel's host run: %v", name, err)
					}
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("rerun with PAPO_SEED=%d", seed)
	}
}

// fixture is the seed of a test (PAPO_SEED reproduces it) and a generator drawn from it.
func fixture(t *testing.T) (int64, *rand.Rand) {
	seed := polaritytest.Seed(t)
	return seed, polaritytest.Rand(seed)
}

// faultBatch is the batch of the fault tests: 23 rows in chunks of 5 (5 chunks, both slots
// reused twice).
func faultBatch(seed int64) (*polarity.Batch, int) {
	return randomBatch(polaritytest.Rand(seed), polarity.BFloat16, 999, 23), 5
}

// faultFixture is faultBatch with the CPU engine that the fallback recomputes on and its result
// for the batch under the default parameters.
func faultFixture(t *testing.T) (seed int64, b *polarity.Batch, chunkRows int, cpu polarity.Engine, want *polarity.Result) {
	seed = polaritytest.Seed(t)
	b, chunkRows = faultBatch(seed)
	cpu = polarity.NewCPU(1)
	want = new(polarity.Result)
	if err := cpu.Compute(context.Background(), b, polarity.DefaultParams(), want); err != nil {
		t.Fatal(err)
	}
	return seed, b, chunkRows, cpu, want
}

// Every driver call of a batch fails in turn, with an error that leaves the context usable
// (out of memory) and with one that loses it (illegal address). Wrapped in fallback.Engine, as
// papo-cuda runs it, every batch still gives the CPU engine's results exactly, with one line
// logged; the device sees no hazard; after a usable-context failure the same pipeline computes
// the next batch correctly and frees everything on Close; after a lost context it refuses work.
func TestEveryCallFails(t *testing.T) {
	seed, b, chunkRows, cpu, want := faultFixture(t)
	params := polarity.DefaultParams()
	ctx := context.Background()

	// A clean run counts the calls of one batch (after New's).
	d := newSim(1, 0)
	p := newPipeline(t, d, chunkRows, b.Logits.V, b.Logits.Dtype)
	base := d.calls
	var got polarity.Result
	if err := p.Compute(ctx, b, params, &got); err != nil {
		t.Fatal(err)
	}
	calls := d.calls - base
	closeAndCheck(t, d, p)
	if calls < 50 {
		t.Fatalf("a batch of %d chunks made only %d driver calls", (b.Rows()+chunkRows-1)/chunkRows, calls)
	}

	for _, fault := range []*simError{errOutOfMemory, errIllegal} {
		for k := 1; k <= calls; k++ {
			name := fmt.Sprintf("%s at call %d of %d", fault.name, k, calls)
			d := newSim(uint64(seed)+uint64(k), jitter/4)
			p := newPipeline(t, d, chunkRows, b.Logits.V, b.Logits.Dtype)
			d.failCall, d.failErr = d.calls+k, fault
			var log bytes.Buffer
			f := fallback.New(p, cpu, &log)
			var got polarity.Result
			if err := f.Compute(ctx, b, params, &got); err != nil {
				t.Fatalf("%s: Compute through the fallback: %v", name, err)
			}
			if err := equalResults(&got, want); err != nil {
				t.Errorf("%s: the recomputed batch differs from the CPU engine's: %v", name, err)
			}
			if lines := strings.Count(log.String(), "\n"); lines != 1 || !strings.Contains(log.String(), fault.name) {
				t.Errorf("%s: log %q: want one line naming the error", name, log.String())
			}
			if fault.sticky {
				if p.Broken() == nil {
					t.Errorf("%s: the pipeline is not marked broken", name)
				}
				if err := p.Compute(ctx, b, params, &got); !errors.Is(err, p.Broken()) {
					t.Errorf("%s: Compute after the context was lost: %v, want the first error", name, err)
				}
			} else {
				var again polarity.Result
				if err := p.Compute(ctx, b, params, &again); err != nil {
					t.Errorf("%s: the next batch: %v", name, err)
				} else {
					polaritytest.Compare(t, name+", next batch", "", b, params, &again, polaritytest.Rel, nil)
				}
			}
			closeAndCheck(t, d, p)
			if t.Failed() {
				t.Fatalf("stopped at %s (PAPO_SEED=%d)", name, seed)
			}
		}
	}
}

// Each call New makes (two streams, six events) fails in turn: New returns the error, naming
// the call, and releases what it had created.
func TestNewFails(t *testing.T) {
	d := newSim(1, 0)
	p, err := pipeline.New(d, "sim:0", pipeline.Options{})
	if err != nil {
		t.Fatal(err)
	}
	calls := d.calls
	closeAndCheck(t, d, p)
	for _, fault := range []*simError{errOutOfMemory, errIllegal} {
		for k := 1; k <= calls; k++ {
			d := newSim(uint64(k), 0)
			d.failCall, d.failErr = k, fault
			p, err := pipeline.New(d, "sim:0", pipeline.Options{})
			var de *fallback.DeviceError
			if p != nil || !errors.As(err, &de) || de.Sticky != fault.sticky || !strings.Contains(err.Error(), fault.name) {
				t.Errorf("%s at call %d of New: %v, %v; want a *fallback.DeviceError naming it", fault.name, k, p, err)
			}
			if !fault.sticky {
				if l := d.leaks(); l != "" {
					t.Errorf("%s at call %d of New: %s", fault.name, k, l)
				}
			}
			d.destroyContext()
			checkHazards(t, d)
		}
	}
}

// A kernel or copy that faults on the device is reported by a later call (the next
// synchronisation), as CUDA reports it: each work operation of a batch faults in turn; the
// batch is recomputed on the CPU and the pipeline refuses further work.
func TestAsynchronousFault(t *testing.T) {
	seed, b, chunkRows, cpu, want := faultFixture(t)
	params := polarity.DefaultParams()
	ctx := context.Background()
	works := 4 * ((b.Rows() + chunkRows - 1) / chunkRows) // two copies in, a launch, a copy out
	for k := 1; k <= works; k++ {
		d := newSim(uint64(seed)+uint64(k), jitter/4)
		p := newPipeline(t, d, chunkRows, b.Logits.V, b.Logits.Dtype)
		d.failExec = k
		var log bytes.Buffer
		var got polarity.Result
		if err := fallback.New(p, cpu, &log).Compute(ctx, b, params, &got); err != nil {
			t.Fatalf("fault in operation %d: %v", k, err)
		}
		if err := equalResults(&got, want); err != nil {
			t.Errorf("fault in operation %d: %v", k, err)
		}
		if p.Broken() == nil || !strings.Contains(log.String(), errIllegal.name) {
			t.Errorf("fault in operation %d: broken %v, log %q", k, p.Broken(), log.String())
		}
		closeAndCheck(t, d, p)
	}
}

// Cancelling the context at any driver call stops the batch with context.Canceled after the
// queued work has drained (no hazard), and the pipeline then computes the next batch.
func TestCancelAtEveryCall(t *testing.T) {
	seed := polaritytest.Seed(t)
	b, chunkRows := faultBatch(seed)
	b2 := randomBatch(polaritytest.Rand(seed+1), b.Logits.Dtype, b.Logits.V, 17)
	params := polarity.DefaultParams()
	cancelled := 0
	for k := 1; k <= 60; k++ {
		d := newSim(uint64(seed)+uint64(k), jitter/4)
		p := newPipeline(t, d, chunkRows, b.Logits.V, b.Logits.Dtype)
		ctx, cancel := context.WithCancel(context.Background())
		at := d.calls + k
		d.onCall = func(n int, _ string) {
			if n == at {
				cancel()
			}
		}
		var got polarity.Result
		err := p.Compute(ctx, b, params, &got)
		cancel()
		switch {
		case errors.Is(err, context.Canceled):
			cancelled++
		case err != nil:
			t.Errorf("cancelled at call %d: %v, want context.Canceled", k, err)
		case k <= 15:
			// The first 15 calls allocate slot 0 (6) and queue chunk 0 (9); the loop checks
			// the context before chunk 1 and must stop there.
			t.Errorf("cancelled at call %d: the batch completed", k)
		}
		d.onCall = nil
		if err := p.Compute(context.Background(), b2, params, &got); err != nil {
			t.Errorf("cancelled at call %d: the next batch: %v", k, err)
		} else {
			polaritytest.Compare(t, fmt.Sprintf("cancelled at call %d, next batch", k), "", b2, params, &got, polaritytest.Rel, nil)
		}
		closeAndCheck(t, d, p)
	}
	t.Logf("%d of 60 cancellations stopped the batch (the later ones come after its last chunk is queued)", cancelled)
}

// Buffers are kept across batches: a batch no larger than an earlier one allocates nothing; a
// larger one grows the slots. Out of device memory, both slots are freed (so that a smaller
// batch can start afresh), the batch falls back to the CPU, and the next batch that fits runs
// on the device.
func TestBuffersAndOutOfMemory(t *testing.T) {
	seed, rng := fixture(t)
	ctx := context.Background()
	params := polarity.DefaultParams()
	const V = 1000
	d := newSim(uint64(seed), jitter/4)
	p, err := pipeline.New(d, "sim:0", pipeline.Options{ChunkBytes: 8 * V * 4, CopyThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	var got polarity.Result
	run := func(rows int, wantAllocs int) {
		t.Helper()
		b := randomBatch(rng, polarity.Float32, V, rows)
		before := d.mallocs
		if err := p.Compute(ctx, b, params, &got); err != nil {
			t.Fatalf("%d rows: %v", rows, err)
		}
		polaritytest.Compare(t, fmt.Sprintf("%d rows", rows), "", b, params, &got, polaritytest.Rel, nil)
		if n := d.mallocs - before; n != wantAllocs {
			t.Errorf("%d rows: %d device allocations, want %d", rows, n, wantAllocs)
		}
	}
	run(3, 3)  // one chunk of 3 rows: slot 0 (logits, row inputs, outputs)
	run(2, 0)  // fits
	run(20, 6) // chunks of 8: slot 0 grows, slot 1 is new
	run(20, 0)
	run(5, 0)

	closeAndCheck(t, d, p)

	// A device with room for one slot: a two-chunk batch runs out of memory in slot 1.
	d = newSim(uint64(seed)+1, jitter/4)
	d.memLimit = 8*V*4 + 8*(kernels.RowInBytes+pipeline.OutRowBytes) + 100
	if p, err = pipeline.New(d, "sim:0", pipeline.Options{ChunkBytes: 8 * V * 4, CopyThreads: 2}); err != nil {
		t.Fatal(err)
	}
	cpu := polarity.NewCPU(1)
	var log bytes.Buffer
	f := fallback.New(p, cpu, &log)
	b := randomBatch(rng, polarity.Float32, V, 12)
	var want polarity.Result
	if err := cpu.Compute(ctx, b, params, &want); err != nil {
		t.Fatal(err)
	}
	if err := f.Compute(ctx, b, params, &got); err != nil {
		t.Fatal(err)
	}
	if err := equalResults(&got, &want); err != nil {
		t.Errorf("out of memory: %v", err)
	}
	if !strings.Contains(log.String(), "CUDA_ERROR_OUT_OF_MEMORY") || p.Broken() != nil {
		t.Errorf("out of memory: log %q, broken %v", log.String(), p.Broken())
	}
	d.mu.Lock()
	used := d.memUsed
	d.mu.Unlock()
	if used != 0 {
		t.Errorf("after running out of memory %d device bytes are still held", used)
	}
	run(8, 3) // one chunk fits again
	closeAndCheck(t, d, p)
}

// A data error (a NaN logit) is the CPU engine's error for the lowest bad row, whichever chunk
// it is in; rows of the chunks before it are stored; the pipeline then computes the next batch.
func TestDataErrors(t *testing.T) {
	_, rng := fixture(t)
	ctx := context.Background()
	params := polarity.DefaultParams()
	cpu := polarity.NewCPU(1)
	const V, rows = 300, 30
	for _, bad := range []int{0, 4, 5, 17, 29} {
		b := randomBatch(rng, polarity.Float32, V, rows)
		b.Logits.F32[bad*V+V/2] = float32(math.NaN())
		b.Logits.F32[(bad+rows/2)%rows*V+3] = float32(math.Inf(1)) // a second bad row
		first := min(bad, (bad+rows/2)%rows)
		d := newSim(rng.Uint64(), jitter/4)
		p := newPipeline(t, d, 5, V, polarity.Float32)
		var got, want polarity.Result
		gerr := p.Compute(ctx, b, params, &got)
		werr := cpu.Compute(ctx, b, params, &want)
		var re *polarity.RowError
		if !errors.As(gerr, &re) || re.Row != first || gerr.Error() != werr.Error() {
			t.Errorf("bad rows %d and %d: %v, want %v", bad, (bad+rows/2)%rows, gerr, werr)
		}
		for i := range first - first%5 { // the chunks before the bad one
			if got.Entropy[i] == 0 || math.IsNaN(float64(got.Entropy[i])) {
				t.Errorf("bad row %d: row %d before it was not stored (H = %g)", first, i, got.Entropy[i])
				break
			}
		}
		b2 := randomBatch(rng, polarity.Float32, V, 11)
		if err := p.Compute(ctx, b2, params, &got); err != nil {
			t.Errorf("after the data error: %v", err)
		}
		closeAndCheck(t, d, p)
	}
}

// The simulated device catches what it is there to catch. Each sabotaged driver below breaks
// one ordering rule of the pipeline's contract with CUDA; running the same batches through it
// must produce hazards or wrong results.
func TestSimCatchesOrderingBugs(t *testing.T) {
	if raceDetector {
		t.Skip("the sabotaged drivers race with the host on purpose, which the race detector reports")
	}
	seed := polaritytest.Seed(t)
	params := polarity.DefaultParams()
	cases := []struct {
		name string
		wrap func(*sim) pipeline.Driver
	}{
		// The compute stream no longer waits for the copies: the kernel reads half-copied
		// logits.
		{"kernel does not wait for its copies", func(d *sim) pipeline.Driver { return noComputeWait{d} }},
		// The host no longer waits for the results: it reads them before they arrive.
		{"results read before they arrive", func(d *sim) pipeline.Driver { return noSync{d} }},
		// The results are copied on the copy stream, which does not wait for the kernel.
		{"results copied on the other stream", func(d *sim) pipeline.Driver { return resultsOnCopyStream{d} }},
	}
	for _, c := range cases {
		caught := false
		for try := 0; try < 5 && !caught; try++ {
			d := newSim(uint64(seed)+uint64(try), 2*jitter)
			b := randomBatch(polaritytest.Rand(seed+int64(try)), polarity.Float32, 2000, 40)
			p, err := pipeline.New(c.wrap(d), "sim:0", pipeline.Options{ChunkBytes: 3 * 2000 * 4, CopyThreads: 2})
			if err != nil {
				t.Fatal(err)
			}
			var got polarity.Result
			cerr := p.Compute(context.Background(), b, params, &got)
			_ = p.Close()
			d.destroyContext()
			var want polarity.Result
			if err := hostref.New().Compute(context.Background(), b, params, &want); err != nil {
				t.Fatal(err)
			}
			werr := equalResults(&got, &want)
			caught = len(d.Hazards()) > 0 || cerr != nil || werr != nil
			if caught {
				t.Logf("%s: caught in batch %d: %d hazard(s) %q; Compute: %v; results: %v", c.name, try+1, len(d.Hazards()), first(d.Hazards()), cerr, werr)
			}
		}
		if !caught {
			t.Errorf("%s: the simulated device saw nothing wrong in 5 batches", c.name)
		}
	}
}

// Stream 0 is the copy stream, stream 1 the compute stream: New creates them in that order.

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

type noComputeWait struct{ *sim }

func (n noComputeWait) Wait(s pipeline.Stream, e pipeline.Event) error {
	if s == 1 {
		return nil
	}
	return n.sim.Wait(s, e)
}

type noSync struct{ *sim }

type resultsOnCopyStream struct{ *sim }

func (r resultsOnCopyStream) CopyDtoH(dst unsafe.Pointer, src pipeline.DevicePtr, n int64, _ pipeline.Stream) error {
	return r.sim.CopyDtoH(dst, src, n, 0)
}

func (n noSync) SyncEvent(pipeline.Event) error { return nil }

// Pinned.Bytes refuses to reach past its buffer.
func TestPinnedBytesBounds(t *testing.T) {
	buf := make([]byte, 8)
	h := pipeline.Pinned{Ptr: unsafe.Pointer(&buf[0]), N: 8}
	if len(h.Bytes(8)) != 8 {
		t.Fatal("Bytes(8) of 8")
	}
	defer func() {
		if recover() == nil {
			t.Error("Bytes(9) of an 8-byte buffer did not panic")
		}
	}()
	h.Bytes(9)
}
