package papo

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/internal/atomicfile"
	"github.com/entropy-polarity/papo/polarity"
)

// runConfig is the configuration of the restart tests: slope mode with a short window (so the
// window is full and rolling), tanh weights and renormalization, so that every part of the
// state and of the weighting is exercised.
func runConfig() Config {
	c := DefaultConfig()
	c.Phase.Window, c.Phase.Beta = 3, 0.7
	c.G, c.Renormalize = GTanh, true
	return c
}

// runStep is the deterministic input of step k: 257 tokens whose entropy drifts down and up
// over the run (so φ changes sign), with masks and tokens without advantage.
func runStep(k int64) *StepTokens {
	const n = 257
	rng := rand.New(rand.NewPCG(uint64(k), 99))
	tok := &StepTokens{Step: k, Advantage: make([]float64, n), HasAdvantage: make([]bool, n), Trained: make([]bool, n),
		Entropy: make([]float32, n), Polarity: make([]float32, n), PredictedDeltaH: make([]float32, n)}
	level := 1 + 0.5*math.Sin(float64(k)/7)
	for i := 0; i < n; i++ {
		a := rng.NormFloat64()
		tok.Advantage[i] = a
		tok.HasAdvantage[i] = rng.Float64() > 0.05
		tok.Trained[i] = rng.Float64() > 0.1
		tok.Entropy[i] = float32(level * 2 * rng.Float64())
		tok.Polarity[i] = float32(a * rng.NormFloat64())
		tok.PredictedDeltaH[i] = 0.01 * tok.Polarity[i]
	}
	return tok
}

// encodeOutput is the bytes a step's outputs must reproduce exactly after any restart.
func encodeOutput(r StepResult, w []float32, at []float64) []byte {
	var b bytes.Buffer
	for _, x := range w {
		binary.Write(&b, binary.LittleEndian, math.Float32bits(x))
	}
	for _, x := range at {
		binary.Write(&b, binary.LittleEndian, math.Float64bits(x))
	}
	for _, x := range []float64{r.MeanEntropy, r.EMA, r.Phase, r.Scale} {
		binary.Write(&b, binary.LittleEndian, math.Float64bits(x))
	}
	return b.Bytes()
}

func stepOutput(t testing.TB, r *Reweighter, k int64) ([]byte, StepResult) {
	t.Helper()
	tok := runStep(k)
	w := make([]float32, tok.Len())
	at := make([]float64, tok.Len())
	res, err := r.Step(tok, w, at)
	if err != nil {
		t.Fatalf("step %d: %v", k, err)
	}
	return encodeOutput(res, w, at), res
}

