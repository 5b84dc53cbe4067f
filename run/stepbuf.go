package run

import (
	"sync"

	"github.com/entropy-polarity/papo/internal/grow"

	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
)

// stepBuf holds the step being buffered: its rows' scalar columns, results and (Config.RowStats)
// statistics, each one contiguous slice that batches append to. The reweighter reads views of
// them (no second copy, as a per-batch copy gathered at the step's end was), and the slices keep
// their storage from step to step and, through Buffers, from run to run: a 4M-token step's
// ~250 MB is then written into memory already mapped, not faulted in page by page.
type stepBuf struct {
	batch polarity.Batch // TokenID, Advantage, the validities and Mask; Logits and Stats unused
	res   polarity.Result
	stats polarity.StatsColumns
	n     int
	spare spare // the storage of the batch's optional columns while they are nil

	// The reweighter's outputs and the all-zero / all-false columns of a step without advantages.
	weight     []float32
	reweighted []float64
	zeros      []float64
	falses     []bool
}

// bytes is the storage the buffer holds.
func (s *stepBuf) bytes() int64 {
	b := &s.batch
	r := &s.res
	p := &s.spare
	n := 4*cap(b.TokenID) + 8*(cap(b.Advantage)+cap(p.adv)) + cap(b.AdvantageValid) + cap(p.advValid) +
		4*(cap(b.OldLogprob)+cap(p.old)) + cap(b.OldLogprobValid) + cap(p.oldValid) + cap(b.Mask) + cap(p.m) + 4*(cap(r.Entropy)+cap(r.Logprob)+cap(r.SampledTerm)+cap(r.Correction)+cap(r.PolarityFactor)+
		cap(r.Polarity)+cap(r.PredictedDeltaH)) + cap(r.PolarityValid) + 4*cap(s.weight) + 8*cap(s.reweighted) +
		8*cap(s.zeros) + cap(s.falses)
	for _, c := range s.stats.Cols() {
		n += 8 * cap(c)
	}
	return int64(n)
}

// spare is the storage of a stepBuf's optional columns: a column is nil in the batch while
// absent (or all valid) and takes its storage from here when it appears.
type spare struct {
	adv                   []float64
	old                   []float32
	advValid, oldValid, m []bool
}

// reset empties the buffer, keeping its storage: every optional column is nil again.
func (s *stepBuf) reset() {
	b := &s.batch
	b.TokenID = b.TokenID[:0]
	park(&b.Advantage, &s.spare.adv)
	park(&b.OldLogprob, &s.spare.old)
	park(&b.AdvantageValid, &s.spare.advValid)
	park(&b.OldLogprobValid, &s.spare.oldValid)
	park(&b.Mask, &s.spare.m)
	s.res.Resize(0)
	s.stats.Resize(0)
	s.n = 0
}

// park moves the storage of *col to *store and makes the column nil.
func park[T any](col, store *[]T) {
	if *col != nil {
		*store = (*col)[:0]
	}
	*col = nil
}

// unpark is the empty column with the storage kept in *store (taken from it), or a new one.
// Its capacity is at least n.
func unpark[T any](store *[]T, n int) []T {
	c := *store
	*store = nil
	return grow.Cap(c[:0], max(n, 1024))
}

// reserve makes room for n more rows in every column.
func (s *stepBuf) reserve(n int) {
	if need := s.n + n; need > cap(s.batch.TokenID) {
		s.grow(max(need, 2*cap(s.batch.TokenID)))
	}
}

// results is room for the results of n rows after those held, as a view for an engine to fill
// in place: appendRows with inPlace then takes them as they are, and a batch's results are not
// copied. Until that appendRows the buffer holds the view's rows as garbage: only reset follows
// a failure to fill them.
func (s *stepBuf) results(n int) polarity.Result {
	s.reserve(n)
	s.res.Grow(s.n + n)
	s.res.Resize(s.n + n)
	return s.res.Rows(s.n, s.n+n)
}

// appendRows adds rows [lo, hi) of the batch b, its results r and (when st is not nil) its
// statistics. inPlace says that r is the view that results gave for the whole batch, filled.
func (s *stepBuf) appendRows(b *polarity.Batch, r *polarity.Result, st *polarity.StatsColumns, lo, hi int, inPlace bool) {
	d := &s.batch
	s.reserve(hi - lo)
	d.TokenID = append(d.TokenID, b.TokenID[lo:hi]...)
	// A column is present in every batch of an input or in none (the schema is the input's).
	room := cap(d.TokenID) // what reserve made room for: a column that appears takes as much
	if b.Advantage != nil {
		if d.Advantage == nil {
			d.Advantage = unpark(&s.spare.adv, room)
		}
		d.Advantage = append(d.Advantage, b.Advantage[lo:hi]...)
	}
	d.AdvantageValid = appendValid(d.AdvantageValid, &s.spare.advValid, s.n, room, b.AdvantageValid, lo, hi)
	if b.OldLogprob != nil {
		if d.OldLogprob == nil {
			d.OldLogprob = unpark(&s.spare.old, room)
		}
		d.OldLogprob = append(d.OldLogprob, b.OldLogprob[lo:hi]...)
	}
	d.OldLogprobValid = appendValid(d.OldLogprobValid, &s.spare.oldValid, s.n, room, b.OldLogprobValid, lo, hi)
	d.Mask = appendValid(d.Mask, &s.spare.m, s.n, room, b.Mask, lo, hi)

	if !inPlace {
		s.res.Append(r.Rows(lo, hi))
	}
	if st != nil {
		if cap(s.stats.Max) < s.n+hi-lo {
			s.stats.Grow(room)
		}
		s.stats.Append(st.Rows(lo, hi))
	}
	s.n += hi - lo
}

