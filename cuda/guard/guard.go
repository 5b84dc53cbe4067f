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
// and exits with status 3, which papo --device auto reads as "use the CPU engine". A host
// without libcuda.so.1 cannot start the binary at all (the dynamic loader refuses it before any
// Go code runs); papo reports that failed probe the same way.
//
// In a test binary (name ending in .test) no test can run without a device: if this init
// returned, cu's init would exit 1 before TestMain (measured: go test then prints cu's
// "Error in initialization … NoDevice" and FAIL), so neither TestMain nor t.Skip is reachable.
// This init therefore reports the skip itself, on stdout, and exits with status 0:
//
//	SKIP: no usable CUDA device: CUDA_ERROR_NO_DEVICE (cuInit: no CUDA-capable device is detected); none of the tests in cuda.test ran (a -tags cuda test binary needs a CUDA device)
//	testing: warning: no tests to run
//
// It prints no PASS line: go test reports "ok … [no tests to run]" (and shows the SKIP line with
// -v), never a pass of tests that did not run. The status is 0 because go test turns any other
// into FAIL, and a missing device is a skip, not a failure; scripts tell the skip apart by the
// SKIP line (.ci/cuda.sh requires it and fails on a PASS). go test does not cache the result,
// since the testing package never starts (no test log), so a GPU added later is seen.
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
		// The "no tests to run" line makes go test print "[no tests to run]" after "ok" even
		// without -v; see the package comment for why this is status 0 and has no PASS.
		fmt.Printf("SKIP: %v; none of the tests in %s ran (a -tags cuda test binary needs a CUDA device)\n", Err, prog)
		fmt.Printf("testing: warning: no tests to run\n")
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
