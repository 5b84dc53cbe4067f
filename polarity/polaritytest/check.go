package polaritytest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/internal/testseed"
	"github.com/entropy-polarity/papo/polarity"
)

// Rel is the relative accuracy CheckEngine holds every engine to against the float64
// reference, the scale of each tolerance in Tolerance. A float32 engine that rounds
// v = (z − max)/τ to float32 moves each e^{v} by up to 3|v|·2^-24 relative (the difference, the
// product, and 1/τ itself); on the table's peaked rows the terms that carry H have
// |v| ≈ 40–60, so such an engine is off by up to ~1e-5, plus ~2e-7 for its exponential and
// ~√n·6e-8 for float32 lane sums of n terms. Rel = 3e-5 covers that. The CPU engine, whose v and
// range reduction are float64, is held to CPURel.
const Rel = 3e-5

// CPURel is the CPU engine's accuracy bound: ~1.5e-7 measured (three float32 roundings in its
// exponential, 3·2^-24 = 1.8e-7 worst case per term), with a margin for seeds not yet seen.
const CPURel = 2e-6

// f32Round is the float32 rounding of the engines' outputs (Result is float32), with margin.
const f32Round = 0x1p-23

// Tolerance is the allowed absolute difference between an engine's outputs and the float64
// reference for one row, at relative accuracy rel (Rel or CPURel). Each term follows from where
// the error enters, not from |value| alone, because H, log π_a and C are computed from
// quantities whose sizes differ from theirs:
//
//	H        rel·H                         H = log s0 − s1/s0 adds two non-negative terms
//	log π_a  rel·(log s0 + |log π_a|)       log π_a = (u_a − M) − log s0
//	S_a      π_a·(|u_a−μ|·tol(log π_a) + rel·(|u_a−M| + |μ−M|))
//	C        rel·CScale                     the one-pass C subtracts two terms of size CScale
//	T        tol(C) + tol(S_a), or tol(log π_a) + tol(H) for T_npg
//	P        |A|·tol(T)
//	ΔĤ       |η/τ²|·r·(|A|·tol(T) + |P|·tol(log π_a))   r's error is r·tol(log π_a)
//
// plus the float32 rounding of each output (2^-23 relative), and an absolute floor of
// V·2^-116 (< 2e-30 for every vocabulary here) on H, log π_a, S_a and C: a float32 engine drops
// terms e^{v} < 2^-125 and e^{2v} < 2^-124 (below float32's normal range, see
// accumulateBlock's contract), each of which moves those sums by less than 2^-125·105.
type Tolerance struct {
	Entropy, Logprob, SampledTerm, Correction, PolarityFactor, Polarity, PredictedDeltaH float64
}

// RowTolerance is the Tolerance of row i of b under p at relative accuracy rel (Rel, CPURel),
// from its float64 reference statistics st and outputs want.
func RowTolerance(st polarity.RowStats64, want polarity.RowOutputs, b *polarity.Batch, i int, p polarity.Params, rel float64) Tolerance {
	var t Tolerance
	floor := float64(b.Logits.V) * 0x1p-116
	t.Entropy = rel*st.H + floor
	t.Logprob = rel*st.LogS0 + floor
	if !math.IsInf(st.Logprob, -1) {
		t.Logprob += rel * math.Abs(st.Logprob)
		pi := math.Exp(st.Logprob)
		ua := st.Logprob + st.L
		t.SampledTerm = pi*(math.Abs(ua-st.Mu)*t.Logprob+rel*(math.Abs(ua-st.M)+math.Abs(st.MeanShift))) + floor
	}
	t.Correction = rel*st.CScale + floor
	if p.NaturalGradient {
		t.PolarityFactor = t.Logprob + t.Entropy
	} else {
		t.PolarityFactor = t.Correction + t.SampledTerm
	}
	if want.PolarityValid {
		adv := math.Abs(b.Advantage[i])
		t.Polarity = adv * t.PolarityFactor
		r := 1.0
		if b.HasOldLogprob(i) {
			r = math.Exp(want.Logprob - float64(b.OldLogprob[i]))
		}
		t.PredictedDeltaH = math.Abs(p.LR/(p.Temperature*p.Temperature)) * r *
			(adv*t.PolarityFactor + math.Abs(want.Polarity)*t.Logprob)
	}
	return t
}

// Seed is the seed of a randomized test: $PAPO_SEED when set, else the clock. It is logged if
// the test fails, so that PAPO_SEED reproduces the run.
func Seed(t testing.TB) int64 { t.Helper(); return testseed.Seed(t) }

