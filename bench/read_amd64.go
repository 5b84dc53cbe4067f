//go:build amd64 && !noasm

package bench

import "golang.org/x/sys/cpu"

// readISA names the vector read used by ReadBandwidth.
func readISA() string {
	if cpu.X86.HasAVX2 {
		return "avx2"
	}
	return "go"
}

// readSum sums x with 256-bit loads (four accumulators, 32 float32 per iteration) where the CPU
// has AVX2, else with the portable loop.
func readSum(x []float32) float32 {
	if cpu.X86.HasAVX2 {
		return readSumAVX2(x)
	}
	return sumGo(x)
}

//go:noescape
func readSumAVX2(x []float32) float32