// grow makes room for n rows in every column present, so that the appends that follow copy
// nothing already held (a column that appears later grows at the next call).
func (s *stepBuf) grow(n int) {
	d := &s.batch
	d.TokenID = grow.Cap(d.TokenID, n)
	d.Advantage, d.OldLogprob = grow.To(d.Advantage, n), grow.To(d.OldLogprob, n)
	d.AdvantageValid, d.OldLogprobValid, d.Mask = grow.To(d.AdvantageValid, n), grow.To(d.OldLogprobValid, n), grow.To(d.Mask, n)
	s.res.Grow(n)
	if s.stats.Max != nil {
		s.stats.Grow(n)
	}
}

// appendValid appends rows [lo, hi) of the validity src (nil: all true) to dst, which holds n
// rows (nil: all true so far); store is dst's spare storage, and room the capacity a column
// that appears takes.
func appendValid(dst []bool, store *[]bool, n, room int, src []bool, lo, hi int) []bool {
	switch {
	case src == nil && dst == nil:
		return nil
	case dst == nil:
		dst = unpark(store, max(room, n+hi-lo))
		for range n {
			dst = append(dst, true)
		}
	}
	if src != nil {
		return append(dst, src[lo:hi]...)
	}
	for range hi - lo {
		dst = append(dst, true)
	}
	return dst
}

// view is rows [lo, hi) of the buffer as a batch and a result.
func (s *stepBuf) view(lo, hi int, withStats bool) (polarity.Batch, polarity.Result, *polarity.StatsColumns) {
	b := &s.batch
	v := polarity.Batch{TokenID: b.TokenID[lo:hi], Advantage: part(b.Advantage, lo, hi),
		AdvantageValid: part(b.AdvantageValid, lo, hi), OldLogprob: part(b.OldLogprob, lo, hi),
		OldLogprobValid: part(b.OldLogprobValid, lo, hi), Mask: part(b.Mask, lo, hi)}
	var st *polarity.StatsColumns
	if withStats {
		st = s.stats.Rows(lo, hi)
	}
	return v, s.res.Rows(lo, hi), st
}

func part[T any](s []T, lo, hi int) []T {
	if s == nil {
		return nil
	}
	return s[lo:hi]
}

// tokens are the buffered step as the reweighter's input: views of the buffer.
func (s *stepBuf) tokens(step int64, clip *polarity.ClipRange) *papo.StepTokens {
	b := &s.batch
	t := &papo.StepTokens{Step: step, Clip: clip, Trained: b.Mask,
		Entropy: s.res.Entropy, Logprob: s.res.Logprob, Polarity: s.res.Polarity, PredictedDeltaH: s.res.PredictedDeltaH}
	if b.Advantage != nil {
		t.Advantage, t.HasAdvantage = b.Advantage, b.AdvantageValid
	} else {
		// No advantage column: every token passes through (w = 1, Ã = A = 0).
		s.zeros, s.falses = grow.Len(s.zeros, s.n), grow.Len(s.falses, s.n)
		clear(s.zeros)
		clear(s.falses)
		t.Advantage, t.HasAdvantage = s.zeros, s.falses
	}
	if b.OldLogprob != nil {
		t.OldLogprob, t.HasOldLogprob = b.OldLogprob, b.OldLogprobValid
	}
	return t
}

// outputs are the reweighter's output slices for the buffered step (not cleared).
func (s *stepBuf) outputs() ([]float32, []float64) {
	s.weight, s.reweighted = grow.Len(s.weight, s.n), grow.Len(s.reweighted, s.n)
	return s.weight, s.reweighted
}

// Buffers keeps the step buffers of finished runs for the next run (a server's next request),
// so that a large step's columns are written into memory the process has mapped already. It
// holds at most max buffers and the zero value none; it is safe for concurrent use.
type Buffers struct {
	mu   sync.Mutex
	free []*stepBuf
	max  int
}

// NewBuffers keeps up to n step buffers between runs (n ≤ 0: none).
func NewBuffers(n int) *Buffers { return &Buffers{max: n} }

// get is a kept buffer, or a new one.
func (k *Buffers) get() *stepBuf {
	if k != nil {
		k.mu.Lock()
		defer k.mu.Unlock()
		if n := len(k.free); n > 0 {
			s := k.free[n-1]
			k.free = k.free[:n-1]
			return s
		}
	}
	return &stepBuf{}
}

// put keeps s for a later run, or drops it when max buffers are kept.
func (k *Buffers) put(s *stepBuf) {
	if k == nil || s == nil {
		return
	}
	s.reset()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.free) < k.max {
		k.free = append(k.free, s)
	}
}

// bytes is the storage the kept buffers hold.
func (k *Buffers) bytes() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n int64
	for _, s := range k.free {
		n += s.bytes()
	}
	return n
}
