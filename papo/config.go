package papo

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Method names accepted by Config.Method.
const (
	MethodPAPO           = "papo"            // w = 1 + λ·φ·g(P) (docs/MATH.md §5, our design)
	MethodClipCov        = "clip-cov"        // Cui et al. 2025: detach a few high-covariance tokens
	MethodKLCov          = "kl-cov"          // Cui et al. 2025: KL penalty on the top-covariance tokens
	MethodSTEER          = "steer"           // STEER: weights in [0.8, 1.2] from the entropy-change magnitude
	MethodEntropyShaping = "entropy-shaping" // Cheng et al. 2025: Ã = A + min(α·H, |A|/κ)
	MethodTopEntropy     = "top-entropy"     // Wang et al. 2025: train only on the top 20 % entropy tokens
	MethodNone           = "none"            // w ≡ 1: the plain run, for comparison
)

// Methods lists every method name, PAPO first.
func Methods() []string {
	return []string{MethodPAPO, MethodClipCov, MethodKLCov, MethodSTEER, MethodEntropyShaping,
		MethodTopEntropy, MethodNone}
}

// Phase modes accepted by PhaseConfig.Mode.
const (
	PhaseSlope  = "slope"  // φ from the relative slope of the entropy EMA over W steps
	PhaseTarget = "target" // φ from the distance of the entropy EMA to a target H*
)

// Shapes of g in w = 1 + λ·φ·g(P), accepted by Config.G.
const (
	GSign = "sign" // g = sign(P)
	GTanh = "tanh" // g = tanh(P/σ_P), σ_P the step's standard deviation of P
)

// PhaseConfig parameterises the phase detector of docs/MATH.md §5. The schedule is our design: the
// PAPO paper does not publish its own, so every constant is a parameter.
type PhaseConfig struct {
	// Mode is PhaseSlope (default: needs no target) or PhaseTarget.
	Mode string `toml:"mode" json:"mode"`
	// TargetEntropy is H* in nats (target mode only; must stay 0 in slope mode).
	TargetEntropy float64 `toml:"target_entropy" json:"target_entropy"`
	// Beta is the EMA coefficient β ∈ [0, 1): E_k = β·E_{k−1} + (1−β)·H̄_k. Default 0.9.
	Beta float64 `toml:"beta" json:"beta"`
	// Window is W ≥ 1, the slope's look-back in observed steps (slope mode). Default 10.
	Window int `toml:"window" json:"window"`
	// TargetKappa is κ in φ = tanh(κ·e + κ_I·I), e = (H* − E)/H*. Default 16: a 5 % shortfall
	// gives φ ≈ 0.66 from the proportional term alone (chosen in the closed loop of
	// bench/closedloop, docs/MATH.md §5; papo before it used 2, which settled 0.15–0.4 nats
	// below the target there).
	TargetKappa float64 `toml:"target_kappa" json:"target_kappa"`
	// TargetIntegral is κ_I ≥ 0, the gain of the integral I_k = Σ e over the observed steps
	// (target mode; docs/MATH.md §5). The proportional term alone settles below a target that
	// needs a lasting push (it needs an error to push); the integral removes that offset.
	// Default 0.1; 0 is the proportional controller of papo before it.
	TargetIntegral float64 `toml:"target_integral" json:"target_integral"`
	// SlopeKappa is κ in φ = tanh(−κ·(E_k − E_{k−W})/(W·E_{k−W})). The argument is a relative
	// change per step, so κ is larger than in target mode. Default 50: an entropy falling by
	// 1 % per step gives φ ≈ 0.46.
	SlopeKappa float64 `toml:"slope_kappa" json:"slope_kappa"`
}

// ClipCovConfig parameterises Clip-Cov (Cui et al. 2025, arXiv 2505.22617).
type ClipCovConfig struct {
	Ratio float64 `toml:"ratio" json:"ratio"` // fraction of the step's tokens detached, default 2e-4 (at least one)
	Low   float64 `toml:"low" json:"low"`     // candidates have Low < Cov < High; default 1
	High  float64 `toml:"high" json:"high"`   // default 5
	Seed  uint64  `toml:"seed" json:"seed"`   // seeds the random choice among candidates (mixed with the step)
}

