package papo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/entropy-polarity/papo/polarity"
)

// State-file identification. A file whose "format" differs is not a papo run state; a
// "version" above StateVersion was written by a newer papo. Version 1 (papo before run
// histories) did not record the signal parameters and cannot roll back: it is refused with a
// message, never read as something it is not.
const (
	StateFormat  = "papo-run-state"
	StateVersion = 2
)

// DefaultHistory is how many of the last steps a run state keeps so that a step that comes
// again (a trainer resumed from a checkpoint) can roll the run back: enough for a checkpoint
// interval of 1,000 steps.
const DefaultHistory = 1000

// StepRecord is what the phase detector consumed for one step and what it produced: the input
// replays the step exactly, the output checks the replay and tells a person reading the state
// how the phase went.
type StepRecord struct {
	Step       int64   `json:"step"`
	Tokens     int64   `json:"tokens"`      // trained tokens of the step (all ranks)
	SumEntropy float64 `json:"sum_entropy"` // Σ H over them
	EMA        float64 `json:"ema"`         // E_k after the step
	Phi        float64 `json:"phi"`         // φ_k
	// Temperature and LR are the step's τ and η (absent for a run without WithSignal). They
	// change from step to step with a trainer's schedules, so they are recorded here and never
	// locked: neither changes a weight (η scales predicted ΔH only) nor the replay of the phase
	// (which replays the recorded Σ H).
	Temperature *float64 `json:"temperature,omitempty"`
	LR          *float64 `json:"lr,omitempty"`
}

// stepSignal is the per-step part of the signal parameters: τ and η.
type stepSignal struct{ temperature, lr float64 }

// perStepParams are the signal parameters that earlier versions of papo locked into a run's
// params and that are now recorded with each step (StepRecord.Temperature, .LR); a state that
// still holds them in params reads with each of its steps given those values.
var perStepParams = [...]string{"temperature", "lr"}

// stateFile is the JSON document of a run-state file:
//
//	{
//	  "format": "papo-run-state",
//	  "version": 2,
//	  "params": {"method": "papo", "lambda": "0.5", "phase.mode": "slope", "clip_low": "0.2", ...},
//	  "base": {"last_step": -1, "observed": 0, "ema": 0, "phi": 0, "window": []},
//	  "steps": [{"step": 0, "tokens": 81920, "sum_entropy": 52344.75, "ema": 0.639, "phi": 0,
//	             "temperature": 1, "lr": 1e-06}, ...]
//	}
//
// params holds every parameter that decides the weights, the phase or the predicted ΔH
// (runParams), as exact decimal strings. base is the detector's memory before the first step of
// steps, and steps the last (at most the history's length) steps in order; the detector's
// current memory is base with steps replayed, which is checked on load against each step's
// recorded ema and phi, bit for bit. Floats are written in Go's shortest round-tripping form,
// so a loaded state is bit-identical to the saved one.
type stateFile struct {
	Format  string            `json:"format"`
	Version *int              `json:"version"`
	Params  map[string]string `json:"params"`
	Base    *DetectorState    `json:"base"`
	Steps   []StepRecord      `json:"steps"`
}

// runMemory is a run's phase history: base, the steps after it, and the detector's memory after
// the last of them. Values are never modified in place, so a runMemory can be kept as the
// state to go back to while a new one is computed.
type runMemory struct {
	base  DetectorState
	steps []StepRecord
	cur   DetectorState
}

func newRunMemory() runMemory {
	return runMemory{base: NewDetectorState(), cur: NewDetectorState()}
}

// advance observes a step after the last one and keeps at most limit steps of history, folding
// older ones into base.
func (m runMemory) advance(c PhaseConfig, step int64, sum EntropySum, sig *stepSignal, limit int) (runMemory, Phase, error) {
	d := &Detector{cfg: c, st: m.cur}
	ph, next, err := d.observe(step, sum.Sum, sum.Tokens)
	if err != nil {
		return m, Phase{}, err
	}
	out := runMemory{base: m.base, cur: next}
	rec := StepRecord{Step: step, Tokens: sum.Tokens, SumEntropy: sum.Sum, EMA: next.EMA, Phi: next.Phi}
	if sig != nil {
		rec.Temperature, rec.LR = &sig.temperature, &sig.lr
	}
	out.steps = append(slices.Clone(m.steps), rec)
	for len(out.steps) > limit {
		d := &Detector{cfg: c, st: out.base}
		first := out.steps[0]
		if _, out.base, err = d.observe(first.Step, first.SumEntropy, first.Tokens); err != nil {
			return m, Phase{}, err // replays what was observed before: cannot fail
		}
		out.steps = out.steps[1:]
	}
	return out, ph, nil
}

