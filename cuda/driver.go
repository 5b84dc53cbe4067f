//go:build cuda

package cuda

/*
#cgo LDFLAGS: -lcuda
#cgo linux CFLAGS: -I/usr/local/cuda/include
#cgo linux LDFLAGS: -L/usr/local/cuda/lib64 -L/usr/lib/x86_64-linux-gnu
#include <cuda.h>

static const char *pp_result_name(int r) {
	const char *s = 0;
	if (cuGetErrorName((CUresult)r, &s) != CUDA_SUCCESS || s == 0) return "CUDA_ERROR_UNRECOGNISED";
	return s;
}

static const char *pp_result_string(int r) {
	const char *s = 0;
	if (cuGetErrorString((CUresult)r, &s) != CUDA_SUCCESS || s == 0) return "unrecognised error code";
	return s;
}
*/
import "C"

import (
	"fmt"
	"reflect"
	"unsafe"

	"github.com/entropy-polarity/papo/cuda/pipeline"

	// Initialised before gorgonia.org/cu (import path order): exits with a clear message on a
	// host without a device instead of cu's generic exit 1. See package guard.
	_ "github.com/entropy-polarity/papo/cuda/guard"
)

// driverError is a CUresult with the driver's name and description for it.
type driverError struct {
	Code       int
	Name, Desc string
}

func (e *driverError) Error() string { return fmt.Sprintf("%s (%s)", e.Name, e.Desc) }

func newDriverError(code int) *driverError {
	return &driverError{Code: code, Name: C.GoString(C.pp_result_name(C.int(code))), Desc: C.GoString(C.pp_result_string(C.int(code)))}
}

// asDriverError turns an error of gorgonia.org/cu (its unexported CUresult type, an int) into a
// driverError; other errors (cu's own argument checks) are returned unchanged.
func asDriverError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*driverError); ok {
		return err
	}
	v := reflect.ValueOf(err)
	if v.Kind() == reflect.Int && v.Type().PkgPath() == "gorgonia.org/cu" {
		return newDriverError(int(v.Int()))
	}
	return err
}

func result(r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	return newDriverError(int(r))
}

// allocPinned is n bytes of page-locked host memory from cuMemHostAlloc (gorgonia.org/cu wraps
// only its release), which the copy engines read and write directly, so copies to and from it
// run at full PCIe speed and asynchronously.
func allocPinned(n int64) (pipeline.Pinned, error) {
	var p unsafe.Pointer
	if err := result(C.cuMemHostAlloc(&p, C.size_t(n), 0)); err != nil {
		return pipeline.Pinned{}, err
	}
	return pipeline.Pinned{Ptr: p, N: n}, nil
}

func freePinned(h pipeline.Pinned) error { return result(C.cuMemFreeHost(h.Ptr)) }
