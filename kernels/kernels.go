// Package kernels holds papo's CUDA kernels: the CUDA C sources (polarity.cu, and
// polarity_row.cuh with the arithmetic shared by the device and the host tests) and the PTX
// built from them with `make -C kernels ptx`, embedded here so that building papo-cuda needs no
// CUDA toolkit. The PTX is committed; CI rebuilds it and fails when it differs from the sources
// (make -C kernels check-ptx).
//
// Each kernel computes, for a batch of token rows of one logits dtype, docs/MATH.md §3's one-pass
// sums and the §2 outputs of every token: one block of BlockThreads threads per row, one read
// of the logits with 16-byte loads, per-thread running state merged by warp shuffles and then
// across the block. The package has no build tag and no cgo: it compiles everywhere.
package kernels

import _ "embed"

// PTX is the PTX module (ISA 7.8, target sm_80) that the CUDA engine loads; the driver compiles
// it for the device at load time.
//
//go:embed polarity.ptx
var PTX string

// RowHeader is polarity_row.cuh, the arithmetic shared by the kernels and the host build in
// cuda/hostref. Embedding it makes the header part of this package's build inputs, so that a
// change to it also rebuilds the packages importing this one (cmd/go does not track headers
// that cgo includes from outside a package's directory).
//
//go:embed polarity_row.cuh
var RowHeader string

// Source is polarity.cu, the kernels themselves. Package cuda/kernelemu compiles it for the host
// by #include from this directory, which cmd/go does not track; it imports this package, so
// that editing polarity.cu still rebuilds it.
//
//go:embed polarity.cu
var Source string

// Kernel entry points in PTX, one per logits dtype, indexed like polarity.Dtype (float32,
// float16, bfloat16). All take the same parameters, each 8 bytes wide:
//
//	(logits *T, V int64, rows int64, rowIn *RowIn, tau, lr, clipLow, clipHigh float64,
//	 natural int64, out *float32, status *int32)
//
// out receives OutColumns columns of rows float32 each (entropy, logprob, sampled term,
// correction, polarity factor, polarity, predicted ΔH) and status one int32 per row.
var Kernels = [3]string{"polarity_rows_f32", "polarity_rows_f16", "polarity_rows_bf16"}

// ParamTypes are the PTX types of the kernels' parameters, in order (the tests check them
// against polarity.ptx): u64 for pointers and int64, f64 for float64.
var ParamTypes = [11]string{"u64", "u64", "u64", "u64", "f64", "f64", "f64", "f64", "u64", "u64", "u64"}

// The launch shape and the layouts shared with polarity_row.cuh (the tests check that the two
// agree).
const (
	BlockThreads = 256 // threads per block; one block per row
	Warp         = 32
	VecBytes     = 16 // bytes per vector load
	GroupElems   = 16 // elements per running-maximum update
	OutColumns   = 7  // float32 output columns
	RowInBytes   = 24 // size of one RowIn
)

// Row flags of RowIn.Flags.
const (
	HasAdvantage  = 1
	HasOldLogprob = 2
	Trained       = 4
)

// Row statuses, one int32 per row after a launch.
const (
	StatusOK         = 0
	StatusBadLogit   = 1 // a NaN or +Inf logit
	StatusNoFinite   = 2 // every logit −Inf
	StatusAdvantage  = 3 // an advantage that is present but not finite
	StatusOldLogprob = 4 // an old log-probability that is needed but not finite
)

// RowIn is one token row's inputs besides its logits, laid out as pp_row_in in
// polarity_row.cuh (24 bytes, 8-byte aligned).
type RowIn struct {
	Advantage  float64 // A, when Flags&HasAdvantage
	OldLogprob float32 // log π_old(a), when Flags&HasOldLogprob
	Token      int32   // sampled token a
	Flags      int32
	_          int32
}
