package report

import (
	"container/heap"
	"fmt"
	"math"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/run"
)

// MaxBins is the most points or bars a figure draws along its step axis, and the most step
// bins a Series keeps of the polarity histograms.
const MaxBins = 500

// DefaultTop is how many tokens of largest |P| a Series keeps.
const DefaultTop = 20

// Step is what a Series keeps of one step: its row of the per-step summary table, and how many
// tokens the method weighted and changed (Ã ≠ A).
type Step struct {
	papoio.StepSummary
	Weighted, Changed int64
	realized          realized
}

// Token is one token of large |P|.
type Token struct {
	Step               int64
	Sequence, Position int64 // -1 where the input has no such column
	TokenID            int32
	Advantage          float64 // A
	PolarityFactor     float32 // T
	Polarity           float32 // P = A·T
	Entropy            float32 // H
	PredictedDeltaH    float32 // ΔĤ
	Weight             float32 // w
	order              int64   // input row: among equal |P| the earlier token ranks first
}

// Quadrant is one cell of sign(A) × sign(T) over the trained tokens with an advantage
// (A ≠ 0, T ≠ 0): P = A·T > 0 expands entropy, P < 0 contracts it.
type Quadrant struct {
	PositiveA, PositiveT bool
	Tokens               int64
	SumPredictedDeltaH   float64 // Σ ΔĤ
	SumPolarity          float64 // Σ P
}

// Expanding reports whether the quadrant's tokens expand entropy (P > 0).
func (q Quadrant) Expanding() bool { return q.PositiveA == q.PositiveT }

// Series collects one input's results for the report. It is a run.Sink; it is not safe for
// concurrent use.
type Series struct {
	Label string // names the series in legends and tables

	steps     []Step
	bins      stepBins   // per-step |P| histograms, merged into at most MaxBins bins
	cur       branchHist // the step being collected
	quadrants [4]Quadrant
	weights   weightHist
	top       tokenHeap
	topN      int
	rows      int64
	seqName   string
	// curRealized collects the step being read; sameTokenInput is set once a piece had
	// entropy_after.
	curRealized    realized
	sameTokenInput bool
}

// NewSeries collects a series named label that keeps its top tokens of largest |P| (0:
// DefaultTop).
func NewSeries(label string, top int) *Series {
	if top <= 0 {
		top = DefaultTop
	}
	s := &Series{Label: label, topN: top, bins: stepBins{max: MaxBins, width: 1}}
	for i := range s.quadrants {
		s.quadrants[i].PositiveA, s.quadrants[i].PositiveT = i&2 != 0, i&1 != 0
	}
	return s
}

// Steps are the steps collected so far, in order.
func (s *Series) Steps() []Step { return s.steps }

// Quadrants are the four cells of sign(A) × sign(T) over all steps: (A<0, T<0), (A<0, T>0),
// (A>0, T<0), (A>0, T>0).
func (s *Series) Quadrants() [4]Quadrant { return s.quadrants }

// Top are the tokens of largest |P|, largest first.
func (s *Series) Top() []Token { return s.top.sorted() }

// Rows folds one piece of a step into the series.
func (s *Series) Rows(r *run.Rows) error {
	if err := s.addRealized(r); err != nil {
		return err
	}
	b, res := r.Batch, r.Result
	seq := intColumn(r.Passthrough, papoio.ColSequenceID)
	pos := intColumn(r.Passthrough, papoio.ColPosition)
	for i := range b.Rows() {
		row := s.rows
		s.rows++
		if !b.Trained(i) || !res.PolarityValid[i] {
			continue
		}
		p := float64(res.Polarity[i])
		s.cur.add(p)
		s.weights.add(float64(r.Weight[i]))
		a, t := b.Advantage[i], res.PolarityFactor[i]
		if a != 0 && t != 0 {
			q := &s.quadrants[quadrantIndex(a > 0, t > 0)]
			q.Tokens++
			q.SumPredictedDeltaH += float64(res.PredictedDeltaH[i])
			q.SumPolarity += p
		}
		if math.IsNaN(p) {
			continue
		}
		s.top.offer(s.topN, Token{Step: r.Step, Sequence: seq(i), Position: pos(i), TokenID: b.TokenID[i], Advantage: a,
			PolarityFactor: t, Polarity: res.Polarity[i], Entropy: res.Entropy[i], PredictedDeltaH: res.PredictedDeltaH[i],
			Weight: r.Weight[i], order: row})
	}
	return nil
}

// Step ends a step.
func (s *Series) Step(rep *run.StepReport) error {
	if n := len(s.steps); n > 0 && rep.Summary.Step <= s.steps[n-1].Step {
		return fmt.Errorf("report: %s: step %d after step %d: want increasing steps", s.Label, rep.Summary.Step, s.steps[n-1].Step)
	}
	s.steps = append(s.steps, Step{StepSummary: rep.Summary, Weighted: rep.Reweight.Weighted, Changed: rep.Reweight.Changed,
		realized: s.curRealized})
	s.bins.add(rep.Summary.Step, s.cur)
	s.cur, s.curRealized = branchHist{}, realized{}
	return nil
}

func quadrantIndex(positiveA, positiveT bool) int {
	i := 0
	if positiveA {
		i |= 2
	}
	if positiveT {
		i |= 1
	}
	return i
}

// intColumn reads an optional integer column of rec by name; -1 where it is absent or null.
func intColumn(rec arrow.Record, name string) func(i int) int64 {
	absent := func(int) int64 { return -1 }
	if rec == nil {
		return absent
	}
	idx := rec.Schema().FieldIndices(name)
	if len(idx) != 1 {
		return absent
	}
	switch col := rec.Column(idx[0]).(type) {
	case *array.Int64:
		return func(i int) int64 {
			if col.IsNull(i) {
				return -1
			}
			return col.Value(i)
		}
	case *array.Int32:
		return func(i int) int64 {
			if col.IsNull(i) {
				return -1
			}
			return int64(col.Value(i))
		}
	}
	return absent
}

// tokenHeap keeps the n tokens of largest |P| (a min-heap on |P|).
type tokenHeap []Token

// before reports whether a ranks before b: larger |P|, then the earlier row.
func before(a, b Token) bool {
	pa, pb := math.Abs(float64(a.Polarity)), math.Abs(float64(b.Polarity))
	if pa != pb {
		return pa > pb
	}
	return a.order < b.order
}

func (h tokenHeap) Len() int           { return len(h) }
func (h tokenHeap) Less(i, j int) bool { return before(h[j], h[i]) }
func (h tokenHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tokenHeap) Push(x any)        { *h = append(*h, x.(Token)) }
func (h *tokenHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func (h *tokenHeap) offer(n int, t Token) {
	if len(*h) < n {
		heap.Push(h, t)
		return
	}
	if before(t, (*h)[0]) {
		(*h)[0] = t
		heap.Fix(h, 0)
	}
}

func (h tokenHeap) sorted() []Token {
	out := slices.Clone(h)
	slices.SortFunc(out, func(a, b Token) int {
		if before(a, b) {
			return -1
		}
		return 1
	})
	return out
}
