//go:build race

package pipeline_test

// raceDetector: the test binary runs under the race detector (go test -race).
const raceDetector = true