// Rand is the generator CheckEngine and the package's tests draw from for a seed.
func Rand(seed int64) *rand.Rand { return rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)) }

// Accuracy collects, per row kind and output column, the largest relative error seen
// (|got − want| / |want|) and the largest fraction of the tolerance used (|got − want| / tol).
type Accuracy map[string]map[string]*ErrStat

// ErrStat is one column's worst errors.
type ErrStat struct {
	MaxRel, MaxOfTol float64
	Where            string // case and row of MaxOfTol
}

func (a Accuracy) note(kind, column string, got, want, tol float64, where string) {
	if a[kind] == nil {
		a[kind] = map[string]*ErrStat{}
	}
	s := a[kind][column]
	if s == nil {
		s = &ErrStat{}
		a[kind][column] = s
	}
	d := math.Abs(got - want)
	if d == 0 {
		return
	}
	if math.Abs(want) > 1e-25 { // below, the absolute floor of Tolerance governs
		s.MaxRel = math.Max(s.MaxRel, d/math.Abs(want))
	}
	if tol > 0 && d/tol > s.MaxOfTol {
		s.MaxOfTol, s.Where = d/tol, where
	}
}

// String is a table: one line per kind and column.
func (a Accuracy) String() string {
	var sb strings.Builder
	kinds := make([]string, 0, len(a))
	for k := range a {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		for _, col := range columns {
			if s := a[k][col]; s != nil {
				fmt.Fprintf(&sb, "%-10s %-16s max rel err %.2e   max err/tol %.3f\n", k, col, s.MaxRel, s.MaxOfTol)
			}
		}
	}
	return sb.String()
}

var columns = []string{"entropy", "logprob", "sampled_term", "correction", "polarity_factor", "polarity", "predicted_dh"}

// CheckEngine runs e over the whole table of Cases and ErrorCases drawn from seed and compares
// every output element with the float64 reference within Rel (Compare). It logs the accuracy per
// row kind (go test -v shows it) and returns it.
func CheckEngine(t testing.TB, e polarity.Engine, seed int64) Accuracy {
	t.Helper()
	return CheckEngineRel(t, e, seed, Rel)
}

// CheckEngineRel is CheckEngine at relative accuracy rel (e.g. CPURel).
func CheckEngineRel(t testing.TB, e polarity.Engine, seed int64, rel float64) Accuracy {
	t.Helper()
	defer func() {
		if t.Failed() {
			t.Logf("polaritytest.CheckEngine(%s): seed %d: rerun with PAPO_SEED=%d", e.Name(), seed, seed)
		}
	}()
	rng := Rand(seed)
	acc := Accuracy{}
	ctx := context.Background()
	var got polarity.Result
	for _, c := range Cases(rng) {
		if err := e.Compute(ctx, c.Batch, c.Params, &got); err != nil {
			t.Errorf("%s: %s: Compute: %v", e.Name(), c.Name, err)
			continue
		}
		Compare(t, e.Name()+": "+c.Name, c.Kind, c.Batch, c.Params, &got, rel, acc)
	}
	for _, c := range ErrorCases(rng) {
		err := e.Compute(ctx, c.Batch, c.Params, &got)
		c.Check(t, e.Name(), err)
	}
	t.Logf("%s accuracy against the float64 reference (seed %d; err/tol at rel = %g):\n%s", e.Name(), seed, rel, acc)
	return acc
}