// KLCovConfig parameterises KL-Cov (Cui et al. 2025, arXiv 2505.22617).
type KLCovConfig struct {
	Ratio float64 `toml:"ratio" json:"ratio"` // fraction of the step's tokens penalised (top covariance), default 2e-4
	Coef  float64 `toml:"coef" json:"coef"`   // coefficient of |log π − log π_old|, default 1 (verl's ppo_kl_coef)
}

// STEERConfig parameterises the STEER weights (arXiv 2510.10150) as docs/MATH.md §5 states them.
type STEERConfig struct {
	Min float64 `toml:"min" json:"min"` // weight of the token with the largest magnitude, default 0.8
	Max float64 `toml:"max" json:"max"` // weight of the token with the smallest magnitude, default 1.2
}

// ShapingConfig parameterises entropy advantage shaping Ã = A + min(α·H, |A|/κ)
// (Cheng et al. 2025, arXiv 2506.14758).
type ShapingConfig struct {
	Alpha float64 `toml:"alpha" json:"alpha"` // α ≥ 0, default 0.4
	Kappa float64 `toml:"kappa" json:"kappa"` // κ > 1 (keeps every advantage's sign), default 2
}

// TopEntropyConfig parameterises top-entropy masking (Wang et al. 2025, arXiv 2506.01939).
type TopEntropyConfig struct {
	Fraction float64 `toml:"fraction" json:"fraction"` // fraction of the step's tokens kept, default 0.2
}

// Config is everything that decides a step's weights. DefaultConfig gives the documented
// defaults; RegisterFlags and LoadConfig are the only ways papo's commands set it.
type Config struct {
	Method string      `toml:"method" json:"method"`
	Phase  PhaseConfig `toml:"phase" json:"phase"`
	// Lambda is λ ∈ [0, 1) in w = 1 + λ·φ·g(P); λ < 1 keeps every weight > 0. Default 0.5.
	Lambda float64 `toml:"lambda" json:"lambda"`
	// G is GSign (default) or GTanh.
	G string `toml:"g" json:"g"`
	// Renormalize rescales the PAPO weights of each step so that Σ|Ã| = Σ|A|.
	Renormalize bool `toml:"renormalize" json:"renormalize"`

	ClipCov    ClipCovConfig    `toml:"clip_cov" json:"clip_cov"`
	KLCov      KLCovConfig      `toml:"kl_cov" json:"kl_cov"`
	STEER      STEERConfig      `toml:"steer" json:"steer"`
	Shaping    ShapingConfig    `toml:"shaping" json:"shaping"`
	TopEntropy TopEntropyConfig `toml:"top_entropy" json:"top_entropy"`
}

// DefaultPhaseConfig is slope mode, β = 0.9, W = 10, κ = 50 (slope); for target mode κ = 16
// and κ_I = 0.1.
func DefaultPhaseConfig() PhaseConfig {
	return PhaseConfig{Mode: PhaseSlope, Beta: 0.9, Window: 10, TargetKappa: 16, TargetIntegral: 0.1, SlopeKappa: 50}
}

// DefaultConfig is PAPO with λ = 0.5, g = sign, no renormalization, the default phase detector,
// and the baselines' published defaults.
func DefaultConfig() Config {
	return Config{
		Method:     MethodPAPO,
		Phase:      DefaultPhaseConfig(),
		Lambda:     0.5,
		G:          GSign,
		ClipCov:    ClipCovConfig{Ratio: 2e-4, Low: 1, High: 5},
		KLCov:      KLCovConfig{Ratio: 2e-4, Coef: 1},
		STEER:      STEERConfig{Min: 0.8, Max: 1.2},
		Shaping:    ShapingConfig{Alpha: 0.4, Kappa: 2},
		TopEntropy: TopEntropyConfig{Fraction: 0.2},
	}
}

// FlagResetState is the command-line flag (of papo reweight) that starts a new run over an
// existing state file; the errors that refuse a state name it.
const FlagResetState = "reset-state"

// flagSpec is one command-line flag bound to a Config field.
type flagSpec struct {
	name, usage string
	str         *string
	f64         *float64
	integer     *int
	u64         *uint64
	boolean     *bool
}

