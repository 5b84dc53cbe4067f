package polarity

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"
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
		return statsRows(ctx, b, p, out, 0, n)
	}
	errs := make([]error, pieces)
	var wg sync.WaitGroup
	for k := range pieces {
		lo, hi := k*n/pieces, (k+1)*n/pieces
		wg.Go(func() { errs[k] = statsRows(ctx, b, p, out, lo, hi) })
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

// statsRows is ComputeStats on rows [lo, hi).
func statsRows(ctx context.Context, b *Batch, p Params, out *Result, lo, hi int) error {
	for i := lo; i < hi; i++ {
		if (i-lo)%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		o, err := rowFromStats(b, i, p)
		if err != nil {
			return err
		}
		o.Store(out, i)
	}
	return nil
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

// Slice copies rows [lo, hi).
func (s *StatsColumns) Slice(lo, hi int) *StatsColumns {
	var c [6][]float64
	for k, col := range s.Cols() {
		c[k] = append([]float64(nil), col[lo:hi]...)
	}
	return NewStatsColumns(c)
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
