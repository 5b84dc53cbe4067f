//go:build !cuda

package main

import (
	"errors"
	"io"

	"github.com/entropy-polarity/papo/polarity"
)

// cudaBuiltIn: this is the plain papo build, without the CUDA engine.
const cudaBuiltIn = false

var errNoCUDA = errors.New("this papo binary was built without CUDA; build papo-cuda with `make cuda`")

// newCUDAEngine is not available in this build.
func newCUDAEngine(dev int, cpu polarity.Engine, logw io.Writer) (polarity.Engine, error) {
	return nil, errNoCUDA
}

// probeDevices is not available in this build.
func probeDevices(w io.Writer) error { return errNoCUDA }
