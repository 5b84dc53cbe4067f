//go:build cgo

package kernelemu

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/entropy-polarity/papo/cuda/hostref"
	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

var dtypes = []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16}

// rowKind is how a test row's logits and sampled token are drawn.
type rowKind int

const (
	kindNormal      rowKind = iota // N(0, σ²) around a random shift, random token
	kindTokenAtMax                 // the token is the row's maximum
	kindNegInf                     // a quarter of the entries −Inf, random token
	kindTokenNegInf                // the token's logit is −Inf
	kindNaN                        // one NaN: status PP_ERR_LOGIT
	kindPosInf                     // one +Inf: status PP_ERR_LOGIT
	kindAllNegInf                  // every entry −Inf: status PP_ERR_NO_FINITE
	kindHuge                       // ±1e4 magnitudes
	kindSpike                      // one +40 over N(0, 1), the token at it or random
	kindTies                       // every entry equal
	kindOneFinite                  // one finite entry, the rest −Inf
	kindLevels                     // a few integer levels: many threads share the maximum
	numKinds
)

var kindNames = [numKinds]string{"normal", "token-at-max", "-Inf entries", "token at -Inf", "NaN", "+Inf",
	"all -Inf", "±1e4", "spike", "ties", "one finite", "levels"}

// fillRow draws row z of kind k and returns the sampled token. decode rounds a value to the
// dtype, so that the token at the maximum is the maximum the kernel sees.
func fillRow(rng *rand.Rand, z []float32, k rowKind, decode func(float32) float32) int32 {
	V := len(z)
	ninf := float32(math.Inf(-1))
	normal := func(sigma, shift float64) {
		for j := range z {
			z[j] = float32(shift + sigma*rng.NormFloat64())
		}
	}
	argmax := func() int32 {
		best := 0
		for j := range z {
			if decode(z[j]) > decode(z[best]) {
				best = j
			}
		}
		return int32(best)
	}
	token := int32(rng.IntN(V))
	switch k {
	case kindNormal, kindTokenAtMax:
		normal([]float64{1, 3}[rng.IntN(2)], 10*rng.Float64()-5)
		if k == kindTokenAtMax {
			token = argmax()
		}
	case kindNegInf, kindTokenNegInf:
		normal(2, 0)
		for j := range z {
			if rng.IntN(4) == 0 {
				z[j] = ninf
			}
		}
		z[rng.IntN(V)] = float32(rng.NormFloat64()) // at least one finite entry
		if k == kindTokenNegInf && V > 1 {
			for z[token] != ninf {
				token = int32(rng.IntN(V))
				if rng.IntN(8) == 0 {
					z[token] = ninf
				}
			}
		}
	case kindNaN, kindPosInf:
		normal(1, 0)
		z[rng.IntN(V)] = map[rowKind]float32{kindNaN: float32(math.NaN()), kindPosInf: float32(math.Inf(1))}[k]
	case kindAllNegInf:
		for j := range z {
			z[j] = ninf
		}
	case kindHuge:
		for j := range z {
			z[j] = float32(1e4*float64(1-2*rng.IntN(2)) + 10*rng.NormFloat64())
		}
		if rng.IntN(2) == 0 {
			token = argmax()
		}
	case kindSpike:
		normal(1, 0)
		j := rng.IntN(V)
		z[j] += 40
		if rng.IntN(2) == 0 {
			token = int32(j)
		}
	case kindTies:
		c := float32(rng.NormFloat64())
		for j := range z {
			z[j] = c
		}
	case kindLevels:
		// Equal maxima in many threads, with sums that are not integers: the order in which
		// the tree merges two states of equal maximum changes the rounding.
		for j := range z {
			z[j] = float32(math.Round(1.5 * rng.NormFloat64()))
		}
	case kindOneFinite:
		for j := range z {
			z[j] = ninf
		}
		j := rng.IntN(V)
		z[j] = float32(5 * rng.NormFloat64())
		if rng.IntN(2) == 0 {
			token = int32(j)
		}
	}
	return token
}

// rowInputs draws a row's advantage, old log-probability and mask, now and then not finite.
func rowInputs(rng *rand.Rand, token int32) kernels.RowIn {
	in := kernels.RowIn{Token: token}
	if rng.IntN(4) != 0 {
		in.Flags |= kernels.HasAdvantage
		switch rng.IntN(16) {
		case 0:
			in.Advantage = math.NaN()
		case 1:
			in.Advantage = math.Inf(1 - 2*rng.IntN(2))
		case 2, 3:
			in.Advantage = 0
		default:
			in.Advantage = rng.NormFloat64()
		}
	}
	if rng.IntN(2) == 0 {
		in.Flags |= kernels.HasOldLogprob
		in.OldLogprob = float32(-12 * rng.Float64())
		if rng.IntN(16) == 0 {
			in.OldLogprob = float32(math.NaN())
		}
	}
	if rng.IntN(4) != 0 {
		in.Flags |= kernels.Trained
	}
	return in
}