// openRun opens a run with its state in path (saved after every step unless opts defer it) and
// closes it when the test ends; a test that reopens a path closes the previous run first, as a
// process that exits does.
func openRun(t testing.TB, c Config, path string, opts ...Option) *Reweighter {
	t.Helper()
	r, err := NewReweighter(c, append([]Option{WithStateFile(path)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// reference runs steps [0, n) without interruption and returns each step's output and the
// final state file.
func reference(t testing.TB, c Config, n int64, opts ...Option) ([][]byte, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ref.json")
	r := openRun(t, c, path, opts...)
	outs := make([][]byte, n)
	for k := int64(0); k < n; k++ {
		outs[k], _ = stepOutput(t, r, k)
	}
	r.Close()
	state, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return outs, state
}

func TestRestartMatchesUninterrupted(t *testing.T) {
	const n = 24
	c := runConfig()
	want, wantState := reference(t, c, n)
	for split := int64(0); split <= n; split += 5 {
		path := filepath.Join(t.TempDir(), "state.json")
		r := openRun(t, c, path)
		for k := int64(0); k < n; k++ {
			if k == split { // a new process: only the file carries the run over
				r.Close()
				r = openRun(t, c, path)
				if last, ok := r.LastStep(); k > 0 && (!ok || last != k-1) {
					t.Fatalf("restart at %d: LastStep = %d, %v; want %d", k, last, ok, k-1)
				}
			}
			if got, _ := stepOutput(t, r, k); !bytes.Equal(got, want[k]) {
				t.Fatalf("restart at %d: step %d differs from the uninterrupted run", split, k)
			}
		}
		r.Close()
		if got, _ := os.ReadFile(path); !bytes.Equal(got, wantState) {
			t.Errorf("restart at %d: final state differs:\n%s\nwant\n%s", split, got, wantState)
		}
	}
}

func TestStateRefusesOtherParameters(t *testing.T) {
	c := runConfig()
	sig := polarity.DefaultParams()
	sig.ClipLow, sig.ClipHigh = 0.2, 0.28
	newState := func(t *testing.T) (string, []byte) {
		path := filepath.Join(t.TempDir(), "state.json")
		r := openRun(t, c, path, WithSignal(sig))
		for k := int64(0); k < 3; k++ {
			stepOutput(t, r, k)
		}
		r.Close()
		saved, _ := os.ReadFile(path)
		return path, saved
	}
	tests := []struct {
		name string
		mod  func(c *Config, p *polarity.Params)
		want []string
	}{
		{"PAPO parameters", func(c *Config, _ *polarity.Params) { c.Lambda, c.Phase.Window = 0.3, 4 },
			[]string{"lambda = 0.5 in the state, 0.3 now", "phase.window = 3 in the state, 4 now"}},
		{"method", func(c *Config, _ *polarity.Params) { c.Method, c.Renormalize = MethodTopEntropy, false },
			[]string{"method = papo in the state, top-entropy now"}},
		{"clip range", func(_ *Config, p *polarity.Params) { p.ClipLow, p.ClipHigh = 0, math.Inf(1) },
			[]string{"clip_low = 0.2 in the state, 0 now", "clip_high = 0.28 in the state, none now"}},
		{"natural gradient", func(_ *Config, p *polarity.Params) { p.NaturalGradient = true },
			[]string{"natural_gradient = false in the state, true now"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, saved := newState(t)
			c2, sig2 := c, sig
			tc.mod(&c2, &sig2)
			_, err := NewReweighter(c2, WithStateFile(path), WithSignal(sig2))
			for _, want := range append([]string{path, "different parameters", "--reset-state"}, tc.want...) {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("got %v, want an error containing %q", err, want)
				}
			}
			if got, _ := os.ReadFile(path); !bytes.Equal(got, saved) {
				t.Error("a refused state file was modified")
			}
			// reset starts a new run; the file is replaced at the first step.
			r := openRun(t, c2, path, WithSignal(sig2), WithReset(true))
			if _, ok := r.LastStep(); ok {
				t.Error("reset run has a last step")
			}
			stepOutput(t, r, 0)
			r.Close()
			r = openRun(t, c2, path, WithSignal(sig2))
			if last, ok := r.LastStep(); !ok || last != 0 {
				t.Errorf("reopening the reset run: last step %d, %v; want 0", last, ok)
			}
		})
	}

	// A parameter that does not act on this method (the STEER range of a PAPO run) is not a
	// different run.
	t.Run("unused parameter", func(t *testing.T) {
		path, _ := newState(t)
		irrelevant := c
		irrelevant.STEER.Min = 0.5
		openRun(t, irrelevant, path, WithSignal(sig))
	})
	// A state written without the signal parameters does not match one that records them.
	t.Run("signal absent", func(t *testing.T) {
		path, _ := newState(t)
		if _, err := NewReweighter(c, WithStateFile(path)); err == nil || !strings.Contains(err.Error(), "clip_low = 0.2 in the state, unused now") {
			t.Errorf("got %v, want the recorded clip range named", err)
		}
	})
}

func TestStateMalformed(t *testing.T) {
	c := runConfig()
	good := func() string {
		path := filepath.Join(t.TempDir(), "s.json")
		r := openRun(t, c, path)
		for k := int64(0); k < 5; k++ {
			stepOutput(t, r, k)
		}
		r.Close()
		b, _ := os.ReadFile(path)
		return string(b)
	}()
	v1 := `{"format": "papo-run-state", "version": 1, "params": {}, "detector": {"last_step": 3, "last_tokens": 1, ` +
		`"last_sum_entropy": 1, "observed": 4, "ema": 1, "phi": 0, "window": [1, 1, 1]}}`
	cases := []struct {
		name, content, want string
	}{
		{"empty", "", "the file is empty"},
		{"truncated", good[:len(good)/2], "malformed"},
		{"not JSON", "ema = 3\n", "malformed"},
		{"trailing data", good + "{}", "unexpected data after the JSON object"},
		{"other format", strings.Replace(good, StateFormat, "something-else", 1), `format "something-else"`},
		{"newer version", strings.Replace(good, `"version": 2`, `"version": 3`, 1), "format version 3, written by a newer papo"},
		{"version 1", v1, "format version 1, written by an older papo"},
		{"old version", strings.Replace(good, `"version": 2`, `"version": 0`, 1), "version 0: want 2"},
		{"no version", strings.Replace(good, `"version": 2,`, "", 1), "no version"},
		{"unknown field", strings.Replace(good, `"version": 2,`, `"version": 2, "extra": true,`, 1), `unknown field "extra"`},
		{"no base", editState(t, good, "", "base", nil), "no base"},
		{"no steps", editState(t, good, "", "steps", nil), "no steps"},
		{"negative ema", editState(t, good, "base", "ema", -0.5), "ema -0.5"},
		{"phi out of range", editState(t, good, "base", "phi", 1.5), "phi 1.5"},
		{"ema as string", editState(t, good, "base", "ema", "0.5"), "malformed"},
		{"observed too large", editState(t, good, "base", "observed", 99), "observed 99"},
		{"window too long", editState(t, good, "base", "window", []float64{0.5}), "window has 1 entries"},
		{"no window", editState(t, good, "base", "window", nil), "no window"},
		{"step output edited", editState(t, good, "steps.2", "ema", 0.123), "steps[2] (step 2): recorded ema 0.123"},
		{"step input edited", editState(t, good, "steps.1", "sum_entropy", 1.5), "steps[1] (step 1): recorded ema"},
		{"steps out of order", editState(t, good, "steps.3", "step", 1), "steps[3]: step 1 does not come after the last processed step 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "s.json", tc.content)
			_, err := NewReweighter(c, WithStateFile(path))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v, want an error naming %s and containing %q", err, path, tc.want)
			}
			if got, _ := os.ReadFile(path); string(got) != tc.content {
				t.Error("a malformed state file was modified")
			}
			// Only an explicit reset replaces it.
			r := openRun(t, c, path, WithReset(true))
			stepOutput(t, r, 0)
			r.Close()
			openRun(t, c, path)
		})
	}
}

// editState sets field key of the object at dotted path obj ("" for the document, "base",
// "steps.2") of a state file's JSON to v, removing it when v is nil.
func editState(t *testing.T, state, obj, key string, v any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(state), &m); err != nil {
		t.Fatal(err)
	}
	d := m
	if name, index, ok := strings.Cut(obj, "."); ok {
		i, err := strconv.Atoi(index)
		if err != nil {
			t.Fatal(err)
		}
		d = m[name].([]any)[i].(map[string]any)
	} else if obj != "" {
		d = m[obj].(map[string]any)
	}
	if v == nil {
		delete(d, key)
	} else {
		d[key] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStateDirectoryMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "state.json")
	if _, err := NewReweighter(runConfig(), WithStateFile(path)); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("got %v, want an error saying the directory does not exist", err)
	}
}

func TestStateHasOneWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	r := openRun(t, runConfig(), path)
	if _, err := NewReweighter(runConfig(), WithStateFile(path)); err == nil || !strings.Contains(err.Error(), "held by another process") {
		t.Fatalf("a second writer of one state: got %v, want the lock refused", err)
	}
	r.Close()
	openRun(t, runConfig(), path) // the lock is free once the first run is closed
}

// A step that comes again rolls the run back to just before it: the outputs from there on, and
// the final state, are those of a run that never went further. This is a trainer resuming from
// a checkpoint.
func TestRollbackOnRepeatedStep(t *testing.T) {
	const n = 12
	c := runConfig()
	want, wantState := reference(t, c, n)
	tests := []struct {
		name      string
		processed []int64 // steps run before the restart
		resume    int64   // the first step sent after it
		forgotten int
	}{
		{"last step again", []int64{0, 1, 2, 3, 4, 5}, 5, 1},
		{"back three steps", []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 7, 3},
		{"back to the start", []int64{0, 1, 2, 3}, 0, 4},
		{"whole run again", []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 0, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			r := openRun(t, c, path)
			for _, k := range tc.processed {
				tok := runStep(k)
				if k >= tc.resume {
					tok.Entropy[0] += 0.25 // other data than the reference: the rollback must forget it
				}
				if _, err := r.Step(tok, make([]float32, tok.Len()), make([]float64, tok.Len())); err != nil {
					t.Fatal(err)
				}
			}
			r.Close()
			r = openRun(t, c, path)
			for k := tc.resume; k < n; k++ {
				got, res := stepOutput(t, r, k)
				if k == tc.resume {
					last := tc.processed[len(tc.processed)-1]
					if rb := res.Rollback; rb == nil || rb.Step != k || rb.LastStep != last || rb.Forgotten != tc.forgotten {
						t.Fatalf("step %d: rollback %+v, want step %d, last step %d, %d forgotten", k, rb, k, last, tc.forgotten)
					}
				} else if res.Rollback != nil {
					t.Fatalf("step %d: unexpected rollback %+v", k, res.Rollback)
				}
				if !bytes.Equal(got, want[k]) {
					t.Fatalf("step %d after the rollback differs from the uninterrupted run", k)
				}
			}
			r.Close()
			if got, _ := os.ReadFile(path); !bytes.Equal(got, wantState) {
				t.Errorf("final state differs from the uninterrupted run:\n%s\nwant\n%s", got, wantState)
			}
		})
	}
}

