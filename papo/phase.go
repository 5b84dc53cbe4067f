package papo

import (
	"fmt"
	"math"
)

// EntropySum is a step's entropy over trained tokens in the pre-reduced form a data-parallel
// trainer can all-reduce itself: each rank sends its Σ H and token count, and the phase uses
// the global Sum/Tokens.
type EntropySum struct {
	Sum    float64 // Σ H over trained (mask true) tokens, nats
	Tokens int64   // number of those tokens
}

// Merge adds another rank's partial sums.
func (s *EntropySum) Merge(o EntropySum) {
	s.Sum += o.Sum
	s.Tokens += o.Tokens
}

// Mean is the token-mean entropy H̄ (0 without tokens).
func (s EntropySum) Mean() float64 {
	if s.Tokens == 0 {
		return 0
	}
	return s.Sum / float64(s.Tokens)
}

// Phase is the phase signal of one step.
type Phase struct {
	Step        int64
	Tokens      int64   // tokens that fed H̄ (all ranks)
	MeanEntropy float64 // H̄_k (0 for a step without tokens)
	EMA         float64 // E_k after the step
	// Phi is φ_k ∈ (−1, 1) (tanh may round to ±1 in float64 far from the target; weights stay
	// ≥ 1 − λ > 0 even then); > 0 favours expanding updates, < 0 contracting ones.
	Phi float64
	// Rollback is set (by a Reweighter) when the step came again: the run went back to just
	// before it first, and then processed it.
	Rollback *Rollback
}

// DetectorState is the detector's whole memory, as the run-state file stores it.
type DetectorState struct {
	// LastStep is the last step observed, −1 before the first.
	LastStep int64 `json:"last_step"`
	// Observed counts the steps with tokens, i.e. those folded into the EMA.
	Observed int64 `json:"observed"`
	// EMA is E after the last step with tokens (meaningless while Observed is 0).
	EMA float64 `json:"ema"`
	// Phi is φ of the last step.
	Phi float64 `json:"phi"`
	// Window holds E of the last min(Observed, W) observed steps, oldest first (slope mode;
	// empty in target mode).
	Window []float64 `json:"window"`
	// Integral is I_k, the target mode's sum of relative errors (H* − E)/H* over the observed
	// steps, held to |κ_I·I| ≤ MaxIntegralArg (0 in slope mode and with κ_I = 0, and then not
	// written: such a state file reads as it did before the integral existed).
	Integral float64 `json:"integral,omitempty"`
}

// NewDetectorState is the memory of a detector that has seen no step.
func NewDetectorState() DetectorState { return DetectorState{LastStep: -1, Window: []float64{}} }

// Detector turns the entropy trajectory into the phase signal φ of docs/MATH.md §5, one step at a
// time. It is deterministic: the same sequence of inputs from the same state gives
// bit-identical phases, which is what makes a restarted run reproduce an uninterrupted one.
// A Detector is not safe for concurrent use.
type Detector struct {
	cfg PhaseConfig
	st  DetectorState
}

// MaxIntegralArg bounds the integral's share κ_I·I of the target-mode phase argument
// (anti-windup): tanh(3) = 0.995, so the integral alone can hold φ near ±1 but never winds up
// beyond what it takes to saturate, and it turns as soon as the error changes sign.
const MaxIntegralArg = 3

// SaturatedPhi is the |φ| from which the target mode's integral stops accumulating an error of
// the same sign (conditional integration): far from the target, on the way down from a run's
// initial entropy or out of a collapse, φ is already near ±1 and more integral would only have
// to be unwound after the crossing.
const SaturatedPhi = 0.9

// saturatedArg is atanh(SaturatedPhi) (TestSaturatedArg checks it).
const saturatedArg = 1.4722194895832204

// minRefEntropy floors the reference E_{k−W} in the slope's denominator: a fully collapsed
// entropy (0 nats) must not divide by zero; any rise from there saturates φ at −1.
const minRefEntropy = 1e-12

// NewDetector validates c and returns a detector with no history.
func NewDetector(c PhaseConfig) (*Detector, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("papo: %w", err)
	}
	return &Detector{cfg: c, st: NewDetectorState()}, nil
}

// NewDetectorFromState resumes a detector from a saved state, after checking that the state
// is consistent with c.
func NewDetectorFromState(c PhaseConfig, s DetectorState) (*Detector, error) {
	d, err := NewDetector(c)
	if err != nil {
		return nil, err
	}
	if err := s.check(c); err != nil {
		return nil, err
	}
	s.Window = append([]float64(nil), s.Window...)
	d.st = s
	return d, nil
}

