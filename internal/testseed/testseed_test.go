package testseed

import "testing"

func TestSeedFromEnvironment(t *testing.T) {
	t.Setenv("PAPO_SEED", "12345")
	if got := Seed(t); got != 12345 {
		t.Fatalf("Seed = %d with PAPO_SEED=12345", got)
	}
}
