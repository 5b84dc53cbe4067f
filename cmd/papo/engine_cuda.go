//go:build cuda

package main

import (
	"io"

	"github.com/entropy-polarity/papo/cuda"
	"github.com/entropy-polarity/papo/cuda/fallback"
	"github.com/entropy-polarity/papo/polarity"
)

// cudaBuiltIn: this is papo-cuda, the build with the CUDA engine.
const cudaBuiltIn = true

// newCUDAEngine returns the CUDA engine on device dev, wrapped so that a GPU failure on a
// batch recomputes that batch on cpu and logs one line to logw.
func newCUDAEngine(dev int, cpu polarity.Engine, logw io.Writer) (polarity.Engine, error) {
	gpu, err := cuda.New(cuda.Options{Device: dev})
	if err != nil {
		return nil, err
	}
	return fallback.New(gpu, cpu, logw), nil
}

// probeDevices prints the CUDA devices found (name, compute capability, memory, driver
// version, whether the kernels load) to w and returns nil, or an error saying why none is
// usable.
func probeDevices(w io.Writer) error { return cuda.Probe(w) }
