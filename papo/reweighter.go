package papo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/entropy-polarity/papo/internal/atomicfile"
	"github.com/entropy-polarity/papo/polarity"
)

// StepResult summarises one processed step (the per-step summary table takes its phase and
// weight columns from here).
type StepResult struct {
	Step        int64
	Tokens      int64   // tokens that fed the phase (all ranks when GlobalEntropy is set)
	MeanEntropy float64 // H̄_k
	EMA         float64 // E_k
	Phase       float64 // φ_k
	// Rollback is set when the step came again: the run went back to just before it first.
	Rollback *Rollback
	WeightStats
}

// Option configures a Reweighter.
type Option func(*options)

type options struct {
	signal    *polarity.Params
	statePath string
	reset     bool
	history   int
	deferred  bool
}

// WithSignal records the parameters of the per-token signals in the run state: τ and η with
// each step (they may change between steps), the PPO clip range and the natural-gradient
// choice as the run's (a state written with other values is refused, naming the parameter and
// both values). Runs that reweight tokens should always pass it.
func WithSignal(p polarity.Params) Option { return func(o *options) { o.signal = &p } }

// WithStateFile keeps the run state in path: it is loaded when the file exists (an absent file
// starts a new run) and saved after every step, or only by Commit with WithDeferredSave. The
// state is locked for the Reweighter's lifetime (Close releases it), and a commit that a crash
// interrupted is finished first.
func WithStateFile(path string) Option { return func(o *options) { o.statePath = path } }

// WithReset starts a new run even when the state file holds one (it is overwritten at the next
// save).
func WithReset(reset bool) Option { return func(o *options) { o.reset = reset } }

// WithHistory keeps the last n ≥ 1 steps in the run state (DefaultHistory without it): a step
// that comes again can roll the run back as far as that.
func WithHistory(n int) Option { return func(o *options) { o.history = n } }

// WithDeferredSave saves the state only when Commit is called, together with the run's output
// files: papo's run pipeline uses it so that the state never runs ahead of the output.
func WithDeferredSave() Option { return func(o *options) { o.deferred = true } }

// Reweighter is the per-run object: the configuration, the phase detector's history and the
// run state. Feed it the steps of a run in increasing order; a step that comes again (at or
// before the last one) rolls the run back to just before it and is then processed anew. A
// Reweighter is not safe for concurrent use.
type Reweighter struct {
	cfg       Config
	params    []param // what the state records
	opts      options
	mem       runMemory
	lock      *os.File
	recovered bool
	closed    bool
}