// OldestRollback is the smallest step a run can go back to (roll back to just before it);
// steps at or before the history's base are forgotten.
func (m runMemory) oldestRollback() int64 { return m.base.LastStep + 1 }

// HistoryError is a step that came again from before the oldest step a run state remembers.
type HistoryError struct {
	Step, Oldest, LastStep int64
	History                int // steps the history keeps
}

func (e *HistoryError) Error() string {
	return fmt.Sprintf("step %d comes again, but the run state remembers steps %d … %d only (it keeps the last %d): "+
		"it cannot go back that far; pass --%s to start a new run, or raise the history", e.Step, e.Oldest, e.LastStep, e.History, FlagResetState)
}

// rollback returns the run as it was just before step (nil Rollback when step is after the
// last step: nothing to undo).
func (m runMemory) rollback(c PhaseConfig, step int64, limit int) (runMemory, *Rollback, error) {
	last := m.cur.LastStep
	if last < 0 || step > last {
		return m, nil, nil
	}
	if step < m.oldestRollback() {
		return m, nil, &HistoryError{Step: step, Oldest: m.oldestRollback(), LastStep: last, History: limit}
	}
	keep := 0
	for keep < len(m.steps) && m.steps[keep].Step < step {
		keep++
	}
	out, err := replay(c, m.base, m.steps[:keep])
	if err != nil {
		return m, nil, err
	}
	rb := &Rollback{Step: step, LastStep: last, Forgotten: len(m.steps) - keep}
	return out, rb, nil
}

// replay rebuilds a run from base and steps, checking each step's recorded output.
func replay(c PhaseConfig, base DetectorState, steps []StepRecord) (runMemory, error) {
	m := runMemory{base: base, cur: base}
	d := &Detector{cfg: c, st: base}
	for i, s := range steps {
		_, next, err := d.observe(s.Step, s.SumEntropy, s.Tokens)
		if err != nil {
			return m, fmt.Errorf("steps[%d]: %w", i, err)
		}
		if next.EMA != s.EMA || next.Phi != s.Phi {
			return m, fmt.Errorf("steps[%d] (step %d): recorded ema %v and phi %v, but replaying the step gives %v and %v",
				i, s.Step, s.EMA, s.Phi, next.EMA, next.Phi)
		}
		d.st = next
	}
	m.steps, m.cur = slices.Clone(steps), d.st
	return m, nil
}

// Rollback describes a step that came again: the run went back to just before it, forgetting
// the steps from it on, and then processed it anew.
type Rollback struct {
	Step      int64 // the step that came again
	LastStep  int64 // the last step processed before it came
	Forgotten int   // processed steps in [Step, LastStep] that the run forgot
}

func (r *Rollback) String() string {
	return fmt.Sprintf("step %d comes again: the run state goes back to just before it, forgetting %d processed step(s) (%d … %d)",
		r.Step, r.Forgotten, r.Step, r.LastStep)
}

