package polaritytest

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/entropy-polarity/papo/polarity"
)

// Vocabs are the row lengths of the table: degenerate rows, SIMD-width neighbours, a small
// vocabulary, and Llama 3's, Qwen's small and large vocabularies.
var Vocabs = []int{1, 2, 31, 32, 1000, 128256, 151936, 152064}

// Case is one batch of the table with the parameters to compute it under.
type Case struct {
	Name   string // e.g. "peaked +40 spike, V=151936, bfloat16, τ=0.7"
	Kind   string // the row kind, e.g. "peaked"; accuracy is reported per kind
	Batch  *polarity.Batch
	Params polarity.Params
}

// rowKind generates one row of raw logits and picks its sampled token.
type rowKind struct {
	name, label string
	fill        func(rng *rand.Rand, z []float32) // z has length V ≥ 1
}

var rowKinds = []rowKind{
	{"normal", "N(0,3²) logits", func(rng *rand.Rand, z []float32) {
		for j := range z {
			z[j] = float32(3 * rng.NormFloat64())
		}
	}},
	// docs/MATH.md §3's hard row: H ≈ 1.5–2e-9 at V = 151936 in our draws, where −Σ π log π
	// from log-softmax loses 1e-4…7e-4 of it.
	{"peaked", "peaked +40 spike", func(rng *rand.Rand, z []float32) {
		for j := range z {
			z[j] = float32(3 * rng.NormFloat64())
		}
		z[rng.IntN(len(z))] = 40
	}},
	{"flat", "flat (all equal)", func(rng *rand.Rand, z []float32) {
		c := float32(rng.IntN(11) - 5)
		for j := range z {
			z[j] = c
		}
	}},
	{"near-flat", "near-flat (1e-3 spread)", func(rng *rand.Rand, z []float32) {
		c := 10 * rng.Float64()
		for j := range z {
			z[j] = float32(c + 1e-3*rng.NormFloat64())
		}
	}},
	{"-Inf", "−Inf logits (half the row)", func(rng *rand.Rand, z []float32) {
		for j := range z {
			if rng.IntN(2) == 0 {
				z[j] = float32(math.Inf(-1))
			} else {
				z[j] = float32(3 * rng.NormFloat64())
			}
		}
		if rng.IntN(3) == 0 { // a one-hot row: every logit but one −Inf
			for j := range z {
				z[j] = float32(math.Inf(-1))
			}
		}
		z[rng.IntN(len(z))] = float32(3 * rng.NormFloat64())
	}},
	{"huge", "huge ±1e4 magnitudes", func(rng *rand.Rand, z []float32) {
		for j := range z {
			z[j] = float32(2e4*rng.Float64() - 1e4)
		}
		for range 1 + len(z)/1000 { // a cluster just below the top
			z[rng.IntN(len(z))] = float32(1e4 - math.Abs(3*rng.NormFloat64()))
		}
	}},
	{"ties", "tied maxima", func(rng *rand.Rand, z []float32) {
		for j := range z {
			z[j] = float32(3 * rng.NormFloat64())
		}
		top := float32(12 + rng.IntN(8))
		for range 1 + rng.IntN(5) {
			z[rng.IntN(len(z))] = top
		}
	}},
	{"mixture", "mixture (N(0,1), N(−20,5²), −Inf, −1e4, spikes)", func(rng *rand.Rand, z []float32) {
		for j := range z {
			switch p := rng.Float64(); {
			case p < 0.6:
				z[j] = float32(rng.NormFloat64())
			case p < 0.8:
				z[j] = float32(-20 + 5*rng.NormFloat64())
			case p < 0.9:
				z[j] = float32(math.Inf(-1))
			case p < 0.99:
				z[j] = -1e4
			default:
				z[j] = float32(8 + rng.NormFloat64())
			}
		}
		z[rng.IntN(len(z))] = float32(rng.NormFloat64())
	}},
}

var dtypes = []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16}

// Cases returns the table, drawn from rng: every row kind × vocabulary size × dtype, with
// random temperatures, learning rates, clipping and natural-gradient settings, and per row a
// random sampled token (the maximum, a token drawn from π, any token, a −Inf token where the row
// has one), advantage (±, 0, null), mask and old log-probability (near log π_a, so that PPO
// clipping happens in some rows). About 2×10⁷ logits in all.
func Cases(rng *rand.Rand) []Case {
	var cases []Case
	cases = append(cases, goldenCase())
	for _, V := range Vocabs {
		rows := 6
		if V > 100_000 {
			rows = 2
		}
		for _, k := range rowKinds {
			if V == 1 && k.name != "normal" && k.name != "huge" {
				continue // a single logit: every kind is the same row
			}
			for _, dt := range dtypes {
				c := newCase(rng, k, V, dt, rows)
				cases = append(cases, c)
			}
		}
	}
	return cases
}

