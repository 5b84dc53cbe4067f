// Package papo turns per-token entropy polarity into advantage weights for RL fine-tuning of
// language models (GRPO/PPO in verl, TRL, OpenRLHF): an online phase detector reads the
// entropy trajectory of a run, and PAPO reweights each token's advantage by whether its update
// expands or contracts entropy. Baselines from the literature are computed on the same
// per-token signals so that a user can compare them side by side. The mathematics is
// docs/MATH.md (§2 for polarity and predicted ΔH, §5 for this package).
//
// # The PAPO schedule is our design
//
// PAPO is "Entropy Polarity in Reinforcement Fine-Tuning" (Zhang et al., arXiv 2605.11775);
// only its abstract is public. It says that PAPO keeps both polarity branches, controls
// entropy through advantage reweighting and uses the empirical entropy trajectory as an online
// phase signal, but not how. The schedule below is papo's own design, and every constant is a
// parameter with the default stated here; do not read it as the paper's method.
//
// Per step k, over the trained tokens of all data-parallel ranks:
//
//	H̄_k = token-mean entropy     E_k = β·E_{k−1} + (1−β)·H̄_k, E_0 = H̄_0     (β = 0.9)
//	target mode: φ_k = tanh(κ·e_k + κ_I·I_k), e_k = (H* − E_k)/H*, I_k = Σ e  (κ = 16, κ_I = 0.1)
//	slope mode:  φ_k = tanh(−κ·(E_k − E_{k−W})/(W·E_{k−W}))                 (κ = 50, W = 10)
//	w_t = 1 + λ·φ_k·g(P_t),  Ã_t = w_t·A_t                                   (λ = 0.5)
//	g = sign(P) (default), or tanh(P/σ_P) with σ_P the step's standard deviation of P
//
// φ > 0 (entropy below target, or falling) favours the updates that expand entropy (P > 0);
// φ < 0 favours those that contract it. Slope mode is the default because it needs no target;
// before W steps have been seen the slope is taken over the steps there are (φ_0 = 0), and
// windows and EMA count observed steps, so step numbers may have gaps. Because λ < 1 and
// |φ|, |g| ≤ 1, every weight is at least 1 − λ > 0: neither branch is ever switched off.
// Renormalize (optional) rescales a step's weights so that Σ|Ã| = Σ|A|; with g = sign the
// weighted sum of predicted ΔH still moves in the direction of φ (derivation and check in
// weights_test.go); with g = tanh it need not (a counterexample is there too).
//
// # The output columns, per method
//
// Every method writes two columns per token: weight (float32) and reweighted_advantage Ã
// (float64 here). Tokens that are masked (mask false) or have no advantage always get
// weight 1 and Ã = A (the caller writes a null Ã where there is no advantage). Statistics
// such as covariances, quantiles and σ_P are taken over the step's tokens that are trained
// and have an advantage.
//
//   - papo: weight = w as above; Ã = w·A.
//   - none: weight = 1; Ã = A. The plain run.
//   - clip-cov (Cui et al. 2025, "The Entropy Mechanism of Reinforcement Learning for
//     Reasoning Language Models", arXiv 2505.22617): with Cov_t = (A_t − mean A)·(log π_t −
//     mean log π), max(⌊ratio·N⌋, 1) tokens are drawn at random among those with
//     low < Cov < high that PPO does not already clip (ratio 2e-4, bounds [1, 5]); their
//     gradient is detached: weight = 0, Ã = 0. Exact: the published loss multiplies those
//     tokens' loss by 0. The draw uses a PCG generator seeded with (seed, step), not torch's
//     generator, so the chosen tokens differ from a torch run's but are reproducible.
//   - kl-cov (same paper): the max(⌊ratio·N⌋, 1) tokens of largest Cov get
//     coef·|log π − log π_old| added to their loss (ratio 2e-4, coef 1 as in verl). A penalty
//     is not an advantage, but its gradient at the parameters that produced the logits is
//     coef·sign(δ)·∇log π_a with δ = log π_a − log π_old,a, so papo writes the advantage that
//     has the same gradient there: Ã = A − coef·sign(δ)·e^{−δ}, and weight = Ã/A (1 where
//     A = 0). The approximation: the equivalence holds at those parameters only; during
//     several PPO epochs on the same batch δ changes while Ã stays fixed. Tokens without
//     log π_old have δ = 0, where |δ| has no gradient, so they keep Ã = A. The published
//     KL-Cov loss also drops PPO's ratio clipping; the columns cannot express that, so the
//     trainer's clipping stays in force.
//   - steer (STEER, arXiv 2510.10150, in the form docs/MATH.md §5 gives): m_t = |A_t/π_old,t ·
//     π_t(1−π_t)(log π_t + H_t)| (π_old = π without log π_old) is mapped linearly over the step
//     onto weights from max (smallest m) to min (largest m), range [0.8, 1.2]; the midpoint
//     when all m are equal. Ã = w·A.
//   - entropy-shaping (Cheng et al. 2025, "Reasoning with Exploration: An Entropy
//     Perspective", arXiv 2506.14758): Ã = A + min(α·H, |A|/κ) with the entropy detached
//     (α = 0.4, κ = 2, our reading of that paper's settings; both are parameters); weight =
//     Ã/A, 1 where A = 0 (then Ã = 0 too). Exact.
//   - top-entropy (Wang et al. 2025, "Beyond the 80/20 Rule", arXiv 2506.01939): tokens whose
//     entropy is below the step's (1 − fraction) quantile (linear interpolation, fraction 0.2)
//     are masked: weight = 0, Ã = 0; the others keep weight 1. Exact.
//
// Every method runs the phase detector, so the per-step summary reports the entropy EMA and
// φ for baselines as well.
//
// # Run state
//
// A run state (JSON, format "papo-run-state", version 2; see state.go) records every parameter
// that changes the weights or the phase (the method and its parameters, the phase detector's,
// and with WithSignal the PPO clip range and the natural-gradient choice), the detector's
// memory before the oldest remembered step, and the last DefaultHistory (1,000) steps' entropy
// inputs with their EMA and φ and, with WithSignal, their τ and η. τ and η are the step's: a
// later step may bring new ones (a trainer's schedules), and a state that an earlier papo wrote
// with them among its parameters reads with its steps given those values. A state written with
// other parameters is refused with a message naming each parameter and both values; a malformed
// state, or one from a newer or older papo, is refused too; WithReset(true) (--reset-state)
// starts a new run.
//
// Steps increase, with gaps allowed. A step that comes again (at or before the last one: a
// trainer resumed from a checkpoint, or the same input run twice) rolls the run back to just
// before it, forgetting the steps from it on, and is then processed anew; StepResult.Rollback
// says so. Because the detector is deterministic, the weights from there on are bit for bit
// those of a run that never went further. A step older than the history is an error.
//
// Saving is atomic (temporary file, fsync, rename, directory fsync), and the state is locked
// (flock) while a Reweighter holds it, so it has one writer. Without WithDeferredSave the state
// is saved after every step, for trainers that call Step or Observe themselves. With it the
// state changes only in Commit, in one transaction with the run's output files
// (internal/atomicfile.CommitAll): papo's run pipeline commits its outputs and the state
// together at the end of a run, so a failed, cancelled or killed run leaves the state as it
// was, and running the same command again gives exactly the output and state of one
// uninterrupted run.
package papo
