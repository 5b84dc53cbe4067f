// Package polarity computes, for each sampled token of an RL rollout, the entropy H of the
// policy's softmax, the log-probability of the sampled token, and the first-order entropy change
// that a policy-gradient update on that token causes (its sign is the token's entropy polarity).
//
// The mathematics is docs/MATH.md: one streaming pass over the vocabulary keeps four
// shifted sums (§3), from which H, log π_a, the sampled term S_a, the distributional correction
// C, the polarity factor T = C − S_a, the polarity P = A·T and the predicted entropy change
// ΔĤ = (η/τ²)·r·1[not clipped]·P follow (§2).
//
// Every engine (the CPU engine here, the CUDA engine in package cuda) implements Engine and must
// produce the same numbers; Reference is the float64 oracle the tests compare them against, and
// package polaritytest holds the table of hard rows and the comparison both engines' tests run.
// The pieces an engine can share: Sums (the §3 state in float64, with the associative Merge that
// combines the partial sums of blocks, warps or vocabulary shards, and Finalize), RowStats.Sampled
// (log π_a and S_a without cancellation on peaked rows), Finish (the token step: T, P, the PPO
// ratio, clipping and ΔĤ from H, log π_a, S_a and C), Batch.Validate and LogitsError (the data
// errors, worded identically by every engine).
//
// NewCPU's engine spreads rows over goroutines and runs each row through a Kernel's block sums
// over blocks of 4,096 logits (block.go states the contract): the pure-Go loop everywhere, and
// AVX2+FMA and AVX-512F assembly kernels chosen at run time on amd64 (kernel_amd64.s; the noasm
// build tag leaves them out). Kernels lists what a build and processor run; PAPO_CPU_KERNEL
// forces one. The float64 e^x and log1p of the finishing step (Sums.Finalize, RowStats.Sampled,
// Finish, and ComputeStats in batches) are vexp and vlog1p (vmath.go), pure Go with AVX2+FMA and
// AVX-512F batch kernels that give the same numbers bit for bit.
package polarity
