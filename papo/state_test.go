package papo

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// reference runs steps [0, n) without interruption and returns each step's output and the
// final state file.
func reference(t testing.TB, c Config, n int64) ([][]byte, []byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ref.json")
	r, err := NewReweighter(c, path, false)
	if err != nil {
		t.Fatal(err)
	}
	outs := make([][]byte, n)
	for k := int64(0); k < n; k++ {
		outs[k], _ = stepOutput(t, r, k)
	}
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
		r, err := NewReweighter(c, path, false)
		if err != nil {
			t.Fatal(err)
		}
		for k := int64(0); k < n; k++ {
			if k == split { // a new process: only the file carries the run over
				if r, err = NewReweighter(c, path, false); err != nil {
					t.Fatal(err)
				}
				if last, ok := r.LastStep(); k > 0 && (!ok || last != k-1) {
					t.Fatalf("restart at %d: LastStep = %d, %v; want %d", k, last, ok, k-1)
				}
			}
			if got, _ := stepOutput(t, r, k); !bytes.Equal(got, want[k]) {
				t.Fatalf("restart at %d: step %d differs from the uninterrupted run", split, k)
			}
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, wantState) {
			t.Errorf("restart at %d: final state differs:\n%s\nwant\n%s", split, got, wantState)
		}
	}
}

func TestStateRefusesOtherParameters(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	c := runConfig()
	r, err := NewReweighter(c, path, false)
	if err != nil {
		t.Fatal(err)
	}
	for k := int64(0); k < 3; k++ {
		stepOutput(t, r, k)
	}
	saved, _ := os.ReadFile(path)

	other := c
	other.Lambda, other.Phase.Window = 0.3, 4
	_, err = NewReweighter(other, path, false)
	for _, want := range []string{path, "different parameters", "lambda = 0.5 in the state, 0.3 now",
		"phase.window = 3 in the state, 4 now", "--reset-state"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error containing %q", err, want)
		}
	}
	method := c
	method.Method, method.Renormalize = MethodSTEER, false
	if _, err := NewReweighter(method, path, false); err == nil || !strings.Contains(err.Error(), "method = papo in the state, steer now") {
		t.Errorf("other method: got %v", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, saved) {
		t.Error("a refused state file was modified")
	}

	// A parameter that does not act on this method (the STEER range of a PAPO run) is not a
	// different run.
	irrelevant := c
	irrelevant.STEER.Min = 0.5
	if _, err := NewReweighter(irrelevant, path, false); err != nil {
		t.Errorf("changing an unused parameter: %v", err)
	}

	// reset starts a new run; the file is replaced at the first step.
	r, err = NewReweighter(other, path, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.LastStep(); ok {
		t.Error("reset run has a last step")
	}
	stepOutput(t, r, 0)
	if _, err := NewReweighter(other, path, false); err != nil {
		t.Errorf("reopening the reset run: %v", err)
	}
}

func TestStateMalformed(t *testing.T) {
	c := runConfig()
	good := func() string {
		path := filepath.Join(t.TempDir(), "s.json")
		r, err := NewReweighter(c, path, false)
		if err != nil {
			t.Fatal(err)
		}
		for k := int64(0); k < 5; k++ {
			stepOutput(t, r, k)
		}
		b, _ := os.ReadFile(path)
		return string(b)
	}()
	cases := []struct {
		name, content, want string
	}{
		{"empty", "", "the file is empty"},
		{"truncated", good[:len(good)/2], "malformed"},
		{"not JSON", "ema = 3\n", "malformed"},
		{"trailing data", good + "{}", "unexpected data after the JSON object"},
		{"other format", strings.Replace(good, StateFormat, "something-else", 1), `format "something-else"`},
		{"newer version", strings.Replace(good, `"version": 1`, `"version": 2`, 1), "format version 2, written by a newer papo"},
		{"old version", strings.Replace(good, `"version": 1`, `"version": 0`, 1), "version 0: want 1"},
		{"no version", strings.Replace(good, `"version": 1,`, "", 1), "no version"},
		{"unknown field", strings.Replace(good, `"version": 1,`, `"version": 1, "extra": true,`, 1), `unknown field "extra"`},
		{"no detector", `{"format": "papo-run-state", "version": 1, "params": {}}`, "no detector state"},
		{"negative ema", editState(t, good, "ema", -0.5), "ema -0.5"},
		{"phi out of range", editState(t, good, "phi", 1.5), "phi 1.5"},
		{"ema as string", editState(t, good, "ema", "0.5"), "malformed"},
		{"observed too large", editState(t, good, "observed", 99), "observed 99"},
		{"window too short", editState(t, good, "window", []float64{0.5}), "window has 1 entries"},
		{"window entry negative", editState(t, good, "window", []float64{0.5, -1, 0.5}), "window[1] = -1"},
		{"no window", editState(t, good, "window", nil), "no window"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "s.json", tc.content)
			_, err := NewReweighter(c, path, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v, want an error naming %s and containing %q", err, path, tc.want)
			}
			if got, _ := os.ReadFile(path); string(got) != tc.content {
				t.Error("a malformed state file was modified")
			}
			// Only an explicit reset replaces it.
			r, err := NewReweighter(c, path, true)
			if err != nil {
				t.Fatalf("reset: %v", err)
			}
			stepOutput(t, r, 0)
			if _, err := NewReweighter(c, path, false); err != nil {
				t.Errorf("after reset: %v", err)
			}
		})
	}
}

