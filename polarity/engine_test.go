package polarity_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

// TestCPUEngineTable runs the shared table (polaritytest: every row kind × V ∈ {1 … 152064} ×
// float32/float16/bfloat16, with advantages, masks, old log-probabilities and clipping, and
// the data-error rows) through the CPU engine with one thread and with three (more workers
// than cores exercises the hand-out of rows), against the float64 reference within
// polaritytest's tolerances at CPURel = 2e-6 of each quantity's natural scale (the engines'
// shared contract is Rel = 3e-5; go test -v prints the accuracy measured per row kind). Every
// kernel this build and processor run (polarity.Kernels: the pure-Go one, AVX2+FMA, AVX-512F) is
// forced in turn.
func TestCPUEngineTable(t *testing.T) {
	seed := polaritytest.Seed(t)
	for _, k := range polarity.Kernels() {
		t.Run(k.String(), func(t *testing.T) {
			for _, threads := range []int{1, 3} {
				e, err := polarity.NewCPUKernel(threads, k)
				if err != nil {
					t.Fatal(err)
				}
				polaritytest.CheckEngineRel(t, e, seed, polaritytest.CPURel)
			}
		})
	}
}

// TestCPUPeakedEntropy holds the CPU engine to CPURel (2e-6) relative error in H on docs/MATH.md §3's
// peaked row (V = 151936, one logit +40 above N(0, 3²) noise, H ≈ 1e-9), in each dtype. H's
// terms all come from the noise, each with its exponential's error (≤ 3·2^-24, since v and the
// range reduction are float64): ~5e-8 measured, where a textbook −Σ π log π loses ~1e-4.
func TestCPUPeakedEntropy(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	const V = 151936
	z := make([]float32, V)
	for j := range z {
		z[j] = float32(3 * rng.NormFloat64())
	}
	spike := rng.IntN(V)
	z[spike] = 40
	e := polarity.NewCPU(1)
	for _, dt := range []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16} {
		b := batchOf(dt, V, z, []int32{int32(spike)})
		u := make([]float64, V)
		for j := range u {
			u[j] = float64(b.Logits.At(0, j))
		}
		ref := polarity.ReferenceRow(u, spike)
		var r polarity.Result
		if err := e.Compute(context.Background(), b, polarity.DefaultParams(), &r); err != nil {
			t.Fatal(err)
		}
		rel := math.Abs(float64(r.Entropy[0])-ref.H) / ref.H
		if !(ref.H > 1e-11 && ref.H < 1e-7) || rel > polaritytest.CPURel {
			t.Errorf("%v: H = %.9g, reference %.12g (relative error %.3g > %g)", dt, r.Entropy[0], ref.H, rel, polaritytest.CPURel)
		}
		t.Logf("%v peaked row: H = %.6g, CPU relative error %.2g", dt, ref.H, rel)
	}
}

func batchOf(dt polarity.Dtype, V int, z []float32, tokens []int32) *polarity.Batch {
	b := &polarity.Batch{Logits: polarity.Logits{Dtype: dt, V: V}, TokenID: tokens}
	switch dt {
	case polarity.Float32:
		b.Logits.F32 = z
	case polarity.Float16:
		for _, x := range z {
			b.Logits.Bits = append(b.Logits.Bits, polarity.Float32ToFloat16(x))
		}
	case polarity.BFloat16:
		for _, x := range z {
			b.Logits.Bits = append(b.Logits.Bits, polarity.Float32ToBFloat16(x))
		}
	}
	return b
}

// randomBatch is rows × V normal logits with random tokens and advantages.
func randomBatch(rng *rand.Rand, dt polarity.Dtype, rows, V int) *polarity.Batch {
	z := make([]float32, rows*V)
	for j := range z {
		z[j] = float32(3 * rng.NormFloat64())
	}
	tokens := make([]int32, rows)
	adv := make([]float64, rows)
	for i := range tokens {
		tokens[i] = int32(rng.IntN(V))
		adv[i] = rng.NormFloat64()
	}
	b := batchOf(dt, V, z, tokens)
	b.Advantage = adv
	return b
}

