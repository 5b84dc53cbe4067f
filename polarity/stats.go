package polarity

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/entropy-polarity/papo/internal/grow"
)

// ComputeStats fills out from the batch's row statistics (b.Stats) instead of logits: the
// finishing step of docs/MATH.md §3 in float64,
//
//	H = log1p(s0−1) − s1/s0     log π_a = u_a − m − log1p(s0−1)
//	S_a = π_a (u_a − μ), μ = m + s1/s0     C = (s3 − (s1/s0)·s2) / s0²
//
// (Sums.Finalize and RowStats.Sampled, which the engines' own passes end with), then Finish. A row whose statistics are impossible (not finite, s0−1 < 0,
// s2 ≤ 0, s1 or s3 > 0, u_a > m) is a *RowError naming the column. u_a = −Inf is allowed (a
// token of probability 0). Cancellation of ctx is checked every 4096 rows.
func ComputeStats(ctx context.Context, b *Batch, p Params, out *Result) error {
	return computeStats(ctx, b, p, out, vmathKernel)
}

// computeStats is ComputeStats with the kernel k (one of Kernels) for the batched exponentials
// and logarithms and, where it is the AVX-512F one, for the finishing loop (statsFinishVector).
func computeStats(ctx context.Context, b *Batch, p Params, out *Result, k Kernel) error {
	if err := p.Validate(); err != nil {
		return err
	}
	st := b.Stats
	if st == nil {
		return fmt.Errorf("polarity: ComputeStats on a batch without row statistics")
	}
	n := b.Rows()
	for k, col := range st.Cols() {
		if len(col) != n {
			return fmt.Errorf("polarity: row statistics column %d has %d values for %d rows", k, len(col), n)
		}
	}
	out.Resize(n)
	// Rows are independent: a large batch is split into pieces on up to GOMAXPROCS goroutines
	// (the same numbers bit for bit); the error is that of the first bad row.
	pieces := min(runtime.GOMAXPROCS(0), (n+statsPieceRows-1)/statsPieceRows)
	if pieces <= 1 {
		return statsRows(ctx, b, p, out, 0, n, k)
	}
	errs := make([]error, pieces)
	var wg sync.WaitGroup
	for piece := range pieces {
		lo, hi := piece*n/pieces, (piece+1)*n/pieces
		wg.Go(func() { errs[piece] = statsRows(ctx, b, p, out, lo, hi, k) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// statsPieceRows is the fewest rows ComputeStats gives a goroutine (~0.5 ms of work).
const statsPieceRows = 1 << 14

// statsRows is ComputeStats on rows [lo, hi): statsRun over the rows that need nothing
// special, rowFromStats (the general path, and the errors) for each row that statsRun stops at.
func statsRows(ctx context.Context, b *Batch, p Params, out *Result, lo, hi int, k Kernel) error {
	for i := lo; i < hi; {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(hi, i+4096)
		for i < end {
			i = statsRun(b, p, out, i, end, k)
			if i == end {
				break
			}
			o, err := rowFromStats(b, i, p)
			if err != nil {
				return err
			}
			o.Store(out, i)
			i++
		}
	}
	return nil
}

// statsRun is rowFromStats and Finish on rows [lo, hi) with the same operations in the same
// order (so the same numbers bit for bit), written as one loop without per-row calls: it stops
// at the first row that is not plain — statistics outside their domain, u_a = −Inf or above
// the maximum, u_a − m beyond float64 (finite statistics of opposite huge signs), an advantage
// or a needed old log-probability that is not finite — and returns its index (hi when there is
// none), for rowFromStats to give its outputs or its error.
//
// The logarithms and exponentials (vlog1p and vexp, which rowFromStats and Finish use too) are
// batched over runs of rows (statsChunk, the first of a call statsFirstChunk: a call that stops
// soon after it starts computes few in vain), in the assembly kernels where the processor has
// them; a row that is not plain gives them garbage, unused. With the AVX-512F kernel the loop
// itself runs eight rows at a time in float64 lanes (statsFinishVector, finishstats_amd64.s:
// the same operations, so the same numbers bit for bit; ~20 → ~7.5 ns a row with the batch
// kernels, BenchmarkComputeStats on Zen 5).
func statsRun(b *Batch, p Params, out *Result, lo, hi int, k Kernel) int {
	sc := statsScratch{kernel: k} // once a call, not cleared again for every chunk
	size := statsFirstChunk
	for c := lo; c < hi; c += size {
		if c > lo {
			size = statsChunk
		}
		end := min(hi, c+size)
		if i := statsChunkRun(b, p, out, c, end, &sc); i != end {
			return i
		}
	}
	return hi
}

// statsChunk and statsFirstChunk are the rows of statsRun's runs.
const (
	statsChunk      = 256
	statsFirstChunk = 32
)

// statsScratch holds a chunk's log1p(s0 − 1), log π_a, π_a and ratio exp(log π_a − log π_old).
type statsScratch struct {
	logS0s, logpis, pis, ratios [statsChunk]float64
	kernel                      Kernel // of the batch kernels and statsFinishVector
}

// prepare computes log1p(s0 − 1), log π_a, π_a and the ratio exp(log π_a − log π_old) of the
// rows [lo, hi) of b, hi − lo ≤ statsChunk, into sc's arrays.
func (sc *statsScratch) prepare(b *Batch, lo, hi int) {
	st, old := b.Stats, b.OldLogprob
	mx, sa := st.Max[lo:hi], st.Sampled[lo:hi]
	n := len(mx)
	log1pBatchKernel(sc.kernel, sc.logS0s[:n], st.SumExpRest[lo:hi])
	for k := range n {
		sc.logpis[k] = (sa[k] - mx[k]) - sc.logS0s[k]
	}
	expBatchKernel(sc.kernel, sc.pis[:n], sc.logpis[:n])
	if old != nil {
		no := max(0, min(n, len(old)-lo)) // a short column fails in the loop, at the row that needs it
		for k := range no {
			sc.ratios[k] = sc.logpis[k] - float64(old[lo+k])
		}
		expBatchKernel(sc.kernel, sc.ratios[:no], sc.ratios[:no])
	}
}

// statsChunkRun is statsRun on rows [lo, hi), hi − lo ≤ statsChunk, with sc's arrays.
func statsChunkRun(b *Batch, p Params, out *Result, lo, hi int, sc *statsScratch) int {
	st := b.Stats
	mx, rs, v1, v2, v3, sa := st.Max[lo:hi], st.SumExpRest[lo:hi], st.SumExpV[lo:hi], st.SumExp2[lo:hi], st.SumExp2V[lo:hi], st.Sampled[lo:hi]
	adv, advValid, mask := b.Advantage, b.AdvantageValid, b.Mask
	old, oldValid := b.OldLogprob, b.OldLogprobValid
	natural, clip := p.NaturalGradient, p.Clip()
	scale := p.LR / (p.Temperature * p.Temperature)
	finite := func(x float64) bool { return x-x == 0 }

	sc.prepare(b, lo, hi)
	logS0s, logpis, pis, ratios := &sc.logS0s, &sc.logpis, &sc.pis, &sc.ratios
	n := len(mx)

	for k := statsFinishVector(sc.kernel, b, p, out, lo, n, sc); k < n; k++ {
		i := lo + k
		m, rest, s1, s2, s3, ua := mx[k], rs[k], v1[k], v2[k], v3[k], sa[k]
		am := math.Abs(m)
		if am < 1 {
			am = 1
		}
		if !finite(m) || !finite(rest) || rest < 0 || !finite(s1) || s1 > 0 || !finite(s2) || s2 <= 0 ||
			!finite(s3) || s3 > 0 || !finite(ua) || ua > m+1e-6*am || !finite(ua-m) {
			return i
		}
		// Sums.Finalize
		s0 := 1 + rest
		logS0 := logS0s[k] // vlog1p(rest)
		shift := s1 / s0
		h := logS0 - shift
		c := (s3 - shift*s2) / (s0 * s0)
		// RowStats.Sampled
		va := ua - m
		logpi := logpis[k]               // va − logS0
		sampled := pis[k] * (va - shift) // vexp(logpi)·(va − shift)
		// Finish
		var t float64
		if natural {
			t = -(logpi + h)
		} else {
			t = c - sampled
		}
		var pol, dh float64
		valid := adv != nil && (advValid == nil || advValid[i])
		if valid {
			a := adv[i]
			if !finite(a) {
				return i
			}
			if a != 0 {
				pol = a * t
			}
			if (mask == nil || mask[i]) && pol != 0 {
				ratio := 1.0
				clipped := false
				if old != nil && (oldValid == nil || oldValid[i]) {
					o := float64(old[i])
					if !finite(o) {
						return i
					}
					ratio = ratios[k] // vexp(logpi − o)
					clipped = clip.Clipped(a, ratio)
				}
				if !clipped {
					dh = scale * ratio * pol
				}
			}
		}
		out.Entropy[i] = float32(h)
		out.Logprob[i] = float32(logpi)
		out.SampledTerm[i] = float32(sampled)
		out.Correction[i] = float32(c)
		out.PolarityFactor[i] = float32(t)
		out.Polarity[i] = float32(pol)
		out.PolarityValid[i] = valid
		out.PredictedDeltaH[i] = float32(dh)
	}
	return hi
}

// StatsEngine is an Engine that can also give the row statistics of a logits batch in its pass
// (the CPU engine can).
type StatsEngine interface {
	ComputeWithStats(ctx context.Context, b *Batch, p Params, out *Result, st *StatsColumns) error
}

// fields are the six columns in order (m, s0 − 1, s1, s2, s3, u_a): the one list of them.
func (s *StatsColumns) fields() [6]*[]float64 {
	return [6]*[]float64{&s.Max, &s.SumExpRest, &s.SumExpV, &s.SumExp2, &s.SumExp2V, &s.Sampled}
}

// Cols are the six columns in order: logit_max, sum_exp_rest, sum_exp_v, sum_exp2, sum_exp2_v,
// sampled_logit.
func (s *StatsColumns) Cols() [6][]float64 {
	var c [6][]float64
	for k, f := range s.fields() {
		c[k] = *f
	}
	return c
}

// NewStatsColumns views six columns in Cols order.
func NewStatsColumns(c [6][]float64) *StatsColumns {
	s := &StatsColumns{}
	for k, f := range s.fields() {
		*f = c[k]
	}
	return s
}

// Rows views rows [lo, hi) (no copy).
func (s *StatsColumns) Rows(lo, hi int) *StatsColumns {
	var c [6][]float64
	for k, col := range s.Cols() {
		c[k] = col[lo:hi]
	}
	return NewStatsColumns(c)
}

// Grow makes room for n rows in all, keeping the rows held (grow.Cap).
func (s *StatsColumns) Grow(n int) {
	for _, f := range s.fields() {
		*f = grow.Cap(*f, n)
	}
}

// Append adds o's rows.
func (s *StatsColumns) Append(o *StatsColumns) {
	oc := o.Cols()
	for k, f := range s.fields() {
		*f = append(*f, oc[k]...)
	}
}

// Resize makes every column n long, reusing storage.
func (s *StatsColumns) Resize(n int) {
	for _, c := range s.fields() {
		if cap(*c) < n {
			*c = make([]float64, n)
		}
		*c = (*c)[:n]
	}
}

func (s *StatsColumns) set(i int, sums Sums, ua float64) {
	s.Max[i], s.SumExpRest[i], s.SumExpV[i], s.SumExp2[i], s.SumExp2V[i], s.Sampled[i] = sums.M, sums.Rest, sums.S1, sums.S2, sums.S3, ua
}

func rowFromStats(b *Batch, i int, p Params) (RowOutputs, error) {
	st := b.Stats
	m, rest, s1, s2, s3, ua := st.Max[i], st.SumExpRest[i], st.SumExpV[i], st.SumExp2[i], st.SumExp2V[i], st.Sampled[i]
	bad := func(col string, v float64, want string) (RowOutputs, error) {
		return RowOutputs{}, &RowError{Row: i, Column: col, Msg: fmt.Sprintf("%v: want %s", v, want)}
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !finite(m):
		return bad("logit_max", m, "a finite max of the row's u = z/τ")
	case !finite(rest) || rest < 0:
		return bad("sum_exp_rest", rest, "Σ e^{u−m} − 1, finite and ≥ 0")
	case !finite(s1) || s1 > 0:
		return bad("sum_exp_v", s1, "Σ e^{u−m}(u−m), finite and ≤ 0")
	case !finite(s2) || s2 <= 0:
		return bad("sum_exp2", s2, "Σ e^{2(u−m)}, finite and > 0")
	case !finite(s3) || s3 > 0:
		return bad("sum_exp2_v", s3, "Σ e^{2(u−m)}(u−m), finite and ≤ 0")
	case math.IsNaN(ua) || math.IsInf(ua, 1) || ua > m+1e-6*math.Max(1, math.Abs(m)):
		return bad("sampled_logit", ua, fmt.Sprintf("u_a ≤ logit_max (%v), or −Inf", m))
	}
	row := Sums{M: m, Rest: rest, S1: s1, S2: s2, S3: s3}.Finalize()
	logpi, sampled := row.Sampled(ua)
	return Finish(b, i, p, row.H, logpi, sampled, row.C)
}
