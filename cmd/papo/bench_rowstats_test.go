package main

import (
	"strings"
	"testing"
)

// TestBenchRowStats: papo bench --row-stats starts papo serve (this test binary, as papo) and
// prints every row: the whole reply, papo.columns, reweight, the round trips, the logits
// request, the socket alone and the server's memory; then papo analyze (a child process) to
// .arrow and .parquet and the write of the same bytes alone.
func TestBenchRowStats(t *testing.T) {
	t.Setenv(cliChildEnv, "1") // the server is this binary re-executed as papo
	var out, errb strings.Builder
	code := execute([]string{"bench", "--row-stats", "--device", "cpu", "--vocab", "700", "--tokens", "40", "--reps", "1"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"| analyze, row statistics | 40 | all | ",
		"| analyze, row statistics | 40 | reweighted_advantage | ",
		"| reweight, row statistics | 40 | reweighted_advantage | ",
		"| analyze, row statistics, round trip | 40 | reweighted_advantage | ",
		"| reweight, row statistics, round trip | 40 | reweighted_advantage | ",
		"| analyze, logits (V = 700) | 40 | all | ",
		"| socket alone, the row-statistics request's bytes | 40 | ",
		"server peak resident memory",
		"| .arrow | 40 | ",
		"| .parquet | 40 | ",
		"| the .arrow output's bytes written to a new file and synced, alone | 40 | ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
