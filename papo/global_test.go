package papo

import (
	"math"
	"os"
	"strings"
	"testing"
)

// TestGlobalCoversRank: global partials that cannot be the sum of every rank's (fewer tokens
// than this rank's own, a sum that is not finite) are refused with the step, the key and the
// value; the rank's own partials, a one-rank "global" table, are accepted. Before, entropy_tokens
// 2 for a rank of 4 trained tokens gave an EMA entropy of twice the mean (36 nats with log V = 6.9
// in the report).
func TestGlobalCoversRank(t *testing.T) {
	tok := &StepTokens{Step: 7, Advantage: []float64{1, -1, 0.5, 2}, HasAdvantage: []bool{true, true, false, true},
		Entropy: []float32{1, 2, 3, 4}, Polarity: []float32{0.5, -0.25, 0, 1}}
	own := tok.Partials() // 4 trained tokens, 3 weighted
	cases := []struct {
		name string
		edit func(*StepPartials)
		want string
	}{
		{"the rank's own", func(*StepPartials) {}, ""},
		{"two ranks", func(g *StepPartials) { g.Merge(own) }, ""},
		{"fewer entropy tokens", func(g *StepPartials) { g.Entropy.Tokens = 2 }, "step 7: global statistics: entropy_tokens 2 is less than this rank's own 4"},
		{"fewer weighted tokens", func(g *StepPartials) { g.Weighted = 2 }, "step 7: global statistics: weighted_tokens 2 is less than this rank's own 3"},
		{"NaN polarity sum", func(g *StepPartials) { g.PolaritySum = math.NaN() }, "polarity_sum NaN: want a finite sum"},
		{"infinite entropy sum", func(g *StepPartials) { g.Entropy.Sum = math.Inf(1) }, "entropy_sum +Inf: want a finite sum"},
	}
	for _, c := range cases {
		g := own
		c.edit(&g)
		tok.Global = &g
		r, err := NewReweighter(DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.Step(tok, make([]float32, tok.Len()), make([]float64, tok.Len()))
		r.Close()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestLockFileOutlivesNoState: a Reweighter that never commits a state leaves no lock file
// behind; one that commits leaves the state and its lock.
func TestLockFileOutlivesNoState(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/run.json"
	r, err := NewReweighter(DefaultConfig(), WithStateFile(path), WithDeferredSave())
	if err != nil {
		t.Fatal(err)
	}
	if !fileExists(path + ".lock") {
		t.Fatal("no lock file while the run is open")
	}
	r.Close()
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("after a run without a state: %v, want nothing", names)
	}
	r, err = NewReweighter(DefaultConfig(), WithStateFile(path), WithDeferredSave())
	if err != nil {
		t.Fatal(err)
	}
	tok := &StepTokens{Step: 1, Advantage: []float64{1, -1}, Entropy: []float32{1, 2}, Polarity: []float32{0.5, -0.5}}
	if _, err := r.Step(tok, make([]float32, 2), make([]float64, 2)); err != nil {
		t.Fatal(err)
	}
	if err := r.Commit(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if names := strings.Join(dirNames(t, dir), " "); names != "run.json run.json.lock" {
		t.Fatalf("after a committed run: %s", names)
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