// batch is one launch's inputs in C memory laid out as on the device: the logits from a
// 256-byte-aligned base (plus offset elements), exactly as long as they need to be, and the
// row inputs likewise.
type batch struct {
	dt            polarity.Dtype
	V, rows       int
	logits, rowIn unsafe.Pointer
	base          unsafe.Pointer // the allocation logits lies in
	kinds         []rowKind
	decoded       *polarity.Logits
	p             polarity.Params
}

func newBatch(rng *rand.Rand, dt polarity.Dtype, V, rows, offset int) *batch {
	z := make([]float32, V*rows)
	decode := func(x float32) float32 {
		l := polarity.EncodeLogits([]float32{x}, 1, dt)
		return l.At(0, 0)
	}
	b := &batch{dt: dt, V: V, rows: rows, kinds: make([]rowKind, rows)}
	in := make([]kernels.RowIn, rows)
	shift := rng.IntN(int(numKinds))
	for r := range rows {
		k := rowKind((r + shift) % int(numKinds))
		if rows < int(numKinds) {
			k = rowKind(rng.IntN(int(numKinds)))
		}
		b.kinds[r] = k
		token := fillRow(rng, z[r*V:(r+1)*V], k, decode)
		in[r] = rowInputs(rng, token)
	}
	l := polarity.EncodeLogits(z, V, dt)
	b.decoded = &l
	es := dt.Size()
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&z[0])), 4*len(z))
	if dt != polarity.Float32 {
		raw = unsafe.Slice((*byte)(unsafe.Pointer(&l.Bits[0])), 2*len(l.Bits))
	}
	b.base = alloc(offset*es + len(raw))
	b.logits = unsafe.Add(b.base, offset*es)
	copy(unsafe.Slice((*byte)(b.logits), len(raw)), raw)
	b.rowIn = alloc(kernels.RowInBytes * rows)
	copy(unsafe.Slice((*kernels.RowIn)(b.rowIn), rows), in)
	b.p = polarity.Params{
		Temperature:     []float64{1, 0.7, 1.3}[rng.IntN(3)],
		LR:              []float64{1, 0.5}[rng.IntN(2)],
		ClipLow:         math.Inf(1),
		ClipHigh:        math.Inf(1),
		NaturalGradient: rng.IntN(3) == 0,
	}
	if rng.IntN(2) == 0 {
		b.p.ClipLow, b.p.ClipHigh = 0.2, 0.28
	}
	return b
}

func (b *batch) free() {
	free(b.base)
	free(b.rowIn)
}

// outBytes is the size of a launch's outputs: the columns, then the statuses.
func (b *batch) outBytes() int { return 4 * (kernels.OutColumns + 1) * b.rows }

// newOut is an output buffer of exactly outBytes, every byte 0xff: a float that no launch
// writes stays a NaN that no launch would write, a status stays −1.
func (b *batch) newOut() unsafe.Pointer {
	p := alloc(b.outBytes())
	buf := unsafe.Slice((*byte)(p), b.outBytes())
	for i := range buf {
		buf[i] = 0xff
	}
	return p
}

var columnNames = [kernels.OutColumns]string{"entropy", "logprob", "sampled", "correction", "factor", "polarity", "deltaH"}