func TestRollbackReachesBackAsFarAsTheHistory(t *testing.T) {
	const n, history = 12, 4
	c := runConfig()
	want, _ := reference(t, c, n)
	path := filepath.Join(t.TempDir(), "state.json")
	r := openRun(t, c, path, WithHistory(history))
	for k := int64(0); k < n; k++ {
		stepOutput(t, r, k)
	}
	if h := r.History(); len(h) != history || h[0].Step != n-history {
		t.Fatalf("history %+v: want the last %d steps", h, history)
	}
	var he *HistoryError
	tok := runStep(n - history - 1)
	_, err := r.Step(tok, make([]float32, tok.Len()), make([]float64, tok.Len()))
	if !errors.As(err, &he) || !strings.Contains(err.Error(), "remembers steps 8 … 11 only") {
		t.Fatalf("step 7 after a history of 8 … 11: got %v, want a HistoryError", err)
	}
	if last, _ := r.LastStep(); last != n-1 {
		t.Fatalf("a refused rollback changed the last step to %d", last)
	}
	// The oldest step the history holds can come again.
	for k := int64(n - history); k < n; k++ {
		if got, _ := stepOutput(t, r, k); !bytes.Equal(got, want[k]) {
			t.Fatalf("step %d after rolling back to the history's start differs", k)
		}
	}
	// A longer history in the file than asked for is trimmed on load.
	r.Close()
	r = openRun(t, c, path, WithHistory(2))
	if h := r.History(); len(h) != 2 || h[0].Step != n-2 {
		t.Errorf("history after reopening with 2: %+v", h)
	}
}