// goldenCase is docs/MATH.md §4's row, each token with A = ±1.
func goldenCase() Case {
	z := []float32{2, 1, 0.1, -1}
	b := &polarity.Batch{Logits: polarity.Logits{Dtype: polarity.Float32, V: 4}}
	for a := range 4 {
		for _, adv := range []float64{1, -1} {
			b.Logits.F32 = append(b.Logits.F32, z...)
			b.TokenID = append(b.TokenID, int32(a))
			b.Advantage = append(b.Advantage, adv)
		}
	}
	return Case{Name: "docs/MATH.md §4 row z=[2,1,0.1,−1], V=4, float32, τ=1", Kind: "golden", Batch: b, Params: polarity.DefaultParams()}
}

func newCase(rng *rand.Rand, k rowKind, V int, dt polarity.Dtype, rows int) Case {
	p := polarity.DefaultParams()
	p.Temperature = []float64{1, 1, 0.7, 1.3}[rng.IntN(4)]
	p.LR = []float64{1, 1e-3}[rng.IntN(2)]
	if rng.IntN(2) == 0 {
		p.ClipLow, p.ClipHigh = 0.2, 0.28
	}
	p.NaturalGradient = rng.IntN(4) == 0

	z := make([]float32, rows*V)
	for i := range rows {
		k.fill(rng, z[i*V:(i+1)*V])
	}
	b := &polarity.Batch{Logits: polarity.EncodeLogits(z, V, dt)}

	// Column layouts: every optional column present (with nulls), or absent.
	withAdv := rng.IntN(5) != 0
	withOld := withAdv && rng.IntN(3) != 0
	withMask := rng.IntN(3) != 0
	b.TokenID = make([]int32, rows)
	if withAdv {
		b.Advantage = make([]float64, rows)
		b.AdvantageValid = make([]bool, rows)
	}
	if withOld {
		b.OldLogprob = make([]float32, rows)
		b.OldLogprobValid = make([]bool, rows)
	}
	if withMask {
		b.Mask = make([]bool, rows)
	}
	u := make([]float64, V)
	for i := range rows {
		for j := range u {
			u[j] = float64(b.Logits.At(i, j)) / p.Temperature
		}
		a := pickToken(rng, u)
		b.TokenID[i] = int32(a)
		if withAdv {
			switch rng.IntN(5) {
			case 0:
				b.Advantage[i] = 0.1 + 2*rng.Float64()
			case 1:
				b.Advantage[i] = -0.1 - 2*rng.Float64()
			case 2:
				b.Advantage[i] = []float64{1, -1}[rng.IntN(2)]
			case 3:
				b.Advantage[i] = 0
			}
			b.AdvantageValid[i] = rng.IntN(6) != 0
		}
		if withOld && rng.IntN(4) != 0 {
			b.OldLogprobValid[i] = true
			lp := logSoftmaxAt(u, a)
			if math.IsInf(lp, -1) {
				lp = -5 // the engines take r = 0 for a token of probability 0
			}
			b.OldLogprob[i] = float32(lp + rng.Float64() - 0.5)
		}
		if withMask {
			b.Mask[i] = rng.IntN(5) != 0
		}
	}
	name := fmt.Sprintf("%s, V=%d, %v, τ=%g", k.label, V, dt, p.Temperature)
	if p.NaturalGradient {
		name += ", natural gradient"
	}
	if !math.IsInf(p.ClipHigh, 1) {
		name += fmt.Sprintf(", clip (%g, %g)", p.ClipLow, p.ClipHigh)
	}
	return Case{Name: name, Kind: k.name, Batch: b, Params: p}
}

// pickToken chooses the sampled token: the maximum, a draw from π, a uniformly random token,
// or a −Inf token when the row has one.
func pickToken(rng *rand.Rand, u []float64) int {
	switch rng.IntN(4) {
	case 0:
		best := 0
		for j, x := range u {
			if x > u[best] {
				best = j
			}
		}
		return best
	case 1:
		L := logSumExp(u)
		t := rng.Float64()
		for j, x := range u {
			t -= math.Exp(x - L)
			if t <= 0 {
				return j
			}
		}
		return len(u) - 1
	case 2:
		start := rng.IntN(len(u))
		for d := range len(u) {
			if j := (start + d) % len(u); math.IsInf(u[j], -1) {
				return j
			}
		}
	}
	return rng.IntN(len(u))
}

func logSumExp(u []float64) float64 {
	m := math.Inf(-1)
	for _, x := range u {
		m = math.Max(m, x)
	}
	var s float64
	for _, x := range u {
		s += math.Exp(x - m)
	}
	return m + math.Log(s)
}

func logSoftmaxAt(u []float64, a int) float64 { return u[a] - logSumExp(u) }