// compare checks that got and want, two launches' outputs for b, are bitwise equal, that every
// row has a status, and that the data-error statuses are the rows' (independently of hostref).
func (b *batch) compare(t *testing.T, what string, got, want unsafe.Pointer) {
	t.Helper()
	n := b.rows
	g := unsafe.Slice((*uint32)(got), (kernels.OutColumns+1)*n)
	w := unsafe.Slice((*uint32)(want), (kernels.OutColumns+1)*n)
	diffs := 0
	for i := range g {
		if g[i] == w[i] {
			continue
		}
		if diffs++; diffs > 6 {
			continue
		}
		col, row := i/n, i%n
		if col == kernels.OutColumns {
			t.Errorf("%s: row %d (%s): status %d, hostref %d", what, row, kindNames[b.kinds[row]], int32(g[i]), int32(w[i]))
		} else {
			t.Errorf("%s: row %d (%s): %s = %v (%#08x), hostref %v (%#08x)", what, row, kindNames[b.kinds[row]],
				columnNames[col], math.Float32frombits(g[i]), g[i], math.Float32frombits(w[i]), w[i])
		}
	}
	if diffs > 6 {
		t.Errorf("%s: %d differing values in all", what, diffs)
	}
	status := unsafe.Slice((*int32)(unsafe.Add(got, 4*kernels.OutColumns*n)), n)
	for r, s := range status {
		bad, finite := false, false
		for j := range b.V {
			x := b.decoded.At(r, j)
			bad = bad || x != x || x > math.MaxFloat32
			finite = finite || (x == x && !math.IsInf(float64(x), 0))
		}
		var want int32 = -1 // any status but the data errors
		switch {
		case bad:
			want = kernels.StatusBadLogit
		case !finite:
			want = kernels.StatusNoFinite
		}
		switch {
		case s < kernels.StatusOK || s > kernels.StatusOldLogprob:
			t.Errorf("%s: row %d (%s): status %d (never written?)", what, r, kindNames[b.kinds[r]], s)
		case want >= 0 && s != want:
			t.Errorf("%s: row %d (%s): status %d, want %d", what, r, kindNames[b.kinds[r]], s, want)
		case want < 0 && (s == kernels.StatusBadLogit || s == kernels.StatusNoFinite):
			t.Errorf("%s: row %d (%s): status %d for a row with finite logits and no NaN/+Inf", what, r, kindNames[b.kinds[r]], s)
		}
	}
}

// launchCases are the shapes of TestLaunchMatchesHostref: vocabulary sizes around the 16-byte
// vector, the 256-thread strip and the group sizes; row counts that are multiples of nothing;
// grids smaller than, equal to and larger than the row count (the grid-stride loop); and bases
// offset from the 256-byte alignment (the head/body/tail split moves from row to row anyway
// when V·size is not a multiple of 16). The 151,936-token rows are few: a row costs ~5 ms.
var launchCases = []struct {
	V, rows int
	grids   []int
	offset  int // elements past the aligned base
}{
	{V: 1, rows: 5, grids: []int{1, 2, 5, 9}},
	{V: 7, rows: 37, grids: []int{1, 5, 37, 40}},
	{V: 7, rows: 5, grids: []int{3}, offset: 3},
	{V: 31, rows: 5, grids: []int{1, 3, 5, 8}},
	{V: 32, rows: 37, grids: []int{4, 37}, offset: 1},
	{V: 1000, rows: 1, grids: []int{1, 4}},
	{V: 1000, rows: 37, grids: []int{1, 7, 37, 64}},
	{V: 1000, rows: 5, grids: []int{2}, offset: 5},
	{V: 4099, rows: 5, grids: []int{2, 5, 6}},
	{V: 151936, rows: 2, grids: []int{1, 3}},
}

// polarity.cu run by the emulator and the header's sequential model of it (hostref.Launch:
// pp_row_tree's strips, shuffle tree and warp-0 merge) run the same arithmetic in the same
// merge order, so every output and status must agree bit for bit, whatever the grid, and
// whatever the order in which the emulator runs a block's threads. A difference is a bug in
// polarity.cu's glue (row loop, offsets, shuffles, shared memory, barriers, thread 0's writes)
// or in pp_row_tree's claim to mirror it.
func TestLaunchMatchesHostref(t *testing.T) {
	seed := polaritytest.Seed(t)
	for di, dt := range dtypes {
		for ci, c := range launchCases {
			name := fmt.Sprintf("%v/V=%d/rows=%d/offset=%d", dt, c.V, c.rows, c.offset)
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				rng := polaritytest.Rand(seed ^ int64(di*1000+ci+1)*0x5851f42d4c957f2d)
				b := newBatch(rng, dt, c.V, c.rows, c.offset)
				defer b.free()
				want := b.newOut()
				defer free(want)
				hostref.Launch(dt, b.logits, int64(b.V), int64(b.rows), b.rowIn, b.p, want)
				got := b.newOut()
				defer free(got)
				run := func(what string, launch func() error) {
					buf := unsafe.Slice((*byte)(got), b.outBytes())
					for i := range buf {
						buf[i] = 0xff
					}
					if err := launch(); err != nil {
						t.Fatalf("%s: %v", what, err)
					}
					b.compare(t, what, got, want)
				}
				for _, grid := range c.grids {
					run(fmt.Sprintf("grid %d", grid), func() error {
						return Launch(dt, b.logits, int64(b.V), int64(b.rows), b.rowIn, b.p, got, grid)
					})
				}
				// Random schedules (LaunchShuffled): twice with the first grid, which is smaller
				// than the row count (blocks loop over rows, reusing warp_state), once with the
				// last.
				for _, grid := range []int{c.grids[0], c.grids[0], c.grids[len(c.grids)-1]} {
					sched := rng.Uint64() | 1
					run(fmt.Sprintf("grid %d, schedule %#x", grid, sched), func() error {
						return LaunchShuffled(dt, b.logits, int64(b.V), int64(b.rows), b.rowIn, b.p, got, grid, sched)
					})
				}
			})
		}
	}
}