// TestCPUThreadsAgree: every row is computed by the same code whatever the worker count, so
// the results are bitwise identical for 1, 2 and 5 threads.
func TestCPUThreadsAgree(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	b := randomBatch(rng, polarity.BFloat16, 37, 3000)
	var want polarity.Result
	if err := polarity.NewCPU(1).Compute(context.Background(), b, polarity.DefaultParams(), &want); err != nil {
		t.Fatal(err)
	}
	for _, threads := range []int{2, 5, 0} {
		var got polarity.Result
		if err := polarity.NewCPU(threads).Compute(context.Background(), b, polarity.DefaultParams(), &got); err != nil {
			t.Fatal(err)
		}
		for i := range want.Entropy {
			if got.Entropy[i] != want.Entropy[i] || got.Correction[i] != want.Correction[i] ||
				got.Logprob[i] != want.Logprob[i] || got.PredictedDeltaH[i] != want.PredictedDeltaH[i] {
				t.Fatalf("threads=%d, row %d differs from one thread", threads, i)
			}
		}
	}
}

// TestCPULowestBadRow: with bad rows in several runs of the hand-out (64 rows of V = 16: runs of
// 8 rows on 2 threads), the error is always the lowest bad row's, whatever the thread count and
// the order in which the workers reach them.
func TestCPULowestBadRow(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	const rows, V = 64, 16
	for _, bad := range [][]int{{5, 40}, {63, 9}, {18, 17}, {56, 0}} {
		b := randomBatch(rng, polarity.Float32, rows, V)
		for _, i := range bad {
			b.Logits.F32[i*V+3] = float32(math.NaN())
		}
		lowest := slices.Min(bad)
		for _, threads := range []int{1, 2, 3, 8} {
			for range 20 {
				var r polarity.Result
				err := polarity.NewCPU(threads).Compute(context.Background(), b, polarity.DefaultParams(), &r)
				var re *polarity.RowError
				if !errors.As(err, &re) || re.Row != lowest {
					t.Fatalf("bad rows %v, %d threads: %v; want the error of row %d", bad, threads, err, lowest)
				}
			}
		}
	}
}

// cancelAfter is a context whose Err turns to context.Canceled after n calls: the engine checks
// it once per row, so it cancels between rows deterministically. Workers call Err concurrently.
type cancelAfter struct {
	context.Context
	n atomic.Int64
}

func newCancelAfter(n int64) *cancelAfter {
	c := &cancelAfter{Context: context.Background()}
	c.n.Store(n)
	return c
}