// flags is the one table of papo's reweighting flags: names, bindings and help text.
func (c *Config) flags() []flagSpec {
	return []flagSpec{
		{name: "method", str: &c.Method, usage: "advantage reweighting: " + strings.Join(Methods(), "|")},
		{name: "phase-mode", str: &c.Phase.Mode, usage: "phase signal: slope (entropy EMA trend over the window) or target (distance of the EMA to --target-entropy)"},
		{name: "target-entropy", f64: &c.Phase.TargetEntropy, usage: "target token-mean entropy H* in nats (phase mode target)"},
		{name: "ema-beta", f64: &c.Phase.Beta, usage: "EMA coefficient β in [0,1) of the step entropy"},
		{name: "phase-window", integer: &c.Phase.Window, usage: "slope look-back W in steps (≥ 1)"},
		{name: "target-kappa", f64: &c.Phase.TargetKappa, usage: "gain κ of the target-mode phase tanh(κ(H*−E)/H*)"},
		{name: "target-integral", f64: &c.Phase.TargetIntegral, usage: "gain κ_I ≥ 0 of the target-mode integral of the relative entropy error (0: proportional only)"},
		{name: "slope-kappa", f64: &c.Phase.SlopeKappa, usage: "gain κ of the slope-mode phase tanh(−κ·relative EMA change per step)"},
		{name: "lambda", f64: &c.Lambda, usage: "PAPO strength λ in [0,1): w = 1 + λ·φ·g(P)"},
		{name: "weight-fn", str: &c.G, usage: "PAPO g(P): sign or tanh (tanh(P/σ_P), σ_P the step's std of P)"},
		{name: "renormalize", boolean: &c.Renormalize, usage: "rescale PAPO weights per step so that Σ|Ã| = Σ|A|"},
		{name: "clip-cov-ratio", f64: &c.ClipCov.Ratio, usage: "Clip-Cov: fraction of tokens detached"},
		{name: "clip-cov-low", f64: &c.ClipCov.Low, usage: "Clip-Cov: lower covariance bound of candidates"},
		{name: "clip-cov-high", f64: &c.ClipCov.High, usage: "Clip-Cov: upper covariance bound of candidates"},
		{name: "clip-cov-seed", u64: &c.ClipCov.Seed, usage: "Clip-Cov: seed of the random choice among candidates"},
		{name: "kl-cov-ratio", f64: &c.KLCov.Ratio, usage: "KL-Cov: fraction of tokens penalised (top covariance)"},
		{name: "kl-cov-coef", f64: &c.KLCov.Coef, usage: "KL-Cov: coefficient of |log π − log π_old|"},
		{name: "steer-min", f64: &c.STEER.Min, usage: "STEER: weight of the largest entropy-change magnitude"},
		{name: "steer-max", f64: &c.STEER.Max, usage: "STEER: weight of the smallest entropy-change magnitude"},
		{name: "shaping-alpha", f64: &c.Shaping.Alpha, usage: "entropy shaping: α in A + min(α·H, |A|/κ)"},
		{name: "shaping-kappa", f64: &c.Shaping.Kappa, usage: "entropy shaping: κ > 1 in A + min(α·H, |A|/κ)"},
		{name: "top-fraction", f64: &c.TopEntropy.Fraction, usage: "top-entropy: fraction of highest-entropy tokens kept"},
	}
}

// RegisterFlags defines every reweighting flag on fs, bound to c's fields, with c's current
// values as defaults (call it on DefaultConfig()).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	for _, f := range c.flags() {
		switch {
		case f.str != nil:
			fs.StringVar(f.str, f.name, *f.str, f.usage)
		case f.f64 != nil:
			fs.Float64Var(f.f64, f.name, *f.f64, f.usage)
		case f.integer != nil:
			fs.IntVar(f.integer, f.name, *f.integer, f.usage)
		case f.u64 != nil:
			fs.Uint64Var(f.u64, f.name, *f.u64, f.usage)
		case f.boolean != nil:
			fs.BoolVar(f.boolean, f.name, *f.boolean, f.usage)
		}
	}
}