func TestExplicitRollback(t *testing.T) {
	const n = 10
	c := runConfig()
	want, _ := reference(t, c, n)
	path := filepath.Join(t.TempDir(), "state.json")
	r := openRun(t, c, path)
	for k := int64(0); k < n; k++ {
		stepOutput(t, r, k)
	}
	if rb, err := r.Rollback(n); rb != nil || err != nil {
		t.Errorf("Rollback after the last step: %+v, %v; want nothing to do", rb, err)
	}
	rb, err := r.Rollback(6)
	if err != nil || rb == nil || rb.Forgotten != 4 {
		t.Fatalf("Rollback(6): %+v, %v", rb, err)
	}
	r.Close()
	r = openRun(t, c, path) // the rollback was saved
	if last, _ := r.LastStep(); last != 5 {
		t.Fatalf("after Rollback(6) and a restart, last step %d, want 5", last)
	}
	if got, res := stepOutput(t, r, 6); !bytes.Equal(got, want[6]) || res.Rollback != nil {
		t.Errorf("step 6 after an explicit rollback: same output %v, rollback %+v", bytes.Equal(got, want[6]), res.Rollback)
	}
}

func TestSaveFailureKeepsState(t *testing.T) {
	const n = 8
	c := runConfig()
	want, wantState := reference(t, c, n)
	path := filepath.Join(t.TempDir(), "state.json")
	r := openRun(t, c, path)
	for k := int64(0); k < 5; k++ {
		stepOutput(t, r, k)
	}
	before, _ := os.ReadFile(path)
	// A directory in the state's place makes the save's rename fail.
	if err := os.Rename(path, path+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	tok := runStep(5)
	_, err := r.Step(tok, make([]float32, tok.Len()), make([]float64, tok.Len()))
	if err == nil || !strings.Contains(err.Error(), "step 5") || !strings.Contains(err.Error(), "rename") {
		t.Fatalf("got %v, want the failed save of step 5", err)
	}
	if last, _ := r.LastStep(); last != 4 {
		t.Errorf("after a failed save LastStep = %d, want 4", last)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".state.json.tmp-*")); len(m) != 0 {
		t.Errorf("temporary files left after a failed save: %v", m)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".saved", path); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Error("a failed save changed the state file")
	}
	for k := int64(5); k < n; k++ { // the retry computes what an uninterrupted run does
		if got, _ := stepOutput(t, r, k); !bytes.Equal(got, want[k]) {
			t.Fatalf("step %d after the failed save differs", k)
		}
	}
	r.Close()
	if got, _ := os.ReadFile(path); !bytes.Equal(got, wantState) {
		t.Error("final state differs from the uninterrupted run")
	}
}

// With WithDeferredSave the state changes only with Commit, and together with the files given
// to it; a run closed without Commit leaves the state as it was.
func TestDeferredSave(t *testing.T) {
	const n = 6
	c := runConfig()
	_, wantState := reference(t, c, n)
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	out := filepath.Join(dir, "out.bin")

	r := openRun(t, c, path, WithDeferredSave())
	for k := int64(0); k < 3; k++ {
		stepOutput(t, r, k)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a deferred run saved its state before Commit: %v", err)
	}
	r.Close() // no Commit: as if the run failed
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("closing an uncommitted run saved its state: %v", err)
	}

	r = openRun(t, c, path, WithDeferredSave())
	for k := int64(0); k < n; k++ {
		stepOutput(t, r, k)
	}
	f, err := atomicfile.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("output of steps 0-5")
	if err := r.Commit(f); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if got, _ := os.ReadFile(path); !bytes.Equal(got, wantState) {
		t.Errorf("committed state differs from an autosaved run's:\n%s\nwant\n%s", got, wantState)
	}
	if got, _ := os.ReadFile(out); string(got) != "output of steps 0-5" {
		t.Errorf("output %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 { // out.bin, state.json, state.json.lock
		t.Errorf("directory after a commit: %v; want output, state and lock only", entries)
	}
}

