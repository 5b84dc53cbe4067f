//go:build cuda

// Package guard makes a CUDA build of papo fail clearly on a host without a usable GPU.
//
// gorgonia.org/cu calls cuInit in its package initialiser and, on failure, prints a generic
// line and exits with status 1 before main runs (docs/DESIGN.md). Go initialises packages in the
// order of their import paths among those whose imports are initialised (Go ≥ 1.21), and this
// package imports only what cu imports too, with a path that sorts before "gorgonia.org/cu":
// so its init runs first. It calls cuInit and cuDeviceGetCount itself and, if there is no
// device, prints one line to stderr, e.g.
//
//	papo-cuda: no usable CUDA device: CUDA_ERROR_NO_DEVICE (cuInit: no CUDA-capable device is detected); this binary needs a GPU (use papo, the CPU build, on this host)
//
// and exits with status 3, which papo --device auto reads as "use the CPU engine". In a test
// binary (name ending in .test) it instead says that the binary's GPU tests are skipped and
// exits with status 0 (go test then reports "ok … [no tests to run]"). A host without
// libcuda.so.1 cannot start the binary at all (the dynamic loader refuses it before any Go
// code runs); papo reports that failed probe the same way.
//
// .ci/cuda.sh checks the order on a real build (papo-cuda probe on a GPU-less host must print
// this line and exit 3; cu's own failure would exit 1) and that this package's imports stay a
// subset of cu's.
package guard

/*
#cgo LDFLAGS: -lcuda
#cgo linux CFLAGS: -I/usr/local/cuda/include
#cgo linux LDFLAGS: -L/usr/local/cuda/lib64 -L/usr/lib/x86_64-linux-gnu
#include <cuda.h>

static const char *pp_err_name(CUresult r) {
	const char *s = 0;
	if (cuGetErrorName(r, &s) != CUDA_SUCCESS || s == 0) return "CUDA_ERROR_UNKNOWN";
	return s;
}

static const char *pp_err_string(CUresult r) {
	const char *s = 0;
	if (cuGetErrorString(r, &s) != CUDA_SUCCESS || s == 0) return "unrecognised error code";
	return s;
}
*/
import "C"

// Only packages that gorgonia.org/cu imports itself: an import of ours that cu lacks could be
// initialised after cu, and this package with it.
import (
	"fmt"
	"os"
)

// ExitNoDevice is the exit status of a CUDA build started on a host without a usable device.
const ExitNoDevice = 3

// Devices is the number of CUDA devices the driver reported at start-up (≥ 1 once init returns
// in a program that is not a test).
var Devices int

// Err says why there is no usable device; nil when there is one.
var Err error

func init() {
	Devices, Err = check()
	if Err == nil {
		return
	}
	prog := os.Args[0]
	for i := len(prog) - 1; i >= 0; i-- {
		if prog[i] == '/' {
			prog = prog[i+1:]
			break
		}
	}
	if len(prog) > 5 && prog[len(prog)-5:] == ".test" {
		// gorgonia.org/cu would exit 1 right after this: skip the package's GPU tests instead.
		// The "no tests to run" line makes go test print "[no tests to run]" after "ok" even
		// without -v.
		fmt.Printf("SKIP: this test binary is a -tags cuda build, which needs a CUDA device: %v\n", Err)
		fmt.Printf("\ntesting: warning: no tests to run\nPASS\n")
		os.Exit(0)
	}
	fmt.Fprintf(os.Stderr, "%s: %v; this binary needs a GPU (use papo, the CPU build, on this host)\n", prog, Err)
	os.Exit(ExitNoDevice)
}

func check() (int, error) {
	if r := C.cuInit(0); r != C.CUDA_SUCCESS {
		return 0, fmt.Errorf("no usable CUDA device: %s (cuInit: %s)", C.GoString(C.pp_err_name(r)), C.GoString(C.pp_err_string(r)))
	}
	var n C.int
	if r := C.cuDeviceGetCount(&n); r != C.CUDA_SUCCESS {
		return 0, fmt.Errorf("no usable CUDA device: %s (cuDeviceGetCount: %s)", C.GoString(C.pp_err_name(r)), C.GoString(C.pp_err_string(r)))
	}
	if n == 0 {
		return 0, fmt.Errorf("no usable CUDA device: CUDA_ERROR_NO_DEVICE (the driver reports 0 devices)")
	}
	return int(n), nil
}