// LoadConfig reads a .toml or .json file over c: keys present in the file replace c's values,
// others keep them. Unknown keys and ill-typed values are errors. It does not validate; call
// Validate once flags have been applied too.
func LoadConfig(path string, c *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("papo config: %w", err)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		md, err := toml.Decode(string(data), c)
		if err != nil {
			return fmt.Errorf("papo config %s: %w", path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			keys := make([]string, len(und))
			for i, k := range und {
				keys[i] = k.String()
			}
			return fmt.Errorf("papo config %s: unknown key(s) %s", path, strings.Join(keys, ", "))
		}
	case ".json":
		if err := DecodeConfigJSON(data, c); err != nil {
			return fmt.Errorf("papo config %s: %w", path, err)
		}
	default:
		return fmt.Errorf("papo config %s: unknown extension %q (want .toml or .json)", path, filepath.Ext(path))
	}
	return nil
}

// DecodeConfigJSON reads one JSON object over c, as LoadConfig reads a .json file (a server
// request carries the same object in its metadata). It does not validate.
func DecodeConfigJSON(data []byte, c *Config) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}

// finite reports whether x is neither NaN nor ±Inf (x − x is NaN for those, 0 for all else:
// one subtraction, where IsNaN and IsInf were a fifth of a step's reweighting time).
func finite(x float64) bool { return x-x == 0 }

// Validate reports every parameter outside its domain, each with the expected range.
func (p PhaseConfig) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch p.Mode {
	case PhaseSlope:
		if p.TargetEntropy != 0 {
			bad("phase: target entropy %v is set but the phase mode is %q: use mode %q (--phase-mode %s) or leave the target at 0",
				p.TargetEntropy, PhaseSlope, PhaseTarget, PhaseTarget)
		}
	case PhaseTarget:
		if !(p.TargetEntropy > 0) || !finite(p.TargetEntropy) {
			bad("phase: target entropy H* = %v: target mode needs a finite H* > 0 nats (--target-entropy)", p.TargetEntropy)
		}
	default:
		bad("phase: mode %q: want %q or %q", p.Mode, PhaseSlope, PhaseTarget)
	}
	if !(p.Beta >= 0 && p.Beta < 1) {
		bad("phase: EMA β = %v: want a value in [0, 1)", p.Beta)
	}
	if p.Window < 1 || p.Window > maxWindow {
		bad("phase: window W = %d: want 1 ≤ W ≤ %d", p.Window, maxWindow)
	}
	if !(p.TargetKappa > 0) || !finite(p.TargetKappa) {
		bad("phase: target κ = %v: want a finite value > 0", p.TargetKappa)
	}
	if !(p.TargetIntegral >= 0) || !finite(p.TargetIntegral) {
		bad("phase: target integral gain κ_I = %v: want a finite value ≥ 0", p.TargetIntegral)
	}
	if !(p.SlopeKappa > 0) || !finite(p.SlopeKappa) {
		bad("phase: slope κ = %v: want a finite value > 0", p.SlopeKappa)
	}
	return errors.Join(errs...)
}

// maxWindow bounds W so that the state file stays small.
const maxWindow = 100000

