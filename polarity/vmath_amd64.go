//go:build amd64 && !noasm

package polarity

import "math"

// The batch kernels of vexp and vlog1p (vmath.go has their arithmetic, vmath_amd64.s the
// same in four AVX2+FMA or eight AVX-512F lanes of float64). They take n a multiple of their
// width; the tail is the scalar function, which gives the same numbers bit for bit.

// vmathKernel is the kernel expBatch and log1pBatch use: BestKernel's (the widest the processor
// runs, or the one PAPO_CPU_KERNEL names), chosen once (processor features do not change). The
// batch kernels need a subset of what the logits kernels of the same name need (AVX2+FMA;
// AVX-512F), so every kernel in Kernels runs them. All give the same numbers: it decides only
// the speed.
var vmathKernel = func() Kernel {
	if k, err := BestKernel(); err == nil {
		return k
	}
	ks := Kernels() // PAPO_CPU_KERNEL names no kernel here: the engine says so, this takes the widest
	return ks[len(ks)-1]
}()

// vmathTable holds the kernels' constants, each in eight lanes (the AVX2 kernels read the
// first four); the rows are those of the v…Row constants, and the offsets in vmath_amd64.s.
type vmathTable [22][8]float64

const (
	veLog2e = iota
	veShift
	veLn2Hi
	veLn2Lo
	veHi
	veLo
	veOne
	veScaleLo
	veP0 // vexpPoly[0 … 12] in rows veP0 … veP0+12
)

const (
	vlOne = iota // also the bits 0x3ff0000000000000 of the exponent of 1
	vlOff
	vlMagic
	vlKBias
	vlTwo
	vlHalf
	vlLn2Lo
	vlLn2Hi
	vlAbs
	vlSmall
	vlMHalf
	vlNegOne
	vlNaN
	vlNegInf
	vlMax
	vlP0 // vlogPoly[0 … 6] in rows vlP0 … vlP0+6
)

func (t *vmathTable) set(row int, v float64) {
	for i := range t[row] {
		t[row][i] = v
	}
}

var vexpTable, vlog1pTable = func() (e, l vmathTable) {
	bits := math.Float64frombits
	for row, v := range map[int]float64{veLog2e: math.Log2E, veShift: vexpShift, veLn2Hi: vLn2Hi, veLn2Lo: vLn2Lo,
		veHi: vexpHi, veLo: vexpLo, veOne: 1, veScaleLo: bits(vexpScaleLo)} {
		e.set(row, v)
	}
	for i, c := range vexpPoly {
		e.set(veP0+i, c)
	}
	for row, v := range map[int]float64{vlOne: 1, vlOff: bits(vlogOff), vlMagic: bits(vlogMagic), vlKBias: vlogKBias,
		vlTwo: 2, vlHalf: 0.5, vlLn2Lo: vLn2Lo, vlLn2Hi: vLn2Hi, vlAbs: bits(1<<63 - 1), vlSmall: vlogSmall,
		vlMHalf: -0.5, vlNegOne: -1, vlNaN: bits(vlogNaN), vlNegInf: math.Inf(-1), vlMax: math.MaxFloat64} {
		l.set(row, v)
	}
	for i, c := range vlogPoly {
		l.set(vlP0+i, c)
	}
	return e, l
}()

//go:noescape
func expAVX2(dst, x *float64, n int, t *vmathTable)

//go:noescape
func expAVX512(dst, x *float64, n int, t *vmathTable)

//go:noescape
func log1pAVX2(dst, x *float64, n int, t *vmathTable)

//go:noescape
func log1pAVX512(dst, x *float64, n int, t *vmathTable)

// expBatch sets dst[i] = vexp(x[i]); len(dst) == len(x), and dst may be x.
func expBatch(dst, x []float64) { expBatchKernel(vmathKernel, dst, x) }

// log1pBatch sets dst[i] = vlog1p(x[i]); len(dst) == len(x), and dst may be x.
func log1pBatch(dst, x []float64) { log1pBatchKernel(vmathKernel, dst, x) }

// expBatchKernel is expBatch with the kernel k (one of Kernels).
func expBatchKernel(k Kernel, dst, x []float64) {
	dst = dst[:len(x)]
	n := 0
	switch k {
	case KernelAVX512:
		if n = len(x) &^ 7; n > 0 {
			expAVX512(&dst[0], &x[0], n, &vexpTable)
		}
	case KernelAVX2:
		if n = len(x) &^ 3; n > 0 {
			expAVX2(&dst[0], &x[0], n, &vexpTable)
		}
	}
	for i := n; i < len(x); i++ {
		dst[i] = vexp(x[i])
	}
}

// log1pBatchKernel is log1pBatch with the kernel k (one of Kernels).
func log1pBatchKernel(k Kernel, dst, x []float64) {
	dst = dst[:len(x)]
	n := 0
	switch k {
	case KernelAVX512:
		if n = len(x) &^ 7; n > 0 {
			log1pAVX512(&dst[0], &x[0], n, &vlog1pTable)
		}
	case KernelAVX2:
		if n = len(x) &^ 3; n > 0 {
			log1pAVX2(&dst[0], &x[0], n, &vlog1pTable)
		}
	}
	for i := n; i < len(x); i++ {
		dst[i] = vlog1p(x[i])
	}
}
