package fallback

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
)

// flakyGPU fills out with garbage for every row and then fails the batches listed in fail.
type flakyGPU struct {
	calls  int
	fail   map[int]error
	closed int
}

func (g *flakyGPU) Name() string { return "cuda:0 fake" }
func (g *flakyGPU) Close() error { g.closed++; return nil }
func (g *flakyGPU) Compute(ctx context.Context, b *polarity.Batch, p polarity.Params, out *polarity.Result) error {
	call := g.calls
	g.calls++
	if err := polarity.NewCPU(1).Compute(ctx, b, p, out); err != nil {
		return err
	}
	if err, ok := g.fail[call]; ok {
		for i := range out.Entropy { // a half-finished batch: rows that must not survive
			out.Entropy[i] = float32(math.NaN())
		}
		return err
	}
	return nil
}

func batch(rows int) *polarity.Batch {
	b := &polarity.Batch{Logits: polarity.Logits{Dtype: polarity.Float32, V: 4}}
	for i := range rows {
		b.Logits.F32 = append(b.Logits.F32, 2, 1, 0.1, float32(-i))
		b.TokenID = append(b.TokenID, int32(i%4))
		b.Advantage = append(b.Advantage, 1)
	}
	return b
}

func TestFallbackRecomputesFailedBatches(t *testing.T) {
	oom := &DeviceError{Device: "cuda:0", Op: "cuMemAlloc(1 GiB)", Err: errors.New("OutOfMemory")}
	lost := &DeviceError{Device: "cuda:0", Op: "cuStreamSynchronize", Err: errors.New("LaunchFailed"), Sticky: true}
	gpu := &flakyGPU{fail: map[int]error{1: oom, 3: lost}}
	var log bytes.Buffer
	e := New(gpu, polarity.NewCPU(1), &log)
	ctx := context.Background()
	p := polarity.DefaultParams()
	for k := range 6 {
		b := batch(5 + k)
		var got, want polarity.Result
		if err := e.Compute(ctx, b, p, &got); err != nil {
			t.Fatalf("batch %d: %v", k, err)
		}
		if err := polarity.NewCPU(1).Compute(ctx, b, p, &want); err != nil {
			t.Fatal(err)
		}
		if got.Len() != b.Rows() {
			t.Fatalf("batch %d: %d rows, want %d", k, got.Len(), b.Rows())
		}
		for i := range want.Entropy {
			if got.Entropy[i] != want.Entropy[i] || got.PredictedDeltaH[i] != want.PredictedDeltaH[i] {
				t.Errorf("batch %d row %d: entropy %v ΔH %v, want %v %v", k, i, got.Entropy[i], got.PredictedDeltaH[i], want.Entropy[i], want.PredictedDeltaH[i])
			}
		}
	}
	// Batches 0–3 reached the GPU (1 and 3 failed); after the sticky failure 4 and 5 did not.
	if gpu.calls != 4 || gpu.closed != 1 {
		t.Errorf("GPU engine: %d calls, closed %d times; want 4 and 1", gpu.calls, gpu.closed)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "OutOfMemory") || !strings.Contains(lines[1], "LaunchFailed") ||
		!strings.Contains(lines[1], "rest of the work") {
		t.Errorf("log: one line per failure expected, the second saying the CPU takes over:\n%s", log.String())
	}
	if !strings.HasPrefix(e.Name(), "cpu") {
		t.Errorf("after a sticky failure Name() = %q, want the CPU engine's", e.Name())
	}
	if err := e.Close(); err != nil || gpu.closed != 1 {
		t.Errorf("Close: %v; GPU closed %d times, want once", err, gpu.closed)
	}
}

// Data errors and cancellation are not device failures: they reach the caller unchanged and
// nothing is recomputed.
func TestFallbackPassesOtherErrors(t *testing.T) {
	rowErr := &polarity.RowError{Row: 3, Column: "logits", Msg: "NaN at index 2"}
	for _, want := range []error{rowErr, context.Canceled} {
		gpu := &flakyGPU{fail: map[int]error{0: want}}
		var log bytes.Buffer
		e := New(gpu, polarity.NewCPU(1), &log)
		var out polarity.Result
		err := e.Compute(context.Background(), batch(4), polarity.DefaultParams(), &out)
		if !errors.Is(err, want) {
			t.Errorf("got %v, want %v", err, want)
		}
		if log.Len() != 0 {
			t.Errorf("%v logged %q", want, log.String())
		}
	}
	e := New(&flakyGPU{}, polarity.NewCPU(1), nil)
	if e.Name() != "cuda:0 fake" {
		t.Errorf("Name() = %q, want the GPU engine's", e.Name())
	}
}

func TestDeviceErrorMessage(t *testing.T) {
	base := errors.New("OutOfMemory")
	err := error(&DeviceError{Device: "cuda:1", Op: "cuMemAlloc(2 GiB)", Err: base, Sticky: true})
	if !errors.Is(err, base) {
		t.Error("DeviceError does not unwrap to the driver's error")
	}
	if got := err.Error(); got != "cuda:1: cuMemAlloc(2 GiB): OutOfMemory (the device context is no longer usable)" {
		t.Errorf("message %q", got)
	}
}
