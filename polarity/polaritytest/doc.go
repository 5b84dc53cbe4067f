// Package polaritytest is the shared test table of papo's engines: hard token rows (peaked,
// flat, −Inf, huge magnitudes, ties; float32, float16 and bfloat16; with and without
// advantages, masks, old log-probabilities and clipping), data-error rows, and CheckEngine,
// which runs an Engine over all of them and compares it with the float64 polarity.Reference
// element by element within the tolerances stated in check.go. The CPU engine's tests and the
// CUDA engine's tests both call CheckEngine, so the engines are held to the same numbers.
//
// Seeds are fresh on every run (Seed) and printed when a test fails; PAPO_SEED=n reproduces a
// run.
package polaritytest
