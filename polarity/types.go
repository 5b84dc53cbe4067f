package polarity

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/entropy-polarity/papo/internal/grow"
)

// Dtype is the element type of a logits row.
type Dtype uint8

const (
	Float32  Dtype = iota // IEEE binary32
	Float16               // IEEE binary16, raw bits in Logits.Bits
	BFloat16              // bfloat16, raw bits in Logits.Bits
)

// Size is the width of one element in bytes.
func (d Dtype) Size() int {
	if d == Float32 {
		return 4
	}
	return 2
}

func (d Dtype) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("Dtype(%d)", uint8(d))
}

// ParseDtype is the inverse of Dtype.String.
func ParseDtype(s string) (Dtype, error) {
	switch s {
	case "float32", "f32":
		return Float32, nil
	case "float16", "f16", "half":
		return Float16, nil
	case "bfloat16", "bf16":
		return BFloat16, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (want float32, float16 or bfloat16)", s)
}

// Logits is a batch of raw logits rows, row-major, Rows()×V.
// Exactly one of F32 (Float32) and Bits (Float16, BFloat16) is used.
type Logits struct {
	Dtype Dtype
	V     int
	F32   []float32
	Bits  []uint16
}

// Rows is the number of rows held.
func (l *Logits) Rows() int {
	if l.V == 0 {
		return 0
	}
	if l.Dtype == Float32 {
		return len(l.F32) / l.V
	}
	return len(l.Bits) / l.V
}

// Batch is what an engine consumes: token rows with their sampled token and advantage.
// Optional slices are nil when the column is absent; a validity slice that is nil means
// every value is present.
type Batch struct {
	Logits Logits
	// Stats, when set, replace Logits: the rows' statistics as a trainer computed them (then
	// Logits is empty and ComputeStats, not an Engine, computes the batch).
	Stats   *StatsColumns
	TokenID []int32 // sampled token a, 0 ≤ a < V (validated by the reader)

	Advantage      []float64 // A; nil when the input has no advantage column
	AdvantageValid []bool    // false: no advantage for that token (polarity is null)

	OldLogprob      []float32 // log π_old(a); nil when absent
	OldLogprobValid []bool

	Mask []bool // false: token is not trained on; nil: every token is trained on
}

// StatsColumns are the per-token row statistics of docs/MATH.md §3 on u = z/τ (the fields of
// Sums, and u_a), one value per row in each slice: what a trainer reduces its logits to on the
// GPU (verl's vocab-parallel entropy all-reduces the same max and sums).
type StatsColumns struct {
	Max        []float64 // m = max_j u_j
	SumExpRest []float64 // s0 − 1 = Σ e^{u−m} − 1 (kept apart so that peaked rows keep their precision)
	SumExpV    []float64 // s1 = Σ e^{u−m}(u−m)
	SumExp2    []float64 // s2 = Σ e^{2(u−m)}
	SumExp2V   []float64 // s3 = Σ e^{2(u−m)}(u−m)
	Sampled    []float64 // u_a, the sampled token's scaled logit
}

// Rows is the number of token rows.
func (b *Batch) Rows() int { return len(b.TokenID) }

// HasAdvantage reports whether row i carries an advantage.
func (b *Batch) HasAdvantage(i int) bool {
	return b.Advantage != nil && (b.AdvantageValid == nil || b.AdvantageValid[i])
}

// Trained reports whether row i is trained on (mask true or absent).
func (b *Batch) Trained(i int) bool { return b.Mask == nil || b.Mask[i] }

// HasOldLogprob reports whether row i carries log π_old(a).
func (b *Batch) HasOldLogprob(i int) bool {
	return b.OldLogprob != nil && (b.OldLogprobValid == nil || b.OldLogprobValid[i])
}

// Params are the per-run constants of docs/MATH.md §2.
type Params struct {
	Temperature float64 // τ > 0; logits are divided by it
	LR          float64 // η, scales the predicted entropy change
	// ClipLow and ClipHigh are PPO's ε_low and ε_high, with ClipRange's meaning: +Inf means
	// no clipping, 0 a clip range of zero width.
	ClipLow, ClipHigh float64
	// NaturalGradient selects T_npg = −(log π_a + H) instead of T = C − S_a.
	NaturalGradient bool
}

// DefaultParams are τ = 1, η = 1, no clipping.
func DefaultParams() Params {
	return Params{Temperature: 1, LR: 1, ClipLow: math.Inf(1), ClipHigh: math.Inf(1)}
}

// Clip is the PPO clip range of p.
func (p Params) Clip() ClipRange { return ClipRange{Low: p.ClipLow, High: p.ClipHigh} }

// ClipRange is PPO's clip range: the surrogate clips the probability ratio r = π/π_old to
// [1 − Low, 1 + High]. Each ε has one meaning everywhere in papo (flags, schema metadata,
// run state, the CUDA kernels): +Inf never clips that side, and 0 is a range of zero width,
// which clips a token as soon as its ratio moves past 1 in its advantage's direction.
type ClipRange struct{ Low, High float64 }

// NoClip is the clip range that never clips.
func NoClip() ClipRange { return ClipRange{Low: math.Inf(1), High: math.Inf(1)} }

// Clipped reports whether PPO's clipped surrogate gives a token with advantage adv and ratio
// r no gradient: adv > 0 and r > 1 + High, or adv < 0 and r < 1 − Low.
func (c ClipRange) Clipped(adv, r float64) bool {
	return (adv > 0 && r > 1+c.High) || (adv < 0 && r < 1-c.Low)
}

// ParseEpsilon reads one PPO ε as flags and schema metadata write it: a number ≥ 0, or
// "none" (also "inf", "+Inf", "infinity" and the empty string) for no clipping.
func ParseEpsilon(s string) (float64, error) {
	s = strings.TrimSpace(s)
	switch strings.ToLower(s) {
	case "", "none", "inf", "+inf", "infinity", "+infinity":
		return math.Inf(1), nil
	}
	e, err := strconv.ParseFloat(s, 64)
	if err != nil || !(e >= 0) {
		return 0, fmt.Errorf("%q: want a number ≥ 0, or \"none\" for no clipping", s)
	}
	return e, nil
}

// FormatEpsilon writes ε so that ParseEpsilon reads it back exactly ("none" for +Inf).
func FormatEpsilon(e float64) string {
	if math.IsInf(e, 1) {
		return "none"
	}
	return strconv.FormatFloat(e, 'g', -1, 64)
}

// The temperatures the kernels can represent. The assembly kernel holds log₂(e)/τ and
// −86.5·τ (its exponential's cutoff) as float32 constants: below MinTemperature the first
// overflows to +Inf, above MaxTemperature the second, and every sum turns NaN (before this
// bound, a worker panicked). MaxTemperature keeps a margin of 128/86.5 for the cutoff.
const (
	MinTemperature = math.Log2E / math.MaxFloat32 // ≈ 4.24e-39
	MaxTemperature = math.MaxFloat32 / 128        // ≈ 2.66e36
)

// Validate reports a parameter outside its domain: τ outside [MinTemperature,
// MaxTemperature], an η that is not finite or whose η/τ² (the predicted entropy change's
// scale) overflows, a negative or NaN ε.
func (p Params) Validate() error {
	if !(p.Temperature >= MinTemperature && p.Temperature <= MaxTemperature) {
		return fmt.Errorf("temperature %v: want a value in [%.4g, %.4g] (the range the kernels' float32 constants "+
			"log2(e)/τ and 86.5·τ can represent)", p.Temperature, MinTemperature, MaxTemperature)
	}
	if math.IsNaN(p.LR) || math.IsInf(p.LR, 0) {
		return fmt.Errorf("learning rate %v: want a finite value", p.LR)
	}
	if scale := p.LR / (p.Temperature * p.Temperature); math.IsInf(scale, 0) {
		return fmt.Errorf("learning rate %v at temperature %v: η/τ² overflows float64", p.LR, p.Temperature)
	}
	if !(p.ClipLow >= 0) || !(p.ClipHigh >= 0) {
		return fmt.Errorf("clip range (%v, %v): want values ≥ 0 (+Inf for none)", p.ClipLow, p.ClipHigh)
	}
	return nil
}

// Result holds the per-token outputs of docs/SCHEMA.md, one element per row of the batch.
type Result struct {
	Entropy         []float32 // H
	Logprob         []float32 // log π_a
	SampledTerm     []float32 // S_a
	Correction      []float32 // C
	PolarityFactor  []float32 // T = C − S_a (or T_npg)
	Polarity        []float32 // P = A·T; meaningful where PolarityValid
	PolarityValid   []bool    // false where the token has no advantage
	PredictedDeltaH []float32 // (η/τ²)·r·1[not clipped]·P; 0 for masked tokens and tokens without advantage
}

// floats are the float32 columns in order (all but PolarityValid): the one list of them.
func (r *Result) floats() [7]*[]float32 {
	return [7]*[]float32{&r.Entropy, &r.Logprob, &r.SampledTerm, &r.Correction, &r.PolarityFactor,
		&r.Polarity, &r.PredictedDeltaH}
}

// Resize makes every column n long, reusing storage.
func (r *Result) Resize(n int) {
	for _, c := range r.floats() {
		if cap(*c) < n {
			*c = make([]float32, n)
		} else {
			*c = (*c)[:n]
		}
	}
	if cap(r.PolarityValid) < n {
		r.PolarityValid = make([]bool, n)
	} else {
		r.PolarityValid = r.PolarityValid[:n]
	}
}

// Len is the number of rows held.
func (r *Result) Len() int { return len(r.Entropy) }

// Rows views rows [lo, hi) (no copy).
func (r *Result) Rows(lo, hi int) Result {
	v := Result{PolarityValid: r.PolarityValid[lo:hi]}
	src := r.floats()
	for k, c := range v.floats() {
		*c = (*src[k])[lo:hi]
	}
	return v
}

// Grow makes room for n rows in all, keeping the rows held; capacity at least doubles when it
// grows (grow.Cap), so that appending batch after batch copies each row at most about once.
func (r *Result) Grow(n int) {
	for _, c := range r.floats() {
		*c = grow.Cap(*c, n)
	}
	r.PolarityValid = grow.Cap(r.PolarityValid, n)
}

// Append adds o's rows.
func (r *Result) Append(o Result) {
	src := o.floats()
	for k, c := range r.floats() {
		*c = append(*c, *src[k]...)
	}
	r.PolarityValid = append(r.PolarityValid, o.PolarityValid...)
}

// Engine computes the per-token statistics of a batch. Engines are interchangeable:
// for the same batch and parameters they agree within the tolerance their tests state.
type Engine interface {
	// Name identifies the engine in logs and reports ("cpu", "cuda:0 NVIDIA H100 ...").
	Name() string
	// Compute fills out (resized to b.Rows()) for every row of b. A data error in a row
	// (NaN or +Inf logits, a row with no finite logit) is returned as a *RowError.
	Compute(ctx context.Context, b *Batch, p Params, out *Result) error
	// Close releases the engine's resources.
	Close() error
}

// RowError is a data error in one row of a batch.
type RowError struct {
	Row    int    // row index within the batch
	Column string // input column, e.g. "logits"
	Msg    string // what was wrong and what was expected
}

func (e *RowError) Error() string {
	return fmt.Sprintf("row %d: %s: %s", e.Row, e.Column, e.Msg)
}