func (c *cancelAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// TestCPUCancellation: a cancelled context stops the engine between rows with ctx.Err(): before
// the first row (nothing computed), after three rows (one thread: exactly rows 0–2 computed), and
// with several workers; an expired deadline gives DeadlineExceeded.
func TestCPUCancellation(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	b := randomBatch(rng, polarity.Float32, 10, 1000)
	p := polarity.DefaultParams()
	sentinel := func() *polarity.Result {
		var r polarity.Result
		r.Resize(b.Rows())
		for i := range r.Entropy {
			r.Entropy[i] = float32(math.NaN())
		}
		return &r
	}
	computed := func(r *polarity.Result) (n int) {
		for _, h := range r.Entropy {
			if h == h {
				n++
			}
		}
		return n
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := sentinel()
	if err := polarity.NewCPU(2).Compute(ctx, b, p, r); !errors.Is(err, context.Canceled) || computed(r) != 0 {
		t.Errorf("cancelled before: error %v, %d rows computed; want context.Canceled, 0", err, computed(r))
	}
	r = sentinel()
	if err := polarity.NewCPU(1).Compute(newCancelAfter(4), b, p, r); !errors.Is(err, context.Canceled) || computed(r) != 3 {
		t.Errorf("cancelled after 3 rows: error %v, %d rows computed; want context.Canceled, 3", err, computed(r))
	}
	r = sentinel()
	if err := polarity.NewCPU(3).Compute(newCancelAfter(5), b, p, r); !errors.Is(err, context.Canceled) || computed(r) == b.Rows() {
		t.Errorf("cancelled with 3 workers: error %v, %d of %d rows computed", err, computed(r), b.Rows())
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if err := polarity.NewCPU(1).Compute(dctx, b, p, sentinel()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired deadline: %v, want context.DeadlineExceeded", err)
	}
}

// TestCPUBadBatches: inconsistent shapes and parameters are errors (not panics) that say what
// was expected; a bad token id is a *RowError for its row.
func TestCPUBadBatches(t *testing.T) {
	e := polarity.NewCPU(2)
	good := func() *polarity.Batch {
		return &polarity.Batch{Logits: polarity.Logits{Dtype: polarity.Float32, V: 3, F32: make([]float32, 6)}, TokenID: []int32{0, 2}}
	}
	for _, c := range []struct {
		name, want string
		mutate     func(b *polarity.Batch, p *polarity.Params)
	}{
		{"short logits", "has 5 float32 logits, want 2×3 = 6", func(b *polarity.Batch, _ *polarity.Params) { b.Logits.F32 = b.Logits.F32[:5] }},
		{"V = 0", "V = 0", func(b *polarity.Batch, _ *polarity.Params) { b.Logits.V = 0 }},
		{"dtype without bits", "has 0 float16 logits", func(b *polarity.Batch, _ *polarity.Params) { b.Logits.Dtype = polarity.Float16 }},
		{"advantage length", "1 advantage values, want 2", func(b *polarity.Batch, _ *polarity.Params) { b.Advantage = []float64{1} }},
		{"mask length", "3 mask values, want 2", func(b *polarity.Batch, _ *polarity.Params) { b.Mask = make([]bool, 3) }},
		{"token id < 0", "row 1: token_id: -1 is outside [0, 3)", func(b *polarity.Batch, _ *polarity.Params) { b.TokenID[1] = -1 }},
		{"temperature 0", "temperature 0", func(_ *polarity.Batch, p *polarity.Params) { p.Temperature = 0 }},
		{"NaN learning rate", "learning rate NaN", func(_ *polarity.Batch, p *polarity.Params) { p.LR = math.NaN() }},
	} {
		b, p := good(), polarity.DefaultParams()
		c.mutate(b, &p)
		var r polarity.Result
		err := e.Compute(context.Background(), b, p, &r)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	var r polarity.Result
	if err := e.Compute(context.Background(), good(), polarity.DefaultParams(), &r); err != nil || r.Len() != 2 {
		t.Errorf("good batch: %v, %d rows", err, r.Len())
	}
	if err := e.Compute(context.Background(), &polarity.Batch{}, polarity.DefaultParams(), &r); err != nil || r.Len() != 0 {
		t.Errorf("empty batch: %v, %d rows", err, r.Len())
	}
	if e.Name() != "cpu" || e.Close() != nil {
		t.Errorf("Name %q, Close %v", e.Name(), e.Close())
	}
}

// TestCPUNoAllocationPerRow: a Compute call allocates a fixed amount (its workers), the same
// for 2 rows as for 64, and nothing per row, once the Result has its size.
func TestCPUNoAllocationPerRow(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	for _, threads := range []int{1, 2} {
		e := polarity.NewCPU(threads)
		allocs := func(rows int) float64 {
			b := randomBatch(rng, polarity.BFloat16, rows, 1500)
			var r polarity.Result
			r.Resize(rows)
			return testing.AllocsPerRun(5, func() {
				if err := e.Compute(context.Background(), b, polarity.DefaultParams(), &r); err != nil {
					t.Fatal(err)
				}
			})
		}
		few, many := allocs(2), allocs(64)
		if many > few || few > float64(4+3*threads) {
			t.Errorf("threads=%d: %v allocations for 2 rows, %v for 64", threads, few, many)
		}
	}
}
