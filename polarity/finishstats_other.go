//go:build !amd64 || noasm

package polarity

// statsFinishVector: this build has no vector kernel for statsChunkRun's loop (another
// architecture, or the noasm tag); the Go loop does every row.
func statsFinishVector(Kernel, *Batch, Params, *Result, int, int, *statsScratch) int { return 0 }
