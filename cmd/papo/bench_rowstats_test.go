package main

import (
	"strings"
	"testing"
)

// TestBenchRowStats: papo bench --row-stats serves both requests and reports the ratio.
func TestBenchRowStats(t *testing.T) {
	var out, errb strings.Builder
	code := execute([]string{"bench", "--row-stats", "--device", "cpu", "--vocab", "700", "--tokens", "40", "--reps", "1"}, nil, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"| logits | ", "| row statistics | ", "faster end to end than logits for the same 40 tokens"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
