// Package testseed gives randomized tests a fresh seed each run that can be replayed: the
// seed is $PAPO_SEED when set, else the clock, and it is logged when the test fails.
package testseed

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Seed returns the test's seed and arranges for it to be logged if t fails.
func Seed(t testing.TB) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("PAPO_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("PAPO_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: rerun with PAPO_SEED=%d", seed, seed)
		}
	})
	return seed
}