func encodeState(params []param, m runMemory) ([]byte, error) {
	ps := map[string]string{}
	for _, p := range params {
		ps[p.name] = p.value
	}
	steps := m.steps
	if steps == nil {
		steps = []StepRecord{}
	}
	base := m.base
	if base.Window == nil {
		base.Window = []float64{}
	}
	v := StateVersion
	data, err := json.MarshalIndent(stateFile{Format: StateFormat, Version: &v, Params: ps, Base: &base, Steps: steps}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// decodeState parses and checks a state file written for params and phase configuration c.
// ok is false (with a nil error) only when the file does not exist; anything unreadable,
// malformed or inconsistent is an error, never a silent fresh start.
func loadState(path string, params []param, c PhaseConfig) (m runMemory, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return runMemory{}, false, nil
	}
	if err != nil {
		return runMemory{}, false, fmt.Errorf("run state: %w", err)
	}
	malformed := func(format string, a ...any) error {
		return fmt.Errorf("run state %s is malformed: %s; fix or remove it, or pass --%s to start a new run",
			path, fmt.Sprintf(format, a...), FlagResetState)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return runMemory{}, false, malformed("the file is empty")
	}
	var sf stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		// A version-1 state has a "detector" object: say what it is rather than "unknown field".
		var probe struct {
			Format  string `json:"format"`
			Version int    `json:"version"`
		}
		if json.Unmarshal(data, &probe) == nil && probe.Format == StateFormat && probe.Version == 1 {
			return runMemory{}, false, fmt.Errorf("run state %s has format version 1, written by an older papo that did not record "+
				"the temperature, learning rate, clip range and natural-gradient choice, nor a history to roll back: "+
				"pass --%s to start a new run with this papo", path, FlagResetState)
		}
		return runMemory{}, false, malformed("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return runMemory{}, false, malformed("unexpected data after the JSON object")
	}
	if sf.Format != StateFormat {
		return runMemory{}, false, malformed("format %q: want %q", sf.Format, StateFormat)
	}
	switch {
	case sf.Version == nil:
		return runMemory{}, false, malformed("no version")
	case *sf.Version > StateVersion:
		return runMemory{}, false, fmt.Errorf("run state %s has format version %d, written by a newer papo (this one reads version %d)",
			path, *sf.Version, StateVersion)
	case *sf.Version != StateVersion:
		return runMemory{}, false, malformed("version %d: want %d", *sf.Version, StateVersion)
	}
	if sf.Params == nil {
		return runMemory{}, false, malformed("no params")
	}
	if sf.Base == nil {
		return runMemory{}, false, malformed("no base")
	}
	if sf.Steps == nil {
		return runMemory{}, false, malformed("no steps")
	}
	if err := movePerStepParams(&sf); err != nil {
		return runMemory{}, false, malformed("%v", err)
	}
	if diff := paramDiff(sf.Params, params); diff != "" {
		return runMemory{}, false, fmt.Errorf("run state %s was written with different parameters (%s); "+
			"use the state's parameters to continue that run, or pass --%s to start a new run", path, diff, FlagResetState)
	}
	if sf.Base.Window == nil {
		return runMemory{}, false, malformed("base: no window")
	}
	if err := sf.Base.check(c); err != nil {
		return runMemory{}, false, malformed("base: %v", err)
	}
	m, err = replay(c, *sf.Base, sf.Steps)
	if err != nil {
		return runMemory{}, false, malformed("%v", err)
	}
	return m, true, nil
}

// movePerStepParams moves τ and η that a state of an earlier papo locked into its params onto
// each of its steps that does not record its own.
func movePerStepParams(sf *stateFile) error {
	for _, name := range perStepParams {
		text, ok := sf.Params[name]
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return fmt.Errorf("params: %s = %q: want a number", name, text)
		}
		delete(sf.Params, name)
		for i := range sf.Steps {
			field := &sf.Steps[i].Temperature
			if name == "lr" {
				field = &sf.Steps[i].LR
			}
			if *field == nil {
				*field = &v
			}
		}
	}
	return nil
}

// paramDiff describes how saved differs from params ("" when equal), naming each parameter with
// both values.
func paramDiff(saved map[string]string, params []param) string {
	var diffs []string
	now := map[string]bool{}
	for _, p := range params {
		now[p.name] = true
		v, ok := saved[p.name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s = %s now, absent in the state", p.name, p.value))
		case v != p.value:
			diffs = append(diffs, fmt.Sprintf("%s = %s in the state, %s now", p.name, v, p.value))
		}
	}
	var extra []string
	for k, v := range saved {
		if !now[k] {
			extra = append(extra, fmt.Sprintf("%s = %s in the state, unused now", k, v))
		}
	}
	// Map order is random: sort the extras so the message is stable.
	slices.Sort(extra)
	return strings.Join(append(diffs, extra...), "; ")
}

// signalParams are the parameters of the per-token signals (docs/MATH.md §2) that a run state
// locks: the natural-gradient choice changes P and so PAPO's weights, and the clip range
// changes which tokens Clip-Cov and KL-Cov pick. τ and η are recorded per step instead
// (StepRecord): a trainer's schedules change them during a run.
func signalParams(p polarity.Params) []param {
	return []param{
		{"clip_low", polarity.FormatEpsilon(p.ClipLow)},
		{"clip_high", polarity.FormatEpsilon(p.ClipHigh)},
		{"natural_gradient", strconv.FormatBool(p.NaturalGradient)},
	}
}
