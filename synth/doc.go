// Package synth generates synthetic but realistic RL rollouts for papo: logits rows of a
// large vocabulary that mix very peaked and flat distributions (most tokens of a sampled
// response are near-deterministic, a minority are high-entropy choices), sampled token ids
// drawn from each row's own softmax, GRPO advantages (rewards normalized within each prompt
// group), and the sequence, group, position, step, mask and old-logprob columns of the
// Arrow contract. Nothing is downloaded; a seed makes a data set reproducible.
//
// Across steps the distributions sharpen (as entropy collapses in a real RL run without
// entropy control), so a multi-step file shows a falling entropy trajectory.
package synth
