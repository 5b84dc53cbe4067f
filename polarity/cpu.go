package polarity

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"
)

// NewCPU returns the CPU engine: rows are spread over threads goroutines (threads ≤ 0: one per
// GOMAXPROCS), and each row is one streaming pass over its logits in blocks of blockLen
// (accumulateBlock: float32 exponentials, partial sums merged into a float64 Sums per row).
// float16 and bfloat16 logits are converted block by block on the fly. The hot loops are
// BestKernel's (assembly where the processor has it; PAPO_CPU_KERNEL forces one); a
// PAPO_CPU_KERNEL that this build or processor cannot run falls back to the best kernel, and
// NewCPUKernel reports it.
//
// Accuracy against the float64 Reference, measured on the shared case table (polaritytest):
// H, log π_a, S_a and C within ~1.5e-7 of their natural scales (H relative, also on peaked rows
// where H ≈ 1e-9; C relative to RowStats64.CScale), the float32 exponential's 3·2^-24; the
// tests hold it to polaritytest.CPURel = 2e-6. Speed per core at V = 151936 (2-core CI
// machine): ~1100 tokens/s with the pure-Go kernel; see bench/RESULTS.md for the assembly
// kernels.
func NewCPU(threads int) Engine {
	k, err := BestKernel()
	if err != nil {
		ks := Kernels()
		k = ks[len(ks)-1]
	}
	e, _ := NewCPUKernel(threads, k)
	return e
}

// NewCPUKernel is NewCPU with the kernel k, which must be one of Kernels().
func NewCPUKernel(threads int, k Kernel) (Engine, error) {
	if !kernelSupported(k) {
		return nil, fmt.Errorf("polarity: CPU kernel %v: not in this build or not supported by this processor (%v)", k, Kernels())
	}
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	return &cpuEngine{threads: threads, kernel: k}, nil
}

type cpuEngine struct {
	threads int
	kernel  Kernel
}

func (e *cpuEngine) Name() string { return "cpu" }

// Kernel is the kernel the engine runs.
func (e *cpuEngine) Kernel() Kernel { return e.kernel }

func (e *cpuEngine) Close() error { return nil }

// Compute fills out for every row of b. Rows are handed to the workers in runs of consecutive
// rows (rowChunk), the runs in increasing order; a data error stops the hand-out of later rows
// and the error of the lowest bad row is returned (so the error does not depend on the number
// of threads). Cancellation of
// ctx is checked between rows and returns ctx.Err(). On error, out holds partial results.
func (e *cpuEngine) Compute(ctx context.Context, b *Batch, p Params, out *Result) error {
	return e.ComputeWithStats(ctx, b, p, out, nil)
}

// ComputeWithStats is Compute that also stores each row's statistics in st (when st is not nil),
// in the same pass: what `papo analyze --row-stats` writes.
func (e *cpuEngine) ComputeWithStats(ctx context.Context, b *Batch, p Params, out *Result, st *StatsColumns) error {
	n, err := Begin(ctx, b, p, out)
	if err != nil || n == 0 {
		return err
	}
	if st != nil {
		st.Resize(n)
	}
	c := cpuCompute{ctx: ctx, b: b, p: p, out: out, st: st, n: n, tau: p.Temperature, invTau: 1 / p.Temperature, kernel: e.kernel}
	return c.run(min(e.threads, n))
}

// run computes every row on workers goroutines and returns the first error (see Compute).
func (c *cpuCompute) run(workers int) error {
	n := c.n
	c.errRow.Store(int64(n))
	c.chunk = rowChunk(n, workers, c.b.Logits.V*c.b.Logits.Dtype.Size())
	c.errs = make([]rowFailure, workers)
	if workers == 1 {
		c.work(0)
	} else {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { c.work(w) })
		}
		wg.Wait()
	}
	var first error // cancellation or a worker's panic, else the data error of the lowest row
	firstRow := n
	for _, re := range c.errs {
		if re.err != nil && re.row < firstRow {
			first, firstRow = re.err, re.row
		}
	}
	return first
}

// cpuCompute is one Compute call shared by its workers.
type cpuCompute struct {
	ctx    context.Context
	b      *Batch
	p      Params
	out    *Result
	st     *StatsColumns // nil: no row statistics wanted
	n      int
	tau    float64
	invTau float64
	kernel Kernel

	chunk  int          // rows per hand-out (rowChunk)
	next   atomic.Int64 // next row to hand out
	errRow atomic.Int64 // lowest row with a data error so far (n: none)
	errs   []rowFailure // per worker, the error that stopped it
}