// Compare checks got (an engine's result for b under p) against the float64 reference,
// element by element within RowTolerance at rel; validity and structural zeros (no advantage,
// no gradient) must match exactly.
// Differences are reported with t.Errorf (at most 10 per call) and recorded in acc under kind
// when acc is not nil.
func Compare(t testing.TB, name, kind string, b *polarity.Batch, p polarity.Params, got *polarity.Result, rel float64, acc Accuracy) {
	t.Helper()
	n := b.Rows()
	if got.Len() != n {
		t.Errorf("%s: result has %d rows, want %d", name, got.Len(), n)
		return
	}
	failures := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if failures++; failures <= 10 {
			t.Errorf("%s: "+format, append([]any{name}, args...)...)
		}
	}
	u := make([]float64, b.Logits.V)
	for i := range n {
		for j := range u {
			u[j] = float64(b.Logits.At(i, j)) / p.Temperature
		}
		st := polarity.ReferenceRow(u, int(b.TokenID[i]))
		want, err := polarity.Finish(b, i, p, st.H, st.Logprob, st.SampledTerm, st.C)
		if err != nil {
			fail("row %d: reference: %v", i, err)
			continue
		}
		tol := RowTolerance(st, want, b, i, p, rel)
		where := fmt.Sprintf("%s, row %d", name, i)
		check := func(column string, g float32, w, tl float64) {
			t.Helper()
			gd := float64(g)
			switch {
			case math.IsInf(w, 0) || math.IsNaN(w):
				if gd != w && !(math.IsNaN(gd) && math.IsNaN(w)) {
					fail("row %d: %s = %v, want %v", i, column, g, w)
				}
				return
			case math.IsNaN(gd) || math.IsInf(gd, 0):
				fail("row %d: %s = %v, want %.9g", i, column, g, w)
				return
			}
			tl += f32Round*math.Abs(w) + 0x1p-149
			if math.Abs(gd-w) > tl {
				fail("row %d: %s = %.9g, want %.12g ± %.3g (error %.3g = %.2f × tolerance; relative %.3g)",
					i, column, g, w, tl, math.Abs(gd-w), math.Abs(gd-w)/tl, math.Abs(gd-w)/math.Abs(w))
			}
			if acc != nil {
				acc.note(kind, column, gd, w, tl, where)
			}
		}
		check("entropy", got.Entropy[i], want.Entropy, tol.Entropy)
		check("logprob", got.Logprob[i], want.Logprob, tol.Logprob)
		check("sampled_term", got.SampledTerm[i], want.SampledTerm, tol.SampledTerm)
		check("correction", got.Correction[i], want.Correction, tol.Correction)
		check("polarity_factor", got.PolarityFactor[i], want.PolarityFactor, tol.PolarityFactor)
		if got.PolarityValid[i] != want.PolarityValid {
			fail("row %d: polarity valid = %v, want %v", i, got.PolarityValid[i], want.PolarityValid)
			continue
		}
		if !want.PolarityValid {
			if got.Polarity[i] != 0 || got.PredictedDeltaH[i] != 0 {
				fail("row %d: no advantage, but polarity %v and ΔH %v (want 0, 0)", i, got.Polarity[i], got.PredictedDeltaH[i])
			}
			continue
		}
		check("polarity", got.Polarity[i], want.Polarity, tol.Polarity)
		if nearClipBound(b, i, p, want, tol) {
			continue // the engine's r may fall on either side of 1±ε: either ΔH is right
		}
		if noGradient(b, i, p, want) {
			if got.PredictedDeltaH[i] != 0 {
				fail("row %d: ΔH = %v, want exactly 0 (masked, clipped, A = 0 or r = 0)", i, got.PredictedDeltaH[i])
			}
			continue
		}
		check("predicted_dh", got.PredictedDeltaH[i], want.PredictedDeltaH, tol.PredictedDeltaH)
	}
	if failures > 10 {
		t.Errorf("%s: %d more differences not shown", name, failures-10)
	}
}

// noGradient reports whether row i (with an advantage) gets no gradient, so that every engine
// must report ΔĤ = 0 exactly: masked, A = 0, or with an old log-probability a token of
// probability 0 (r = 0) or a clipped ratio.
func noGradient(b *polarity.Batch, i int, p polarity.Params, want polarity.RowOutputs) bool {
	adv := b.Advantage[i]
	if !b.Trained(i) || adv == 0 {
		return true
	}
	if !b.HasOldLogprob(i) {
		return false
	}
	if math.IsInf(want.Logprob, -1) {
		return true
	}
	r := math.Exp(want.Logprob - float64(b.OldLogprob[i]))
	return (adv > 0 && r > 1+p.ClipHigh) || (adv < 0 && r < 1-p.ClipLow)
}

// nearClipBound reports whether row i's PPO ratio is within 4 tolerances of a clipping bound.
func nearClipBound(b *polarity.Batch, i int, p polarity.Params, want polarity.RowOutputs, tol Tolerance) bool {
	if !b.HasOldLogprob(i) || !b.Trained(i) || math.IsInf(want.Logprob, -1) {
		return false
	}
	d := want.Logprob - float64(b.OldLogprob[i]) // log r
	margin := 4*tol.Logprob + 1e-12
	near := func(bound float64) bool { return bound > 0 && math.Abs(d-math.Log(bound)) <= margin }
	return near(1+p.ClipHigh) || near(1-p.ClipLow)
}