// A commit that a crash interrupted after its journal was written is finished when the state is
// next opened (the crash points themselves are tested in internal/atomicfile).
func TestOpenFinishesAnInterruptedCommit(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	out := filepath.Join(dir, "out.bin")
	r := openRun(t, runConfig(), path, WithDeferredSave())
	stepOutput(t, r, 0)
	f, _ := atomicfile.Create(out)
	f.WriteString("step 0")
	state, err := r.stageState()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := state.Sync(); err != nil {
		t.Fatal(err)
	}
	// The journal of CommitAll, written by hand: the process "died" before any rename.
	journal, _ := json.Marshal(map[string]any{"format": "papo-commit-journal", "version": 1, "files": []map[string]string{
		{"temp": f.TempPath(), "path": out}, {"temp": state.TempPath(), "path": path}}})
	if err := os.WriteFile(path+".commit", journal, 0o644); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the output exists before recovery")
	}
	r = openRun(t, runConfig(), path)
	if !r.Recovered() {
		t.Error("Recovered() is false after finishing a journal")
	}
	if last, ok := r.LastStep(); !ok || last != 0 {
		t.Errorf("after recovery the last step is %d, %v; want 0", last, ok)
	}
	if got, _ := os.ReadFile(out); string(got) != "step 0" {
		t.Errorf("output after recovery: %q", got)
	}
	if _, err := os.Stat(path + ".commit"); !errors.Is(err, os.ErrNotExist) {
		t.Error("the journal is still there after recovery")
	}
}

