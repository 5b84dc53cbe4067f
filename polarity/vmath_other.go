//go:build !amd64 || noasm

package polarity

// This build has no assembly for vexp and vlog1p (another architecture, or the noasm tag): the
// batches are loops over the scalar functions, which the assembly matches bit for bit anyway.

const vmathKernel = KernelGo

// expBatch sets dst[i] = vexp(x[i]); len(dst) == len(x), and dst may be x.
func expBatch(dst, x []float64) { expBatchKernel(KernelGo, dst, x) }

// log1pBatch sets dst[i] = vlog1p(x[i]); len(dst) == len(x), and dst may be x.
func log1pBatch(dst, x []float64) { log1pBatchKernel(KernelGo, dst, x) }

func expBatchKernel(_ Kernel, dst, x []float64) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = vexp(v)
	}
}

func log1pBatchKernel(_ Kernel, dst, x []float64) {
	dst = dst[:len(x)]
	for i, v := range x {
		dst[i] = vlog1p(v)
	}
}