// ErrorCase is a batch that an engine must refuse with a *polarity.RowError for Row and Column,
// whose message contains Contains.
type ErrorCase struct {
	Name     string
	Batch    *polarity.Batch
	Params   polarity.Params
	Row      int
	Column   string
	Contains string
}

// Check tests the error an engine returned for c.
func (c ErrorCase) Check(t testing.TB, engine string, err error) {
	t.Helper()
	var re *polarity.RowError
	switch {
	case err == nil:
		t.Errorf("%s: %s: no error, want a row %d %s error", engine, c.Name, c.Row, c.Column)
	case !errors.As(err, &re):
		t.Errorf("%s: %s: error %q is not a *polarity.RowError", engine, c.Name, err)
	case re.Row != c.Row || re.Column != c.Column || !strings.Contains(re.Msg, c.Contains):
		t.Errorf("%s: %s: error %q, want row %d, column %s, a message with %q", engine, c.Name, err, c.Row, c.Column, c.Contains)
	}
}

// ErrorCases are the data errors every engine reports the same way: NaN and +Inf logits (in
// each dtype, at a block's first element, deep in a long row, in a block otherwise all −Inf,
// in a row after good rows, in two rows: the lower is reported), a row whose logits are all
// −Inf, a token id outside [0, V), and a NaN advantage.
func ErrorCases(rng *rand.Rand) []ErrorCase {
	nan, inf, ninf := float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
	type bad struct {
		row, at int
		x       float32
	}
	mk := func(name string, dt polarity.Dtype, V, rows int, fill float32, bads []bad, wantRow int, contains string) ErrorCase {
		z := make([]float32, rows*V)
		for j := range z {
			z[j] = float32(rng.NormFloat64())
			if fill != 0 {
				z[j] = fill
			}
		}
		for _, b := range bads {
			z[b.row*V+b.at] = b.x
		}
		b := &polarity.Batch{Logits: polarity.Logits{Dtype: dt, V: V}, TokenID: make([]int32, rows)}
		switch dt {
		case polarity.Float32:
			b.Logits.F32 = z
		case polarity.Float16, polarity.BFloat16:
			b.Logits.Bits = make([]uint16, len(z))
			for j, x := range z {
				if dt == polarity.Float16 {
					b.Logits.Bits[j] = polarity.Float32ToFloat16(x)
				} else {
					b.Logits.Bits[j] = polarity.Float32ToBFloat16(x)
				}
			}
		}
		return ErrorCase{Name: fmt.Sprintf("%s, V=%d, %v", name, V, dt), Batch: b, Params: polarity.DefaultParams(),
			Row: wantRow, Column: "logits", Contains: contains}
	}
	var cs []ErrorCase
	for _, dt := range dtypes {
		j := 1 + rng.IntN(999)
		cs = append(cs,
			mk("NaN logit", dt, 1000, 3, 0, []bad{{1, j, nan}}, 1, fmt.Sprintf("NaN at index %d", j)),
			mk("+Inf logit", dt, 1000, 3, 0, []bad{{2, j, inf}}, 2, fmt.Sprintf("+Inf at index %d", j)),
			mk("NaN at a block start", dt, 2048, 1, 0, []bad{{0, 512, nan}}, 0, "NaN at index 512"),
			mk("NaN at index 0", dt, 64, 2, 0, []bad{{1, 0, nan}}, 1, "NaN at index 0"),
			mk("NaN among −Inf", dt, 1500, 2, ninf, []bad{{0, 9, 1}, {1, 3, 1}, {1, 700, nan}}, 1, "NaN at index 700"),
			mk("all −Inf", dt, 1000, 3, ninf, []bad{{0, 5, 1}, {2, 7, 1}}, 1, "no finite logit"),
		)
	}
	cs = append(cs,
		mk("NaN deep in a Qwen row", polarity.Float32, 151936, 2, 0, []bad{{1, 151935, nan}}, 1, "NaN at index 151935"),
		mk("+Inf in a later row, NaN in an earlier one", polarity.Float32, 3000, 40, 0,
			[]bad{{33, 2999, inf}, {17, 1234, nan}}, 17, "NaN at index 1234"),
	)
	tok := mk("token id ≥ V", polarity.Float32, 100, 3, 0, nil, 2, "100 is outside [0, 100)")
	tok.Batch.TokenID[2] = 100
	tok.Column = "token_id"
	adv := mk("NaN advantage", polarity.Float32, 100, 3, 0, nil, 1, "NaN")
	adv.Batch.Advantage = []float64{1, math.NaN(), -1}
	adv.Column = "advantage"
	return append(cs, tok, adv)
}
