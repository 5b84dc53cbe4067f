// Package run is papo's run pipeline as a library: record batches of token rows in, per-token
// entropy, polarity and reweighted advantages out in input order, with one summary per training
// step. `papo analyze` and `papo reweight` are this package wired to files; a server or a
// report feeds it batches from a socket or from several files the same way.
//
// A Pipeline is iterator-shaped, like an Arrow record reader turned around: Add one batch at a
// time, then Close (or Abort after an error). Results leave through a Sink, which gets every
// step's rows in input order and then the step's summary. Output sends them to a papoio.Writer.
// Replay hands a per-token output that papo wrote earlier to a Sink the same way, without
// recomputing it (papo report reads either).
//
// # Steps
//
// A training step's rows come together, and steps increase (gaps allowed): a batch may hold
// several steps, a step may span several batches, and rows without a step column all belong to
// step 0. A step that goes back within one input is an error naming the batch, the row and the
// column. The Pipeline buffers one step's per-token results (never its logits), because the
// phase φ_k needs the step's mean entropy and PAPO's σ_P and renormalization need all of its
// tokens; memory is one batch of logits plus one step of per-token results.
//
// # Run state
//
// The pipeline's papo.Reweighter keeps the phase across steps and runs. Open it with
// papo.WithDeferredSave so that its state changes only when the caller commits the run's
// outputs with it (Reweighter.Commit, after Close): a run that fails, is cancelled or is killed
// part-way then leaves the state as it was, and running it again gives exactly the output and
// state of one uninterrupted run. A step that comes again across runs (a trainer that resumed
// from a checkpoint, or the same input twice) rolls the run state back to just before it; the
// StepReport says so.
package run
