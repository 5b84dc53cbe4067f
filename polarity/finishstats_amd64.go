//go:build amd64 && !noasm

package polarity

import "github.com/entropy-polarity/papo/internal/bitbools"

// finishArgs are statsFinishAVX512's arguments: every field 8 bytes, in the order of the
// offsets in finishstats_amd64.s (TestFinishArgsLayout). Pointers are to the chunk's first row; nil for an optional
// column that is absent (a validity or mask: every row true; old: no old log-probability).
type finishArgs struct {
	n                                                int
	max, rest, s1, s2, s3, ua                        *float64
	logS0, logpi, pi, ratio                          *float64
	adv                                              *float64
	advValid, mask, oldValid                         *bool
	old                                              *float32
	entropy, logprob, sampled, corr, factor, pol, dh *float32
	polValid                                         *bool
	natural                                          uint64
	scale, hi, lo                                    float64
	bytes                                            *[256]uint64
	one, eps                                         float64
	abs, sign                                        uint64
}

// statsFinishAVX512 runs the rows [0, a.n &^ 7) eight at a time and returns how many it did:
// all of them, or the start of the first group of eight with a row statsChunkRun's loop stops
// at (that group not stored).
//
//go:noescape
func statsFinishAVX512(a *finishArgs) int

// statsFinishVector is statsChunkRun's loop on the chunk [lo, lo+n) (its scratch in sc) in the
// eight float64 lanes of the AVX-512F kernel, where k is that kernel and the batch has
// advantages: the same numbers bit for bit (TestStatsRunBitForBit). It returns the rows it
// did, from the chunk's first on, for the Go loop to do the rest; 0 where it does not run.
func statsFinishVector(k Kernel, b *Batch, p Params, out *Result, lo, n int, sc *statsScratch) int {
	if k != KernelAVX512 || n < 8 || b.Advantage == nil {
		return 0
	}
	hi := lo + n
	short := func(l int, present bool) bool { return present && l < hi }
	if short(len(b.Advantage), true) || short(len(b.AdvantageValid), b.AdvantageValid != nil) ||
		short(len(b.Mask), b.Mask != nil) || short(len(b.OldLogprob), b.OldLogprob != nil) ||
		short(len(b.OldLogprobValid), b.OldLogprobValid != nil) {
		return 0 // a short column: the Go loop reports the row that needs it
	}
	at := func(s []bool) *bool {
		if s == nil {
			return nil
		}
		return &s[lo]
	}
	st := b.Stats
	clip := p.Clip()
	a := finishArgs{n: n,
		max: &st.Max[lo], rest: &st.SumExpRest[lo], s1: &st.SumExpV[lo], s2: &st.SumExp2[lo], s3: &st.SumExp2V[lo], ua: &st.Sampled[lo],
		logS0: &sc.logS0s[0], logpi: &sc.logpis[0], pi: &sc.pis[0], ratio: &sc.ratios[0],
		adv: &b.Advantage[lo], advValid: at(b.AdvantageValid), mask: at(b.Mask), oldValid: at(b.OldLogprobValid),
		entropy: &out.Entropy[lo], logprob: &out.Logprob[lo], sampled: &out.SampledTerm[lo], corr: &out.Correction[lo],
		factor: &out.PolarityFactor[lo], pol: &out.Polarity[lo], dh: &out.PredictedDeltaH[lo], polValid: &out.PolarityValid[lo],
		scale: p.LR / (p.Temperature * p.Temperature), hi: 1 + clip.High, lo: 1 - clip.Low,
		bytes: bitbools.Table(), one: 1, eps: 1e-6, abs: 1<<63 - 1, sign: 1 << 63}
	if b.OldLogprob != nil {
		a.old = &b.OldLogprob[lo]
	}
	if p.NaturalGradient {
		a.natural = 1
	}
	return statsFinishAVX512(&a)
}
