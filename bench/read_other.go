//go:build !amd64 || noasm

package bench

// readISA names the read used by ReadBandwidth: the portable loop in this build.
func readISA() string { return "go" }

func readSum(x []float32) float32 { return sumGo(x) }
