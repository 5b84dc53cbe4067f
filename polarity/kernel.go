package polarity

import (
	"fmt"
	"os"
	"unsafe"
)

// Kernel names an implementation of the CPU engine's hot loops (the block sums of
// accumulateBlockGeneric's contract and the float16/bfloat16 decoders). KernelGo is the pure-Go
// loop, the reference every other kernel is tested against; the others are assembly, chosen at
// run time by the processor's features (BestKernel) or forced with NewCPUKernel or the
// PAPO_CPU_KERNEL environment variable.
type Kernel int

const (
	KernelGo     Kernel = iota // pure Go, every platform
	KernelAVX2                 // amd64 with AVX2, FMA and F16C (kernel_amd64.s)
	KernelAVX512               // amd64 with AVX-512F and POPCNT (kernel_amd64.s)
)

var kernelNames = [...]string{KernelGo: "go", KernelAVX2: "avx2+fma", KernelAVX512: "avx512f"}

func (k Kernel) String() string {
	if k < 0 || int(k) >= len(kernelNames) {
		return fmt.Sprintf("Kernel(%d)", int(k))
	}
	return kernelNames[k]
}

// Kernels lists the kernels this build and processor can run, the pure-Go one first and the
// best last.
func Kernels() []Kernel {
	ks := []Kernel{KernelGo}
	for k := KernelGo + 1; int(k) < len(kernelNames); k++ {
		if kernelSupported(k) {
			ks = append(ks, k)
		}
	}
	return ks
}

// BestKernel is the fastest kernel this build and processor run, unless the environment
// variable PAPO_CPU_KERNEL names another one (go, avx2+fma, avx512f; for comparisons and debugging).
func BestKernel() (Kernel, error) {
	ks := Kernels()
	name := os.Getenv("PAPO_CPU_KERNEL")
	if name == "" {
		return ks[len(ks)-1], nil
	}
	for _, k := range ks {
		if k.String() == name {
			return k, nil
		}
	}
	return 0, fmt.Errorf("PAPO_CPU_KERNEL=%q: this build and processor run %v", name, ks)
}

// blockKernel is one worker's accumulator for one temperature: the kernel and, for assembly,
// its constants (set once) and the block maximum (set per block).
type blockKernel struct {
	kernel Kernel
	invTau float64
	asm    asmState
}

func newBlockKernel(k Kernel, invTau float64) *blockKernel {
	b := &blockKernel{kernel: k, invTau: invTau}
	if k != KernelGo {
		b.asm.init(k, invTau)
	}
	return b
}

// accumulate is accumulateBlock's contract (accumulateBlockGeneric) for this kernel.
func (b *blockKernel) accumulate(x []float32) blockSums {
	if b.kernel == KernelGo {
		return accumulateBlockGeneric(x, b.invTau)
	}
	return b.asm.accumulate(x, b.invTau)
}

// accumulate16 decodes the 16-bit block src (bfloat16 when bf16, else float16) into dst and
// returns accumulate(dst), in fewer passes over the block where the kernel can.
func (b *blockKernel) accumulate16(dst []float32, src []uint16, bf16 bool) blockSums {
	if b.kernel != KernelGo {
		return b.asm.accumulate16(dst, src, bf16, b.invTau)
	}
	b.decode16(dst, src, bf16)
	return accumulateBlockGeneric(dst, b.invTau)
}

// prefetch tells the kernel where the block after the next accumulate starts (nil: none, or
// another worker's), for the assembly kernels to prefetch while they sum.
func (b *blockKernel) prefetch(next unsafe.Pointer) {
	if b.kernel != KernelGo && next != nil {
		b.asm.prefetch(next)
	}
}

// decode16 decodes the 16-bit logits src (bfloat16 when bf16, else float16) into dst.
func (b *blockKernel) decode16(dst []float32, src []uint16, bf16 bool) {
	if b.kernel != KernelGo {
		b.asm.decode16(dst, src, bf16)
		return
	}
	decode16Generic(dst, src, bf16)
}

// decode16Generic is decode16 in pure Go.
func decode16Generic(dst []float32, src []uint16, bf16 bool) {
	if bf16 {
		decodeBFloat16Generic(dst, src)
	} else {
		decodeFloat16Generic(dst, src)
	}
}