func TestObserveOnly(t *testing.T) {
	// A trainer that all-reduces its own EntropySum and only wants φ gets the same phases as
	// one that hands papo the tokens, and the state survives a restart the same way.
	c := runConfig()
	path := filepath.Join(t.TempDir(), "state.json")
	r := openRun(t, c, path)
	ref, err := NewReweighter(c)
	if err != nil {
		t.Fatal(err)
	}
	for k := int64(0); k < 12; k++ {
		tok := runStep(k)
		// Two "ranks": halves of the step, reduced by the caller.
		h := tok.Len() / 2
		a := (&StepTokens{Entropy: tok.Entropy[:h], Trained: tok.Trained[:h], Advantage: tok.Advantage[:h]}).EntropySum()
		b := (&StepTokens{Entropy: tok.Entropy[h:], Trained: tok.Trained[h:], Advantage: tok.Advantage[h:]}).EntropySum()
		a.Merge(b)
		if k == 6 {
			r.Close()
			r = openRun(t, c, path)
		}
		ph, err := r.Observe(k, a)
		if err != nil {
			t.Fatal(err)
		}
		res, err := ref.Step(tok, make([]float32, tok.Len()), make([]float64, tok.Len()))
		if err != nil {
			t.Fatal(err)
		}
		// Summation order differs (two partial sums): agreement to rounding, 1e-12 relative.
		if math.Abs(ph.Phi-res.Phase) > 1e-12 || math.Abs(ph.EMA-res.EMA) > 1e-12*res.EMA {
			t.Errorf("step %d: pre-reduced φ = %v, E = %v; token rows φ = %v, E = %v", k, ph.Phi, ph.EMA, res.Phase, res.EMA)
		}
	}
	// Observe rolls back like Step.
	ph, err := r.Observe(10, EntropySum{Sum: 5, Tokens: 10})
	if err != nil || ph.Rollback == nil || ph.Rollback.Forgotten != 2 {
		t.Errorf("Observe(10) after step 11: %+v, %v; want a rollback forgetting 2 steps", ph, err)
	}
	// GlobalEntropy makes one rank's Step use the all-rank figure.
	tok := runStep(12)
	global := EntropySum{Sum: 1e3, Tokens: 1e3}
	tok.GlobalEntropy = &global
	res, err := ref.Step(tok, make([]float32, tok.Len()), make([]float64, tok.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if res.MeanEntropy != 1 || res.Tokens != 1000 {
		t.Errorf("with GlobalEntropy: H̄ = %v over %d tokens, want 1 over 1000", res.MeanEntropy, res.Tokens)
	}
}

// TestStateStepSignal: τ and η are recorded with each step, and a later step may bring new
// ones (a learning-rate or temperature schedule) without touching the phase or the weights; a
// state of an earlier papo that locked them in params reads with its steps given those values.
func TestStateStepSignal(t *testing.T) {
	c := runConfig()
	schedule := []struct{ tau, lr float64 }{{1, 1e-6}, {1, 2e-6}, {0.7, 3e-6}}
	path := filepath.Join(t.TempDir(), "state.json")
	var outs [][]byte
	for k, s := range schedule {
		sig := polarity.DefaultParams()
		sig.Temperature, sig.LR = s.tau, s.lr
		r := openRun(t, c, path, WithSignal(sig))
		out, _ := stepOutput(t, r, int64(k))
		outs = append(outs, out)
		r.Close()
	}
	// The schedule changes nothing the run computes: the same steps under one fixed η and τ.
	want, _ := reference(t, c, int64(len(schedule)), WithSignal(polarity.DefaultParams()))
	for k := range outs {
		if !bytes.Equal(outs[k], want[k]) {
			t.Errorf("step %d: output under the schedule differs from the fixed-η run", k)
		}
	}
	var sf stateFile
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &sf); err != nil {
		t.Fatal(err)
	}
	for _, name := range perStepParams {
		if _, ok := sf.Params[name]; ok {
			t.Errorf("params lock %s", name)
		}
	}
	if len(sf.Steps) != len(schedule) {
		t.Fatalf("%d steps recorded, want %d", len(sf.Steps), len(schedule))
	}
	for k, s := range schedule {
		got := sf.Steps[k]
		if got.Temperature == nil || got.LR == nil || *got.Temperature != s.tau || *got.LR != s.lr {
			t.Errorf("steps[%d]: τ %v, η %v; want %v, %v", k, got.Temperature, got.LR, s.tau, s.lr)
		}
	}

	// An earlier papo's state: τ and η in params, none on the steps.
	legacy := map[string]any{}
	if err := json.Unmarshal(data, &legacy); err != nil {
		t.Fatal(err)
	}
	legacy["params"].(map[string]any)["temperature"] = "0.5"
	legacy["params"].(map[string]any)["lr"] = "0.25"
	for _, s := range legacy["steps"].([]any) {
		delete(s.(map[string]any), "temperature")
		delete(s.(map[string]any), "lr")
	}
	old, _ := json.Marshal(legacy)
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	r := openRun(t, c, path, WithSignal(polarity.DefaultParams()))
	stepOutput(t, r, int64(len(schedule)))
	r.Close()
	data, _ = os.ReadFile(path)
	sf = stateFile{}
	if err := json.Unmarshal(data, &sf); err != nil {
		t.Fatal(err)
	}
	for k, s := range sf.Steps {
		tau, lr := 0.5, 0.25
		if k == len(schedule) {
			tau, lr = 1, 1
		}
		if s.Temperature == nil || s.LR == nil || *s.Temperature != tau || *s.LR != lr {
			t.Errorf("after the legacy state, steps[%d]: τ %v, η %v; want %v, %v", k, s.Temperature, s.LR, tau, lr)
		}
	}
	// A value there that is no number is a malformed state, named.
	legacy["params"].(map[string]any)["lr"] = "fast"
	old, _ = json.Marshal(legacy)
	os.WriteFile(path, old, 0o644)
	if _, err := NewReweighter(c, WithStateFile(path), WithSignal(polarity.DefaultParams())); err == nil || !strings.Contains(err.Error(), `lr = "fast"`) {
		t.Errorf("got %v, want the malformed lr named", err)
	}
}
