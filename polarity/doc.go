// Package polarity computes, for each sampled token of an RL rollout, the entropy H of the
// policy's softmax, the log-probability of the sampled token, and the first-order entropy change
// that a policy-gradient update on that token causes (its sign is the token's entropy polarity).
//
// The mathematics is ../shared/MATH.md: one streaming pass over the vocabulary keeps four
// shifted sums (§3), from which H, log π_a, the sampled term S_a, the distributional correction
// C, the polarity factor T = C − S_a, the polarity P = A·T and the predicted entropy change
// ΔĤ = (η/τ²)·r·1[not clipped]·P follow (§2).
//
// Every engine (the CPU engine here, the CUDA engine in package cuda) implements Engine and must
// produce the same numbers; Reference is the float64 oracle the tests compare them against.
package polarity
