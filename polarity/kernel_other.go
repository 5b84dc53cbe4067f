//go:build !amd64 || noasm

package polarity

import "unsafe"

// This build has only the pure-Go kernel (another architecture, or the noasm tag); these are
// the assembly hooks of kernel_amd64.go, never reached.

func kernelSupported(k Kernel) bool { return k == KernelGo }

type asmState struct{}

func (*asmState) init(Kernel, float64) {}

func (*asmState) prefetch(unsafe.Pointer) {}

func (*asmState) accumulate([]float32, float64) blockSums {
	panic("polarity: no assembly kernel in this build")
}

func (*asmState) decode16([]float32, []uint16, bool) {
	panic("polarity: no assembly kernel in this build")
}

func (*asmState) accumulate16([]float32, []uint16, bool, float64) blockSums {
	panic("polarity: no assembly kernel in this build")
}