// A launch with no rows writes nothing; a launch of no blocks or of an unknown dtype is an
// error, not a crash.
func TestLaunchEdges(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	b := newBatch(rng, polarity.Float32, 9, 3, 0)
	defer b.free()
	out := b.newOut()
	defer free(out)
	if err := Launch(polarity.Float32, b.logits, 9, 0, b.rowIn, b.p, out, 4); err != nil {
		t.Errorf("launch of no rows: %v", err)
	}
	for i, x := range unsafe.Slice((*uint32)(out), b.outBytes()/4) {
		if x != 0xffffffff {
			t.Fatalf("launch of no rows wrote word %d", i)
		}
	}
	var e *Error
	for _, grid := range []int{0, -1} {
		if err := Launch(polarity.Float32, b.logits, 9, 3, b.rowIn, b.p, out, grid); !errors.As(err, &e) || e.Code != LaunchFailure {
			t.Errorf("grid %d: error %v, want a launch failure", grid, err)
		}
	}
	if err := Launch(polarity.Dtype(7), b.logits, 9, 3, b.rowIn, b.p, out, 1); !errors.As(err, &e) || e.Code != LaunchFailure {
		t.Errorf("dtype 7: error %v, want a launch failure", err)
	}
}

// The emulator's shuffles and barriers deliver CUDA's values (selftest.cpp's k_semantics),
// with any block size that is a whole number of warps, any grid and any schedule.
func TestEmulatorSemantics(t *testing.T) {
	for _, c := range []struct{ grid, block int }{{1, 32}, {3, 64}, {2, 256}, {5, 96}, {1, 1024}} {
		for _, seed := range []uint64{0, 1, 0xdeadbeef} {
			out := make([]int32, 8*c.grid)
			if err := selfTest(0, c.grid, c.block, out, seed); err != nil {
				t.Fatalf("grid %d block %d schedule %#x: %v", c.grid, c.block, seed, err)
			}
			for bx := range c.grid {
				n := c.block
				third := (n + 2) / 3
				want := []int32{int32(bx*1000*n + n*(n-1)/2), 1, 0, 0, int32(third), 0, int32(n), int32(c.grid)}
				got := out[8*bx : 8*bx+8]
				for k := range want {
					if got[k] != want[k] {
						t.Errorf("grid %d block %d schedule %#x, block %d: got %v, want %v "+
							"(sum, or, or of none, and, count, wrong shuffles, blockDim, gridDim)", c.grid, c.block, seed, bx, got, want)
						break
					}
				}
			}
		}
	}
}

// What hangs a GPU or is undefined there is an error here, in every schedule: these kernels
// (selftest.cpp) each break one rule, and the launch must fail with the matching code.
func TestEmulatorDetectsDivergence(t *testing.T) {
	for _, c := range []struct {
		kernel int
		name   string
		code   Code
		text   string
	}{
		{1, "warp 0 alone at __syncthreads", DivergentBarrier, "__syncthreads (selftest.cpp:"},
		{2, "a lane skips a shuffle and exits", DivergentShuffle, "__shfl_xor_sync (selftest.cpp:"},
		{3, "a lane skips a shuffle for __syncthreads", Deadlock, "31 lanes at __shfl_xor_sync"},
		{4, "__syncthreads and __syncthreads_or mixed", DivergentBarrier, "__syncthreads_or"},
		{5, "lanes at two different shuffles", DivergentShuffle, "divergent shuffles"},
		{6, "a shuffle mask without the caller", DivergentShuffle, "does not name its lane"},
	} {
		for _, seed := range []uint64{0, 1, 2, 3, 0x1234567} {
			out := make([]int32, 1)
			err := selfTest(c.kernel, 2, 256, out, seed)
			var e *Error
			if !errors.As(err, &e) || e.Code != c.code || !strings.Contains(e.Msg, c.text) {
				t.Errorf("%s (schedule %#x): error %v, want %v mentioning %q", c.name, seed, err, c.code, c.text)
			}
		}
	}
}