// Validate reports every parameter outside its domain, each with the expected range.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	known := false
	for _, m := range Methods() {
		known = known || c.Method == m
	}
	if !known {
		bad("method %q: want one of %s", c.Method, strings.Join(Methods(), ", "))
	}
	if err := c.Phase.Validate(); err != nil {
		errs = append(errs, err)
	}
	if !(c.Lambda >= 0 && c.Lambda < 1) {
		bad("lambda λ = %v: want a value in [0, 1), so that every weight 1 + λ·φ·g stays > 0", c.Lambda)
	}
	if c.G != GSign && c.G != GTanh {
		bad("g %q: want %q or %q", c.G, GSign, GTanh)
	}
	if c.Renormalize && c.Method != MethodPAPO {
		bad("renormalize applies to method %q only (method is %q)", MethodPAPO, c.Method)
	}
	if !(c.ClipCov.Ratio > 0 && c.ClipCov.Ratio <= 1) {
		bad("clip-cov ratio %v: want a value in (0, 1]", c.ClipCov.Ratio)
	}
	if !finite(c.ClipCov.Low) || !finite(c.ClipCov.High) || !(c.ClipCov.Low < c.ClipCov.High) {
		bad("clip-cov bounds [%v, %v]: want finite low < high", c.ClipCov.Low, c.ClipCov.High)
	}
	if !(c.KLCov.Ratio > 0 && c.KLCov.Ratio <= 1) {
		bad("kl-cov ratio %v: want a value in (0, 1]", c.KLCov.Ratio)
	}
	if !(c.KLCov.Coef >= 0) || !finite(c.KLCov.Coef) {
		bad("kl-cov coefficient %v: want a finite value ≥ 0", c.KLCov.Coef)
	}
	if !(c.STEER.Min > 0) || !finite(c.STEER.Max) || !(c.STEER.Min <= c.STEER.Max) {
		bad("steer range [%v, %v]: want finite 0 < min ≤ max", c.STEER.Min, c.STEER.Max)
	}
	if !(c.Shaping.Alpha >= 0) || !finite(c.Shaping.Alpha) {
		bad("entropy shaping α = %v: want a finite value ≥ 0", c.Shaping.Alpha)
	}
	if !(c.Shaping.Kappa > 1) || !finite(c.Shaping.Kappa) {
		bad("entropy shaping κ = %v: want a finite value > 1 (it keeps the sign of every advantage)", c.Shaping.Kappa)
	}
	if !(c.TopEntropy.Fraction > 0 && c.TopEntropy.Fraction <= 1) {
		bad("top-entropy fraction %v: want a value in (0, 1]", c.TopEntropy.Fraction)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("papo config: %w", err)
	}
	return nil
}

// param is one parameter that decides the weights of a run, as the state file records it.
type param struct{ name, value string }

func fmtF(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// effectiveParams lists the parameters that change the weights or the phase signal for c's
// method and phase mode, and only those: changing a parameter that has no effect (say the
// STEER range of a PAPO run) does not invalidate a saved run state.
func (c Config) effectiveParams() []param {
	ps := []param{{"method", c.Method}, {"phase.mode", c.Phase.Mode}, {"phase.beta", fmtF(c.Phase.Beta)}}
	if c.Phase.Mode == PhaseTarget {
		ps = append(ps, param{"phase.target_entropy", fmtF(c.Phase.TargetEntropy)},
			param{"phase.target_kappa", fmtF(c.Phase.TargetKappa)})
		// Listed only when set, so that a state of the proportional controller (papo before the
		// integral) still reads with κ_I = 0, and one that a κ_I > 0 would replay differently is
		// refused with both values named.
		if c.Phase.TargetIntegral != 0 {
			ps = append(ps, param{"phase.target_integral", fmtF(c.Phase.TargetIntegral)})
		}
	} else {
		ps = append(ps, param{"phase.window", strconv.Itoa(c.Phase.Window)},
			param{"phase.slope_kappa", fmtF(c.Phase.SlopeKappa)})
	}
	switch c.Method {
	case MethodPAPO:
		ps = append(ps, param{"lambda", fmtF(c.Lambda)}, param{"g", c.G},
			param{"renormalize", strconv.FormatBool(c.Renormalize)})
	case MethodClipCov:
		ps = append(ps, param{"clip_cov.ratio", fmtF(c.ClipCov.Ratio)}, param{"clip_cov.low", fmtF(c.ClipCov.Low)},
			param{"clip_cov.high", fmtF(c.ClipCov.High)}, param{"clip_cov.seed", strconv.FormatUint(c.ClipCov.Seed, 10)})
	case MethodKLCov:
		ps = append(ps, param{"kl_cov.ratio", fmtF(c.KLCov.Ratio)}, param{"kl_cov.coef", fmtF(c.KLCov.Coef)})
	case MethodSTEER:
		ps = append(ps, param{"steer.min", fmtF(c.STEER.Min)}, param{"steer.max", fmtF(c.STEER.Max)})
	case MethodEntropyShaping:
		ps = append(ps, param{"shaping.alpha", fmtF(c.Shaping.Alpha)}, param{"shaping.kappa", fmtF(c.Shaping.Kappa)})
	case MethodTopEntropy:
		ps = append(ps, param{"top_entropy.fraction", fmtF(c.TopEntropy.Fraction)})
	}
	return ps
}