// ErrInternal matches (errors.Is) the error of a worker that panicked: a bug, not bad input.
var ErrInternal = errors.New("polarity: internal error")

// rowFailure is a worker's data error in row, or its cancellation or panic (row −1, so that
// it wins).
type rowFailure struct {
	row int
	err error
}

// rowChunk is how many consecutive rows a worker takes at a time: rows covering 4 MiB of
// logits, so that two workers reading a memory-mapped file fault pages in different 2 MiB
// page-table pages. With one row each (608 KB at V = 151,936 in float32) both fault in the same
// one and queue on its lock: 10 % of papo analyze's samples on 2 threads were in that spin lock
// (perf record, bench/RESULTS.md). At most a quarter of a worker's share, so that the last runs
// still balance the load; at least one row.
func rowChunk(rows, workers, rowBytes int) int {
	const span = 4 << 20
	c := (span + rowBytes - 1) / max(rowBytes, 1)
	return max(1, min(c, rows/(4*workers)))
}

func (c *cpuCompute) work(w int) {
	// A panic in a worker goroutine cannot be recovered by the caller's goroutine: it would end
	// the process (papo serve included). It becomes this worker's error, as cancellation does.
	defer func() {
		if p := recover(); p != nil {
			c.errs[w] = rowFailure{-1, fmt.Errorf("%w: a CPU worker panicked: %v\n%s", ErrInternal, p, debug.Stack())}
		}
	}()
	var buf [blockLen]float32 // float16/bfloat16 conversion; on this goroutine's stack
	bk := newBlockKernel(c.kernel, c.invTau)
	chunk := int64(c.chunk)
	for {
		start := c.next.Add(chunk) - chunk
		for i := start; i < min(start+chunk, int64(c.n)); i++ {
			if i > c.errRow.Load() {
				return
			}
			if err := c.ctx.Err(); err != nil {
				c.errs[w] = rowFailure{-1, err}
				return
			}
			if err := c.row(int(i), bk, &buf); err != nil {
				c.errs[w] = rowFailure{int(i), err}
				for {
					old := c.errRow.Load()
					if i >= old || c.errRow.CompareAndSwap(old, i) {
						break
					}
				}
				return
			}
		}
		if start+chunk >= int64(c.n) {
			return
		}
	}
}

// row computes row i into c.out.
func (c *cpuCompute) row(i int, bk *blockKernel, buf *[blockLen]float32) error {
	l := &c.b.Logits
	V := l.V
	base := i * V
	sums := EmptySums()
	for j := 0; j < V; j += blockLen {
		k := min(blockLen, V-j)
		if j+k < V { // the row's next block (the next row may be another worker's)
			switch l.Dtype {
			case Float32:
				bk.prefetch(unsafe.Pointer(&l.F32[base+j+k]))
			default:
				bk.prefetch(unsafe.Pointer(&l.Bits[base+j+k]))
			}
		}
		var x []float32
		var bs blockSums
		switch l.Dtype {
		case Float32:
			x = l.F32[base+j : base+j+k]
			bs = bk.accumulate(x)
		default: // decoded into buf, with the block's maximum taken as it is decoded
			x = buf[:k]
			bs = bk.accumulate16(x, l.Bits[base+j:base+j+k], l.Dtype == BFloat16)
		}
		if !(bs.Max <= math.MaxFloat32) || bs.Rest != bs.Rest {
			for jj, z := range x {
				if z != z || z > math.MaxFloat32 {
					return LogitsError(i, j+jj, z, V)
				}
			}
			panic("polarity: accumulateBlock reported a non-finite block without a NaN or +Inf in it")
		}
		if bs.Max < -math.MaxFloat32 {
			continue // every element −Inf
		}
		sums.Merge(Sums{M: float64(bs.Max) / c.tau, Rest: bs.Rest, S1: bs.S1, S2: bs.S2, S3: bs.S3})
	}
	if sums.Empty() {
		return LogitsError(i, -1, 0, V)
	}
	st := sums.Finalize()
	a := int(c.b.TokenID[i])
	ua := float64(l.At(i, a)) / c.tau
	logpi, sampled := st.Sampled(ua)
	if c.st != nil {
		c.st.set(i, sums, ua)
	}
	o, err := Finish(c.b, i, c.p, st.H, logpi, sampled, st.C)
	if err != nil {
		return err
	}
	o.Store(c.out, i)
	return nil
}