// The random schedule reorders threads enough to expose a missing barrier: without the
// __syncthreads at the end of its row loop, k_race's warp 1 overwrites the shared word before
// thread 1 has read it in some schedules (the seeds are fixed, so this cannot flake); with it,
// no schedule changes the result. (Run in order, the racy kernel happens to be right.)
func TestEmulatorExposesRaces(t *testing.T) {
	const rows = 64
	identity := func(out []int32) bool {
		for i, v := range out {
			if v != int32(i) {
				return false
			}
		}
		return true
	}
	exposed := 0
	for seed := uint64(0); seed <= 32; seed++ {
		for _, fixed := range []bool{false, true} {
			kernel := 7
			if fixed {
				kernel = 8
			}
			out := make([]int32, rows)
			if err := selfTest(kernel, 1, 256, out, seed); err != nil {
				t.Fatalf("race kernel (fixed %v, schedule %d): %v", fixed, seed, err)
			}
			switch {
			case fixed && !identity(out):
				t.Errorf("race kernel with its barrier, schedule %d: %v, want 0, 1, 2, …", seed, out)
			case !fixed && !identity(out):
				if seed == 0 {
					t.Errorf("racy kernel in order: %v; the in-order schedule used to hide the race", out)
				}
				exposed++
			}
		}
	}
	if exposed == 0 {
		t.Errorf("no schedule exposed the race of k_race without its final __syncthreads")
	}
}

// The row offset is 64-bit: row·V·size past 2³¹ bytes (2³¹ bytes is 3,534 rows of a 151,936-token
// float32 vocabulary). Three rows of 2²⁸ float32 logits put the last one at 2 GiB; the logits
// are zero-page memory but for a spike per row at a different place, so a row read from the
// wrong offset shows. It reads 3 GiB per launch (16 s for the test on a 2-core EPYC): set
// PAPO_KERNELEMU_BIG=1 to run it.
func TestLaunch64BitRowOffset(t *testing.T) {
	if os.Getenv("PAPO_KERNELEMU_BIG") == "" {
		t.Skip("set PAPO_KERNELEMU_BIG=1 to run the 3 GiB launch")
	}
	const V, rows = 1 << 28, 3
	mem, err := syscall.Mmap(-1, 0, 4*V*rows, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		t.Skipf("mmap of %d bytes: %v", 4*V*rows, err)
	}
	defer syscall.Munmap(mem)
	z := unsafe.Slice((*float32)(unsafe.Pointer(&mem[0])), V*rows)
	in := make([]kernels.RowIn, rows)
	for r := range rows {
		j := (r + 1) * (V / 4)
		z[r*V+j] = float32(20 + 2*r)
		in[r] = kernels.RowIn{Token: int32(j), Flags: kernels.Trained}
	}
	rowIn := alloc(kernels.RowInBytes * rows)
	defer free(rowIn)
	copy(unsafe.Slice((*kernels.RowIn)(rowIn), rows), in)
	b := &batch{rows: rows}
	got, want := b.newOut(), b.newOut()
	defer free(got)
	defer free(want)
	p := polarity.DefaultParams()
	done := make(chan struct{})
	go func() {
		hostref.Launch(polarity.Float32, unsafe.Pointer(&mem[0]), V, rows, rowIn, p, want)
		close(done)
	}()
	if err := Launch(polarity.Float32, unsafe.Pointer(&mem[0]), V, rows, rowIn, p, got, 2); err != nil {
		t.Fatal(err)
	}
	<-done
	g := unsafe.Slice((*float32)(got), (kernels.OutColumns+1)*rows)
	w := unsafe.Slice((*float32)(want), (kernels.OutColumns+1)*rows)
	for i := range g {
		if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
			t.Errorf("word %d (column %d, row %d): %v, hostref %v", i, i/rows, i%rows, g[i], w[i])
		}
	}
	for r := range rows {
		// log π of the spike: a − log(e^a + V − 1).
		a := float64(20 + 2*r)
		ref := a - math.Log(math.Exp(a)+V-1)
		if lp := float64(g[rows+r]); math.Abs(lp-ref) > 1e-3*math.Abs(ref) {
			t.Errorf("row %d: log π of the spike %v, want %v (the row was read elsewhere?)", r, lp, ref)
		}
	}
}
