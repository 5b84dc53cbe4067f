//go:build !(goexperiment.simd && amd64)

package polarity

// This build has no SIMD variant of the hot loops: the build's accumulateBlock, decodeBFloat16
// and decodeFloat16 are the pure-Go ones. block_simd_amd64.go, built with the opposite
// constraint (goexperiment.simd && amd64), defines the AVX2 versions instead.

// accumulateBlock is the CPU engine's hot loop; its contract is on accumulateBlockGeneric in
// block.go.
func accumulateBlock(x []float32, invTau float64) blockSums { return accumulateBlockGeneric(x, invTau) }

// haveBlockVariant reports whether accumulateBlock is something other than
// accumulateBlockGeneric (TestBlockVariant then compares the two).
const haveBlockVariant = false

func decodeBFloat16(dst []float32, src []uint16) { decodeBFloat16Generic(dst, src) }

func decodeFloat16(dst []float32, src []uint16) { decodeFloat16Generic(dst, src) }