// NewReweighter validates c and the options and prepares a run. A state written with
// different parameters, a malformed state or one of a newer format is an error, never a silent
// reset; WithReset(true) ignores any existing state.
func NewReweighter(c Config, opts ...Option) (*Reweighter, error) {
	o := options{history: DefaultHistory}
	for _, opt := range opts {
		opt(&o)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if o.signal != nil {
		if err := o.signal.Validate(); err != nil {
			return nil, fmt.Errorf("papo: %w", err)
		}
	}
	if o.history < 1 {
		return nil, fmt.Errorf("papo: history of %d steps: want at least 1", o.history)
	}
	r := &Reweighter{cfg: c, opts: o, mem: newRunMemory()}
	if o.signal != nil {
		r.params = signalParams(*o.signal)
	}
	r.params = append(r.params, c.effectiveParams()...)
	if o.statePath == "" {
		return r, nil
	}
	if err := r.open(); err != nil {
		r.Close()
		return nil, fmt.Errorf("papo: %w", err)
	}
	return r, nil
}

func (r *Reweighter) journalPath() string { return journalPath(r.opts.statePath) }

func journalPath(statePath string) string { return statePath + ".commit" }

// StateExists reports whether a run state file exists at statePath, or the journal of an
// interrupted commit that opening the run will finish into one.
func StateExists(statePath string) bool {
	for _, p := range []string{statePath, journalPath(statePath)} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// open locks the state, finishes an interrupted commit, removes what killed writers left and
// loads the state.
func (r *Reweighter) open() error {
	path := r.opts.statePath
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return fmt.Errorf("run state %s: directory %s does not exist", path, dir)
	}
	lock, err := lockState(path + ".lock")
	if err != nil {
		return err
	}
	r.lock = lock
	if r.recovered, err = atomicfile.Recover(r.journalPath()); err != nil {
		return fmt.Errorf("run state %s: %w", path, err)
	}
	for _, p := range []string{path, r.journalPath()} {
		if err := atomicfile.RemoveStale(p); err != nil {
			return fmt.Errorf("run state: %w", err)
		}
	}
	if r.opts.reset {
		return nil
	}
	m, ok, err := loadState(path, r.params, r.cfg.Phase)
	if err != nil {
		return err
	}
	if ok {
		if m, err = m.trim(r.cfg.Phase, r.opts.history); err != nil {
			return fmt.Errorf("run state %s: %w", path, err)
		}
		r.mem = m
	}
	return nil
}

// trim folds the oldest steps into base until at most limit remain.
func (m runMemory) trim(c PhaseConfig, limit int) (runMemory, error) {
	if len(m.steps) <= limit {
		return m, nil
	}
	base, err := replay(c, m.base, m.steps[:len(m.steps)-limit])
	if err != nil {
		return m, err
	}
	return runMemory{base: base.cur, steps: slices.Clone(m.steps[len(m.steps)-limit:]), cur: m.cur}, nil
}

// Config returns the run's configuration.
func (r *Reweighter) Config() Config { return r.cfg }

// StatePath is the run-state file ("" when the state lives in memory only).
func (r *Reweighter) StatePath() string { return r.opts.statePath }

// Recovered reports whether opening the state finished a commit that a crash had interrupted.
func (r *Reweighter) Recovered() bool { return r.recovered }

// LastStep is the last processed step; ok is false before the first.
func (r *Reweighter) LastStep() (step int64, ok bool) {
	s := r.mem.cur.LastStep
	return s, s >= 0
}

// OldestRollback is the earliest step the run can still go back to.
func (r *Reweighter) OldestRollback() int64 { return r.mem.oldestRollback() }

// DetectorState returns a copy of the phase detector's memory.
func (r *Reweighter) DetectorState() DetectorState {
	s := r.mem.cur
	s.Window = slices.Clone(s.Window)
	return s
}

// History returns the steps the run state remembers, oldest first.
func (r *Reweighter) History() []StepRecord { return slices.Clone(r.mem.steps) }

var errClosed = errors.New("papo: the Reweighter is closed")

// Observe feeds a step's pre-reduced entropy (all ranks) to the phase detector, for trainers
// that apply w = 1 + λ·φ·g(P) themselves. A step at or before the last one rolls the run back
// first (Phase.Rollback says so).
func (r *Reweighter) Observe(step int64, sum EntropySum) (Phase, error) {
	if r.closed {
		return Phase{}, errClosed
	}
	m, rb, ph, err := r.next(step, sum)
	if err != nil {
		return Phase{}, fmt.Errorf("papo: %w", err)
	}
	if err := r.update(m, step); err != nil {
		return Phase{}, err
	}
	ph.Rollback = rb
	return ph, nil
}

// next is the run after step, rolled back first if the step came again.
func (r *Reweighter) next(step int64, sum EntropySum) (runMemory, *Rollback, Phase, error) {
	m, rb, err := r.mem.rollback(r.cfg.Phase, step, r.opts.history)
	if err != nil {
		return m, nil, Phase{}, err
	}
	var sig *stepSignal
	if o := r.opts.signal; o != nil {
		sig = &stepSignal{temperature: o.Temperature, lr: o.LR}
	}
	m, ph, err := m.advance(r.cfg.Phase, step, sum, sig, r.opts.history)
	return m, rb, ph, err
}

// Step processes one training step: it checks the tokens, feeds the step's token-mean entropy
// to the phase detector, and fills weight and reweighted (one element per token, see Apply).
// Without WithDeferredSave the run state is saved atomically before Step returns. On error
// nothing is saved and the in-memory state is unchanged, so the same step can be retried.
func (r *Reweighter) Step(tok *StepTokens, weight []float32, reweighted []float64) (StepResult, error) {
	n := tok.Len()
	if len(weight) != n || len(reweighted) != n {
		panic(fmt.Sprintf("papo: Step: weight has %d and reweighted %d elements for %d tokens", len(weight), len(reweighted), n))
	}
	if r.closed {
		return StepResult{}, errClosed
	}
	if err := tok.check(r.cfg.Method); err != nil {
		return StepResult{}, fmt.Errorf("papo: %w", err)
	}
	es := tok.EntropySum()
	if tok.GlobalEntropy != nil {
		es = *tok.GlobalEntropy
	}
	if g := tok.Global; g != nil {
		if r.cfg.Method == MethodPAPO && r.cfg.Renormalize && r.cfg.G == GTanh {
			return StepResult{}, errors.New("papo: renormalized tanh weights need every rank's Σ|w·A|, which one " +
				"round of global statistics cannot give: use g = sign with --renormalize, or no renormalization")
		}
		es = g.Entropy
	}
	m, rb, ph, err := r.next(tok.Step, es)
	if err != nil {
		return StepResult{}, fmt.Errorf("papo: %w", err)
	}
	ws := apply(r.cfg, ph.Phi, tok, weight, reweighted)
	if err := r.update(m, tok.Step); err != nil {
		return StepResult{}, err
	}
	return StepResult{Step: ph.Step, Tokens: ph.Tokens, MeanEntropy: ph.MeanEntropy, EMA: ph.EMA,
		Phase: ph.Phi, Rollback: rb, WeightStats: ws}, nil
}

// Rollback takes the run back to just before step, as if the steps from it on had never been
// processed (a trainer that resumes from a checkpoint can say so before it sends the step). It
// returns nil when step is after the last processed one. Without WithDeferredSave the state is
// saved.
func (r *Reweighter) Rollback(step int64) (*Rollback, error) {
	if r.closed {
		return nil, errClosed
	}
	m, rb, err := r.mem.rollback(r.cfg.Phase, step, r.opts.history)
	if err != nil || rb == nil {
		return nil, err
	}
	if err := r.update(m, step); err != nil {
		return nil, err
	}
	return rb, nil
}

// update makes m the run's memory, saving it first unless saves are deferred.
func (r *Reweighter) update(m runMemory, step int64) error {
	if r.opts.statePath != "" && !r.opts.deferred {
		data, err := encodeState(r.params, m)
		if err != nil {
			return fmt.Errorf("papo: step %d: run state %s: encode: %w", step, r.opts.statePath, err)
		}
		if err := atomicfile.WriteFile(r.opts.statePath, data); err != nil {
			return fmt.Errorf("papo: step %d: run state: %w", step, err)
		}
	}
	r.mem = m
	return nil
}

// Commit makes the run's output files and its state durable together: with a state file they
// are one transaction (atomicfile.CommitAll, the state renamed last and the journal beside the
// state), so that after a crash either all of them changed or none did. Without a state file
// the files are committed one after another. On error every file not yet committed is aborted.
func (r *Reweighter) Commit(files ...*atomicfile.File) error {
	if r.closed {
		for _, f := range files {
			f.Abort()
		}
		return errClosed
	}
	if r.opts.statePath == "" {
		for i, f := range files {
			if err := f.Commit(); err != nil {
				for _, g := range files[i+1:] {
					g.Abort()
				}
				return err
			}
		}
		return nil
	}
	state, err := r.stageState()
	if err != nil {
		for _, f := range files {
			f.Abort()
		}
		return err
	}
	if err := atomicfile.CommitAll(r.journalPath(), append(slices.Clone(files), state)...); err != nil {
		return fmt.Errorf("papo: %w", err)
	}
	return nil
}

// stageState writes the current state to an uncommitted file.
func (r *Reweighter) stageState() (*atomicfile.File, error) {
	data, err := encodeState(r.params, r.mem)
	if err != nil {
		return nil, fmt.Errorf("papo: run state %s: encode: %w", r.opts.statePath, err)
	}
	f, err := atomicfile.Create(r.opts.statePath)
	if err != nil {
		return nil, fmt.Errorf("papo: run state: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return nil, fmt.Errorf("papo: run state: write %s: %w", r.opts.statePath, err)
	}
	return f, nil
}

// Close releases the run state's lock. With WithDeferredSave, steps processed since the last
// Commit are discarded: the state file keeps what it had.
func (r *Reweighter) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.lock != nil {
		// A lock file does not outlive its run's state: a run that never committed a state (a
		// refused request, a rollback of nothing) leaves nothing behind. It is removed while
		// still held, so no other process can hold it in between.
		if !StateExists(r.opts.statePath) {
			os.Remove(r.lock.Name())
		}
		return r.lock.Close()
	}
	return nil
}