// check reports a state that this configuration cannot have produced.
func (s DetectorState) check(c PhaseConfig) error {
	switch {
	case s.LastStep < -1:
		return fmt.Errorf("last_step %d: want ≥ 0 (or −1 before the first step)", s.LastStep)
	case s.Observed < 0 || s.Observed > s.LastStep+1:
		return fmt.Errorf("observed %d: want 0 ≤ observed ≤ last_step+1 = %d", s.Observed, s.LastStep+1)
	case !finite(s.EMA) || s.EMA < 0:
		return fmt.Errorf("ema %v: want a finite value ≥ 0", s.EMA)
	case !finite(s.Phi) || s.Phi < -1 || s.Phi > 1:
		return fmt.Errorf("phi %v: want a value in [−1, 1]", s.Phi)
	case !finite(s.Integral):
		return fmt.Errorf("integral %v: want a finite value", s.Integral)
	case (c.Mode != PhaseTarget || c.TargetIntegral == 0) && s.Integral != 0:
		return fmt.Errorf("integral %v: want 0 without a target-mode integral gain", s.Integral)
	case c.Mode == PhaseTarget && c.TargetIntegral > 0 && math.Abs(c.TargetIntegral*s.Integral) > MaxIntegralArg:
		return fmt.Errorf("integral %v: want |κ_I·I| ≤ %v (κ_I = %v)", s.Integral, MaxIntegralArg, c.TargetIntegral)
	}
	if c.Mode == PhaseTarget && len(s.Window) > 0 {
		return fmt.Errorf("window has %d entries: want none in target mode", len(s.Window))
	}
	if c.Mode == PhaseSlope && int64(len(s.Window)) != min(s.Observed, int64(c.Window)) {
		return fmt.Errorf("window has %d entries: want min(observed %d, W %d)", len(s.Window), s.Observed, c.Window)
	}
	for i, e := range s.Window {
		if !finite(e) || e < 0 {
			return fmt.Errorf("window[%d] = %v: want a finite value ≥ 0", i, e)
		}
	}
	return nil
}

// State returns a copy of the detector's memory.
func (d *Detector) State() DetectorState {
	s := d.st
	s.Window = append([]float64(nil), d.st.Window...)
	return s
}

// Config returns the detector's parameters.
func (d *Detector) Config() PhaseConfig { return d.cfg }

// StepOrderError is a step that does not come after the last processed one.
type StepOrderError struct {
	Step, LastStep int64
}

func (e *StepOrderError) Error() string {
	return fmt.Sprintf("step %d does not come after the last processed step %d: steps must increase", e.Step, e.LastStep)
}

// Observe folds step's entropy (Σ H over the step's trained tokens of all ranks, and their
// count) into the EMA and returns the step's phase.
//
// Steps must increase; gaps are allowed (the EMA and the window count observed steps, not step
// numbers). A step at or before the last one is a *StepOrderError: going back is a Reweighter's
// job, which keeps the history a rollback needs. A step without tokens leaves E and the window
// unchanged and keeps the previous φ (0 before any data).
func (d *Detector) Observe(step int64, sumEntropy float64, tokens int64) (Phase, error) {
	ph, next, err := d.observe(step, sumEntropy, tokens)
	if err != nil {
		return Phase{}, err
	}
	d.st = next
	return ph, nil
}

// observe computes the phase and the state after step without changing d, so that a caller
// can commit the state only once it is saved.
func (d *Detector) observe(step int64, sumEntropy float64, tokens int64) (Phase, DetectorState, error) {
	st := d.st
	if step < 0 {
		return Phase{}, st, fmt.Errorf("step %d: want a step number ≥ 0", step)
	}
	if tokens < 0 {
		return Phase{}, st, fmt.Errorf("step %d: token count %d: want ≥ 0", step, tokens)
	}
	if !finite(sumEntropy) || sumEntropy < 0 {
		return Phase{}, st, fmt.Errorf("step %d: entropy sum %v: want a finite value ≥ 0", step, sumEntropy)
	}
	if tokens == 0 && sumEntropy != 0 {
		return Phase{}, st, fmt.Errorf("step %d: entropy sum %v over 0 tokens: want 0", step, sumEntropy)
	}
	if st.LastStep >= 0 && step <= st.LastStep {
		return Phase{}, st, &StepOrderError{Step: step, LastStep: st.LastStep}
	}

	st.LastStep = step
	if tokens == 0 {
		return Phase{Step: step, EMA: st.EMA, Phi: st.Phi}, st, nil
	}
	mean := sumEntropy / float64(tokens)
	if st.Observed == 0 {
		st.EMA = mean
	} else {
		b := d.cfg.Beta
		st.EMA = b*st.EMA + (1-b)*mean
	}
	st.Observed++
	switch d.cfg.Mode {
	case PhaseTarget:
		h := d.cfg.TargetEntropy
		e := (h - st.EMA) / h
		arg := d.cfg.TargetKappa * e
		if ki := d.cfg.TargetIntegral; ki > 0 {
			// Conditional integration: while φ is saturated in the error's direction the
			// integral would only wind up; unwinding is always allowed.
			if prev := arg + ki*st.Integral; math.Abs(prev) < saturatedArg || e*prev < 0 {
				lim := MaxIntegralArg / ki
				st.Integral = math.Max(-lim, math.Min(lim, st.Integral+e))
			}
			arg += ki * st.Integral
		}
		st.Phi = math.Tanh(arg)
	case PhaseSlope:
		// Before W observations the slope is taken over the j < W steps there are.
		st.Phi = 0
		if j := len(st.Window); j > 0 {
			ref := st.Window[0]
			st.Phi = math.Tanh(-d.cfg.SlopeKappa * (st.EMA - ref) / (float64(j) * math.Max(ref, minRefEntropy)))
		}
		w := append(make([]float64, 0, d.cfg.Window), st.Window...)
		w = append(w, st.EMA)
		if len(w) > d.cfg.Window {
			w = w[len(w)-d.cfg.Window:]
		}
		st.Window = w
	}
	return Phase{Step: step, Tokens: tokens, MeanEntropy: mean, EMA: st.EMA, Phi: st.Phi}, st, nil
}