// editState sets detector field key of a state file's JSON to v (removing it when v is nil).
func editState(t *testing.T, state, key string, v any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(state), &m); err != nil {
		t.Fatal(err)
	}
	d := m["detector"].(map[string]any)
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
	if _, err := NewReweighter(runConfig(), path, false); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("got %v, want an error saying the directory does not exist", err)
	}
}

func TestStepOrderAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	c := runConfig()
	r, err := NewReweighter(c, path, false)
	if err != nil {
		t.Fatal(err)
	}
	var last []byte
	for k := int64(0); k < 10; k++ {
		last, _ = stepOutput(t, r, k)
	}
	r, err = NewReweighter(c, path, false)
	if err != nil {
		t.Fatal(err)
	}
	w := make([]float32, runStep(0).Len())
	at := make([]float64, len(w))
	for _, k := range []int64{0, 7} {
		_, err := r.Step(runStep(k), w, at)
		var oe *StepOrderError
		if !errors.As(err, &oe) || !strings.Contains(err.Error(), fmt.Sprintf("step %d was already processed (state last step 9)", k)) ||
			!strings.Contains(err.Error(), "start from step 10") {
			t.Errorf("step %d after a restart at 9: got %v", k, err)
		}
	}
	// The last step again, with its data: a replay with the same outputs.
	got, res := stepOutput(t, r, 9)
	if !res.Replayed || !bytes.Equal(got, last) {
		t.Errorf("replay of step 9: Replayed = %v, same output = %v", res.Replayed, bytes.Equal(got, last))
	}
	// The last step with other data is refused.
	tok := runStep(9)
	tok.Entropy[3] += 0.5
	tok.Trained[3] = true
	if _, err := r.Step(tok, w, at); err == nil || !strings.Contains(err.Error(), "not a replay") {
		t.Errorf("step 9 with other data: got %v", err)
	}
	if next, _ := stepOutput(t, r, 10); next == nil {
		t.Error("step 10 after the refusals failed")
	}
}

func TestSaveFailureKeepsState(t *testing.T) {
	const n = 8
	c := runConfig()
	want, wantState := reference(t, c, n)
	path := filepath.Join(t.TempDir(), "state.json")
	r, err := NewReweighter(c, path, false)
	if err != nil {
		t.Fatal(err)
	}
	for k := int64(0); k < 5; k++ {
		stepOutput(t, r, k)
	}
	before, _ := os.ReadFile(path)
	testHookBeforeRename = func(string) error { return errors.New("injected failure before rename") }
	tok := runStep(5)
	_, err = r.Step(tok, make([]float32, tok.Len()), make([]float64, tok.Len()))
	testHookBeforeRename = nil
	if err == nil || !strings.Contains(err.Error(), "injected failure") || !strings.Contains(err.Error(), "step 5") {
		t.Fatalf("got %v, want the injected failure at step 5", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Error("a failed save changed the state file")
	}
	if last, _ := r.LastStep(); last != 4 {
		t.Errorf("after a failed save LastStep = %d, want 4", last)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".state.json.tmp-*")); len(m) != 0 {
		t.Errorf("temporary files left after a failed save: %v", m)
	}
	for k := int64(5); k < n; k++ { // the retry computes what an uninterrupted run does
		if got, _ := stepOutput(t, r, k); !bytes.Equal(got, want[k]) {
			t.Fatalf("step %d after the failed save differs", k)
		}
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, wantState) {
		t.Error("final state differs from the uninterrupted run")
	}
}

func TestObserveOnly(t *testing.T) {
	// A trainer that all-reduces its own EntropySum and only wants φ gets the same phases as
	// one that hands papo the tokens, and the state survives a restart the same way.
	c := runConfig()
	path := filepath.Join(t.TempDir(), "state.json")
	r, err := NewReweighter(c, path, false)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := NewReweighter(c, "", false)
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
			if r, err = NewReweighter(c, path, false); err != nil {
				t.Fatal(err)
			}
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
