package papo

import (
	"fmt"
	"os"
	"path/filepath"
)

// StepResult summarises one processed step (the per-step summary table of SCHEMA.md takes its
// phase and weight columns from here).
type StepResult struct {
	Step        int64
	Tokens      int64   // tokens that fed the phase (all ranks when GlobalEntropy is set)
	MeanEntropy float64 // H̄_k
	EMA         float64 // E_k
	Phase       float64 // φ_k
	Replayed    bool    // the step repeated the last processed one (see Detector.Observe)
	WeightStats
}

// Reweighter is the per-run object: the configuration, the phase detector and the run state.
// Feed it the steps of a run in order. A Reweighter is not safe for concurrent use, and a
// state file must have one writer at a time.
type Reweighter struct {
	cfg       Config
	det       *Detector
	statePath string
}

// NewReweighter validates c and prepares a run. With statePath != "" the run state is loaded
// from that file when it exists (an absent file starts a new run) and saved after every step.
// A state written with different effective parameters, a malformed state or one of a newer
// format is an error, never a silent reset; reset = true ignores any existing state (the file
// is overwritten after the first step).
func NewReweighter(c Config, statePath string, reset bool) (*Reweighter, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	det, err := NewDetector(c.Phase)
	if err != nil {
		return nil, err
	}
	r := &Reweighter{cfg: c, det: det, statePath: statePath}
	if statePath == "" {
		return r, nil
	}
	dir := filepath.Dir(statePath)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("papo: run state %s: directory %s does not exist", statePath, dir)
	}
	if err := removeStaleTemps(statePath); err != nil {
		return nil, fmt.Errorf("papo: %w", err)
	}
	if reset {
		return r, nil
	}
	st, ok, err := loadState(statePath, c)
	if err != nil {
		return nil, fmt.Errorf("papo: %w", err)
	}
	if ok {
		if r.det, err = NewDetectorFromState(c.Phase, st); err != nil {
			return nil, fmt.Errorf("papo: run state %s: %w", statePath, err)
		}
	}
	return r, nil
}

// Config returns the run's configuration.
func (r *Reweighter) Config() Config { return r.cfg }

// StatePath is the run-state file ("" when the state lives in memory only).
func (r *Reweighter) StatePath() string { return r.statePath }

// LastStep is the last processed step; ok is false before the first. A restarted run goes on
// from LastStep()+1 (or replays LastStep() itself, see Detector.Observe).
func (r *Reweighter) LastStep() (step int64, ok bool) {
	s := r.det.st.LastStep
	return s, s >= 0
}

// DetectorState returns a copy of the phase detector's memory.
func (r *Reweighter) DetectorState() DetectorState { return r.det.State() }

// Observe feeds a step's pre-reduced entropy (all ranks) to the phase detector and saves the
// state, for trainers that apply w = 1 + λ·φ·g(P) themselves.
func (r *Reweighter) Observe(step int64, sum EntropySum) (Phase, error) {
	ph, next, err := r.det.observe(step, sum.Sum, sum.Tokens)
	if err != nil {
		return Phase{}, fmt.Errorf("papo: %w", err)
	}
	if err := r.commit(ph, next); err != nil {
		return Phase{}, err
	}
	return ph, nil
}

// Step processes one training step: it checks the tokens, feeds the step's token-mean entropy
// to the phase detector, fills weight and reweighted (one element per token, see Apply),
// and saves the run state atomically before returning. On error nothing is saved and the
// in-memory state is unchanged, so the same step can be retried.
func (r *Reweighter) Step(tok *StepTokens, weight []float32, reweighted []float64) (StepResult, error) {
	n := tok.Len()
	if len(weight) != n || len(reweighted) != n {
		panic(fmt.Sprintf("papo: Step: weight has %d and reweighted %d elements for %d tokens", len(weight), len(reweighted), n))
	}
	if err := tok.check(r.cfg.Method); err != nil {
		return StepResult{}, fmt.Errorf("papo: %w", err)
	}
	es := tok.EntropySum()
	if tok.GlobalEntropy != nil {
		es = *tok.GlobalEntropy
	}
	ph, next, err := r.det.observe(tok.Step, es.Sum, es.Tokens)
	if err != nil {
		return StepResult{}, fmt.Errorf("papo: %w", err)
	}
	ws := apply(r.cfg, ph.Phi, tok, weight, reweighted)
	if err := r.commit(ph, next); err != nil {
		return StepResult{}, err
	}
	return StepResult{Step: ph.Step, Tokens: ph.Tokens, MeanEntropy: ph.MeanEntropy, EMA: ph.EMA,
		Phase: ph.Phi, Replayed: ph.Replayed, WeightStats: ws}, nil
}

// commit saves next (unless the step was a replay, which changes nothing) and then makes it
// the detector's state.
func (r *Reweighter) commit(ph Phase, next DetectorState) error {
	if ph.Replayed {
		return nil
	}
	if r.statePath != "" {
		if err := saveState(r.statePath, r.cfg, next); err != nil {
			return fmt.Errorf("papo: step %d: %w", ph.Step, err)
		}
	}
	r.det.st = next
	return nil
}
