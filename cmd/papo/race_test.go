//go:build race

package main

// raceDetector: the test binary runs under the race detector. The server child of the serve
// tests is this binary, so its RSS carries the detector's shadow memory and the RSS bounds,
// set for a plain build, are not checked.
const raceDetector = true
