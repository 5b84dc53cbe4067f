//go:build cgo

package hostref

// The header lives in kernels/, outside this directory, where cmd/go does not track it; this
// package imports package kernels, which embeds the header (kernels.RowHeader), so editing the
// header still rebuilds this package.

/*
#cgo CFLAGS: -O2 -std=gnu11 -Wall -I${SRCDIR}/../../kernels
#cgo LDFLAGS: -lm
#include <stddef.h>
#include <stdlib.h>
#include "polarity_row.cuh"

static size_t pp_row_in_size(void) { return sizeof(pp_row_in); }
static size_t pp_row_in_offset(int k) {
	switch (k) {
	case 0: return offsetof(pp_row_in, adv);
	case 1: return offsetof(pp_row_in, old_logprob);
	case 2: return offsetof(pp_row_in, token);
	case 3: return offsetof(pp_row_in, flags);
	}
	return (size_t)-1;
}

static pp_state pp_host_row_state(int dt, const void *row, long long V, float c, int tree, int *bad) {
	return tree ? pp_row_tree(bad, dt, row, V, c) : pp_row_seq(bad, dt, row, V, c);
}

// pp_host_alloc is n bytes at a 256-byte-aligned address, like a device allocation, and exactly
// n bytes long, so that an AddressSanitizer build (go test -asan) catches a read past the
// last row.
static void *pp_host_alloc(size_t n) {
	void *p = 0;
	return posix_memalign(&p, 256, n ? n : 1) == 0 ? p : 0;
}

static pp_state pp_host_update(pp_state st, const float *z, int n, float c, int *bad) {
	*bad = 0;
	pp_update(&st, bad, z, n, c);
	return st;
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
)

// State is a kernel row state (pp_state): the running maximum M of the raw logits and the
// base-2 shifted sums of polarity_row.cuh, in float32 as the kernel keeps them.
type State struct {
	M, Rest0, S1, Rest2, S3 float32
}

// EmptyState is the state of no element.
func EmptyState() State { return fromC(C.pp_empty()) }

// Sums converts s to docs/MATH.md §3's float64 state at temperature tau (M/τ, the base-e sums).
func (s State) Sums(tau float64) polarity.Sums {
	if math.IsInf(float64(s.M), -1) {
		return polarity.EmptySums()
	}
	return polarity.Sums{
		M:    float64(s.M) / tau,
		Rest: float64(s.Rest0),
		S1:   math.Ln2 * float64(s.S1),
		S2:   1 + float64(s.Rest2),
		S3:   math.Ln2 * float64(s.S3),
	}
}

func fromC(s C.pp_state) State {
	return State{float32(s.m), float32(s.rest0), float32(s.s1), float32(s.rest2), float32(s.s3)}
}

func (s State) c() C.pp_state {
	return C.pp_state{m: C.float(s.M), rest0: C.float(s.Rest0), s1: C.float(s.S1), rest2: C.float(s.Rest2), s3: C.float(s.S3)}
}

func scale(tau float64) C.float { return C.float(float32(math.Log2E / tau)) }

// Update folds the group of raw logits z (1 ≤ len(z) ≤ kernels.GroupElems) into s, as one
// pp_update of the kernel; bad reports a NaN or +Inf in z.
func Update(s State, z []float32, tau float64) (_ State, bad bool) {
	if len(z) < 1 || len(z) > kernels.GroupElems {
		panic(fmt.Sprintf("hostref: Update of %d elements", len(z)))
	}
	var b C.int
	o := C.pp_host_update(s.c(), (*C.float)(unsafe.Pointer(&z[0])), C.int(len(z)), scale(tau), &b)
	return fromC(o), b != 0
}

// Merge is the kernel's pp_merge(a, b).
func Merge(a, b State, tau float64) State { return fromC(C.pp_merge(a.c(), b.c(), scale(tau))) }

// RowState reduces row i of l as the kernel does (tree: the block's strips, warp-shuffle and
// block merges; otherwise one thread's single pass) with the row at a 16-byte-aligned address
// plus offset bytes (0 ≤ offset < 16, a multiple of the element size), and reports a NaN or
// +Inf logit.
func RowState(l *polarity.Logits, i int, tau float64, tree bool, offset int) (_ State, bad bool) {
	es := l.Dtype.Size()
	if offset < 0 || offset >= kernels.VecBytes || offset%es != 0 {
		panic(fmt.Sprintf("hostref: row offset %d", offset))
	}
	raw := rowBytes(l, i, i+1)
	buf := C.pp_host_alloc(C.size_t(offset + len(raw)))
	if buf == nil {
		panic("hostref: out of memory")
	}
	defer C.free(buf)
	dst := unsafe.Add(buf, offset)
	copy(unsafe.Slice((*byte)(dst), len(raw)), raw)
	var b C.int
	t := C.int(0)
	if tree {
		t = 1
	}
	s := C.pp_host_row_state(C.int(l.Dtype), dst, C.longlong(l.V), scale(tau), t, &b)
	return fromC(s), b != 0
}

// rowBytes is the raw bytes of rows [lo, hi) of l.
func rowBytes(l *polarity.Logits, lo, hi int) []byte {
	if l.Dtype == polarity.Float32 {
		s := l.F32[lo*l.V : hi*l.V]
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 4*len(s))
	}
	s := l.Bits[lo*l.V : hi*l.V]
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), 2*len(s))
}

// Engine is a host run of the CUDA engine's kernel launches: the same row inputs
// (kernels.PackRows), the kernel's row loop, block reduction tree and token step compiled for
// the host, and the same translation of the kernel's statuses into errors (kernels.Unpack). It
// is slow (one emulated block of 256 threads per row) and exists for tests.
type Engine struct{}

// New returns the host engine.
func New() *Engine { return &Engine{} }

// Name says what runs.
func (e *Engine) Name() string { return "cuda-hostref (kernel arithmetic on the host)" }

// Close does nothing.
func (e *Engine) Close() error { return nil }

// hostChunkRows is the number of rows run per C call (cancellation is checked between calls).
const hostChunkRows = 32

// Compute runs b as the kernel would, in chunks of rows each laid out from an aligned base
// like a device buffer.
func (e *Engine) Compute(ctx context.Context, b *polarity.Batch, p polarity.Params, out *polarity.Result) error {
	n, err := polarity.Begin(ctx, b, p, out)
	if err != nil || n == 0 {
		return err
	}
	rows := make([]kernels.RowIn, n)
	kernels.PackRows(b, 0, rows)
	var first error
	for lo := 0; lo < n; lo += hostChunkRows {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(n, lo+hostChunkRows)
		m := hi - lo
		raw := rowBytes(&b.Logits, lo, hi)
		buf := C.pp_host_alloc(C.size_t(len(raw)))
		if buf == nil {
			return errors.New("hostref: out of memory")
		}
		copy(unsafe.Slice((*byte)(buf), len(raw)), raw)
		res := make([]float32, (kernels.OutColumns+1)*m) // the columns, then the statuses
		Launch(b.Logits.Dtype, buf, int64(b.Logits.V), int64(m), unsafe.Pointer(&rows[lo]), p, unsafe.Pointer(&res[0]))
		cols := res[:kernels.OutColumns*m]
		status := unsafe.Slice((*int32)(unsafe.Pointer(&res[kernels.OutColumns*m])), m)
		C.free(buf)
		if err := kernels.Unpack(b, p, lo, cols, status, out); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Launch is one launch of the kernel for dtype dt run on the host, over memory laid out as on
// the device: rows rows of V logits at logits (from a 16-byte-aligned base), the row inputs
// (kernels.RowIn) at rowIn, and the outputs at out: kernels.OutColumns columns of rows float32,
// then rows int32 statuses. The pipeline tests' simulated device runs its launches with it.
func Launch(dt polarity.Dtype, logits unsafe.Pointer, V, rows int64, rowIn unsafe.Pointer, p polarity.Params, out unsafe.Pointer) {
	natural := C.longlong(0)
	if p.NaturalGradient {
		natural = 1
	}
	C.pp_host_rows(C.int(dt), logits, C.longlong(V), C.longlong(rows), (*C.pp_row_in)(rowIn),
		C.double(p.Temperature), C.double(p.LR), C.double(p.ClipLow), C.double(p.ClipHigh), natural,
		(*C.float)(out), (*C.int32_t)(unsafe.Add(out, 4*kernels.OutColumns*rows)), 1)
}

// cLayout reports sizeof(pp_row_in) and the offsets of its fields (adv, old_logprob, token,
// flags), for the test that kernels.RowIn matches it.
func cLayout() (size int, offsets [4]int) {
	size = int(C.pp_row_in_size())
	for k := range offsets {
		offsets[k] = int(C.pp_row_in_offset(C.int(k)))
	}
	return size, offsets
}

// cConstants are the header's #defines that the Go side relies on.
func cConstants() map[string]int {
	return map[string]int{
		"PP_BLOCK_THREADS": C.PP_BLOCK_THREADS,
		"PP_WARP":          C.PP_WARP,
		"PP_VEC_BYTES":     C.PP_VEC_BYTES,
		"PP_GROUP_ELEMS":   C.PP_GROUP_ELEMS,
		"PP_OUT_COLUMNS":   C.PP_OUT_COLUMNS,
		"PP_HAS_ADV":       C.PP_HAS_ADV,
		"PP_HAS_OLD":       C.PP_HAS_OLD,
		"PP_TRAINED":       C.PP_TRAINED,
		"PP_OK":            C.PP_OK,
		"PP_ERR_LOGIT":     C.PP_ERR_LOGIT,
		"PP_ERR_NO_FINITE": C.PP_ERR_NO_FINITE,
		"PP_ERR_ADV":       C.PP_ERR_ADV,
		"PP_ERR_OLD":       C.PP_ERR_OLD,
		"PP_F32":           C.PP_F32,
		"PP_F16":           C.PP_F16,
		"PP_BF16":          C.PP_BF16,
		"PP_OUT_ENTROPY":   C.PP_OUT_ENTROPY,
		"PP_OUT_DELTA_H":   C.PP_OUT_DELTA_H,
	}
}
