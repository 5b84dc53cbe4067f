//go:build cgo

package kernelemu

// emu.cpp includes kernels/polarity.cu and kernels/polarity_row.cuh from outside this directory,
// where cmd/go does not track them. This package imports package kernels, which embeds both
// (kernels.Source, kernels.RowHeader), so editing either rebuilds this package too.

/*
#cgo CFLAGS: -O2 -std=gnu11 -Wall -I${SRCDIR}/../../kernels
#cgo CXXFLAGS: -O2 -std=gnu++17 -Wall -I${SRCDIR}/../../kernels
#cgo LDFLAGS: -lm
#include <stdlib.h>
#include "kernelemu.h"

// pp_emu_alloc is n bytes at a 256-byte-aligned address, like a device allocation, and exactly
// n bytes long, so that an AddressSanitizer build (go test -asan) catches an access past it.
static void *pp_emu_alloc(size_t n) {
	void *p = 0;
	return posix_memalign(&p, 256, n ? n : 1) == 0 ? p : 0;
}
*/
import "C"

import (
	"fmt"
	"unsafe"

	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
)

// Launch runs one launch of polarity.cu's kernel for dtype dt on the host with grid blocks of
// kernels.BlockThreads threads, over memory laid out as for hostref.Launch: rows rows of V
// logits at logits (from a 16-byte-aligned base), the row inputs (kernels.RowIn) at rowIn, and
// the outputs at out: kernels.OutColumns columns of rows float32, then rows int32 statuses (at
// byte offset 4·kernels.OutColumns·rows). The threads of a block run in order. The error is an
// *Error when the emulator finds a deadlock, a divergent barrier or shuffle, or a bad launch.
func Launch(dt polarity.Dtype, logits unsafe.Pointer, V, rows int64, rowIn unsafe.Pointer, p polarity.Params, out unsafe.Pointer, grid int) error {
	return launch(dt, logits, V, rows, rowIn, p, out, grid, 0)
}

// LaunchShuffled is Launch with the threads of each block scheduled in a pseudo-random order
// drawn from seed (≠ 0): at every barrier the next thread to run is picked at random among
// those that can. A kernel without data races gives the same results for every seed.
func LaunchShuffled(dt polarity.Dtype, logits unsafe.Pointer, V, rows int64, rowIn unsafe.Pointer, p polarity.Params, out unsafe.Pointer, grid int, seed uint64) error {
	if seed == 0 {
		seed = 0x9e3779b97f4a7c15
	}
	return launch(dt, logits, V, rows, rowIn, p, out, grid, seed)
}

func launch(dt polarity.Dtype, logits unsafe.Pointer, V, rows int64, rowIn unsafe.Pointer, p polarity.Params, out unsafe.Pointer, grid int, seed uint64) error {
	if grid < 1 || grid > 1<<31-1 {
		return &Error{Code: LaunchFailure, Msg: fmt.Sprintf("grid of %d blocks", grid)}
	}
	natural := C.longlong(0)
	if p.NaturalGradient {
		natural = 1
	}
	var msg [1024]C.char
	rc := C.pp_emu_launch_ex(C.int(dt), logits, C.longlong(V), C.longlong(rows), (*C.pp_row_in)(rowIn),
		C.double(p.Temperature), C.double(p.LR), C.double(p.ClipLow), C.double(p.ClipHigh), natural,
		(*C.float)(out), (*C.int)(unsafe.Add(out, 4*kernels.OutColumns*rows)), C.int(grid),
		C.ulonglong(seed), &msg[0], C.size_t(len(msg)))
	return codeError(rc, &msg[0])
}

// Code is the emulator's error class.
type Code int

// The emulator's errors: on a GPU the first three are hangs or undefined behaviour.
const (
	Deadlock         Code = C.PP_EMU_ERR_DEADLOCK // no thread can run, but some have not exited
	DivergentBarrier Code = C.PP_EMU_ERR_BARRIER  // a block barrier not reached by every thread alike
	DivergentShuffle Code = C.PP_EMU_ERR_SHFL     // a warp shuffle not reached by every named lane alike
	LaunchFailure    Code = C.PP_EMU_ERR_LAUNCH   // a bad launch configuration or dtype, out of memory
)

func (c Code) String() string {
	switch c {
	case Deadlock:
		return "deadlock"
	case DivergentBarrier:
		return "divergent block barrier"
	case DivergentShuffle:
		return "divergent warp shuffle"
	case LaunchFailure:
		return "launch failure"
	}
	return fmt.Sprintf("emulator error %d", int(c))
}

// Error is a launch the emulator could not run to completion.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return "kernelemu: " + e.Code.String() + ": " + e.Msg }

func codeError(rc C.int, msg *C.char) error {
	if rc == C.PP_EMU_OK {
		return nil
	}
	return &Error{Code: Code(rc), Msg: C.GoString(msg)}
}

// alloc is n bytes of C memory at a 256-byte-aligned address (see pp_emu_alloc); free it
// with free.
func alloc(n int) unsafe.Pointer {
	p := C.pp_emu_alloc(C.size_t(n))
	if p == nil {
		panic("kernelemu: out of memory")
	}
	return p
}

func free(p unsafe.Pointer) { C.free(p) }

// selfTest runs test kernel number kernel of selftest.cpp with grid blocks of block threads
// over out, scheduled in order (seed 0) or pseudo-randomly.
func selfTest(kernel, grid, block int, out []int32, seed uint64) error {
	var msg [1024]C.char
	var p *C.int
	if len(out) > 0 {
		p = (*C.int)(unsafe.Pointer(&out[0]))
	}
	rc := C.pp_emu_selftest(C.int(kernel), C.int(grid), C.int(block), C.int(len(out)), p, C.ulonglong(seed), &msg[0], C.size_t(len(msg)))
	return codeError(rc, &msg[0])
}
