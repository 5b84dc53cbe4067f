package report

import "math"

// |P| is binned on a logarithmic scale, four bins a decade from 1e-10 to 1e4, with a bin below
// and one above: polarity spans many decades (a peaked row's S_a − C is tiny, a flat row's is
// of order H), and a histogram of fixed bins merges exactly, which quantiles do not.
const (
	logMin        = -10
	logMax        = 4
	binsPerDecade = 4
	pBins         = (logMax-logMin)*binsPerDecade + 2
)

// pBin is the bin of |P| = x > 0.
func pBin(x float64) int {
	k := int(math.Floor((math.Log10(x)-logMin)*binsPerDecade)) + 1
	return min(max(k, 0), pBins-1)
}

// pBinCenter is the geometric centre of bin k (the edge for the two outer bins).
func pBinCenter(k int) float64 {
	switch k {
	case 0:
		return math.Pow(10, logMin)
	case pBins - 1:
		return math.Pow(10, logMax)
	}
	return math.Pow(10, logMin+(float64(k-1)+0.5)/binsPerDecade)
}

// pHist counts |P| by bin.
type pHist [pBins]int64

func (h *pHist) total() int64 {
	var n int64
	for _, c := range h {
		n += c
	}
	return n
}

// quantile is the |P| below which a fraction q of the counts lie (a bin's centre), 0 for
// an empty histogram.
func (h *pHist) quantile(q float64) float64 {
	n := h.total()
	if n == 0 {
		return 0
	}
	want := q * float64(n)
	var seen int64
	for k, c := range h {
		seen += c
		if float64(seen) >= want && c > 0 {
			return pBinCenter(k)
		}
	}
	return pBinCenter(pBins - 1)
}

// branchHist is the polarity of a set of tokens by branch: P > 0 expands entropy, P < 0
// contracts it, P = 0 (A = 0, or T = 0) is in neither.
type branchHist struct {
	expanding, contracting pHist
	zero                   int64
}

func (b *branchHist) add(p float64) {
	switch {
	case p > 0:
		b.expanding[pBin(p)]++
	case p < 0:
		b.contracting[pBin(-p)]++
	case p == 0:
		b.zero++
	}
}

func (b *branchHist) merge(o *branchHist) {
	for k := range b.expanding {
		b.expanding[k] += o.expanding[k]
		b.contracting[k] += o.contracting[k]
	}
	b.zero += o.zero
}

// stepBin is a run of consecutive steps whose histograms were merged.
type stepBin struct {
	first, last int64 // step numbers
	steps       int
	hist        branchHist
}

// stepBins keeps at most max bins of width consecutive steps each: when a new step finds them
// all full, neighbours are merged pairwise and the width doubles, so memory is bounded by max
// whatever the number of steps.
type stepBins struct {
	bins  []stepBin
	max   int
	width int
}

func (s *stepBins) add(step int64, h branchHist) {
	if n := len(s.bins); n > 0 && s.bins[n-1].steps < s.width {
		last := &s.bins[n-1]
		last.last = step
		last.steps++
		last.hist.merge(&h)
		return
	}
	if len(s.bins) == s.max {
		merged := s.bins[:0]
		for i := 0; i < len(s.bins); i += 2 {
			b := s.bins[i]
			if i+1 < len(s.bins) {
				o := s.bins[i+1]
				b.last, b.steps = o.last, b.steps+o.steps
				b.hist.merge(&o.hist)
			}
			merged = append(merged, b)
		}
		s.bins, s.width = merged, 2*s.width
		s.add(step, h)
		return
	}
	s.bins = append(s.bins, stepBin{first: step, last: step, steps: 1, hist: h})
}

// total is every bin merged.
func (s *stepBins) total() branchHist {
	var t branchHist
	for i := range s.bins {
		t.merge(&s.bins[i].hist)
	}
	return t
}

// Weights are binned over [0, 2) in steps of 1/40, with one bin below and one above: PAPO's
// weights lie in [1 − λ, 1 + λ], the baselines' mostly in [0, 1.2]; KL-Cov's and entropy
// shaping's Ã/A can lie far out, and are counted in the outer bins.
const (
	wLow     = 0.0
	wHigh    = 2.0
	wPerUnit = 40
	wBins    = int((wHigh-wLow)*wPerUnit) + 2
)

// weightHist counts the weights of the weighted tokens (trained, with an advantage).
type weightHist struct {
	counts   [wBins]int64
	n        int64
	min, max float64
}

func (w *weightHist) add(x float64) {
	if math.IsNaN(x) {
		return
	}
	if w.n == 0 {
		w.min, w.max = x, x
	}
	w.n++
	w.min, w.max = math.Min(w.min, x), math.Max(w.max, x)
	k := 0
	if x >= wLow {
		k = min(int(math.Floor((x-wLow)*wPerUnit))+1, wBins-1)
	}
	w.counts[k]++
}

// wBinCenter is the centre of weight bin k (the edge for the two outer bins).
func wBinCenter(k int) float64 {
	switch k {
	case 0:
		return wLow
	case wBins - 1:
		return wHigh
	}
	return wLow + (float64(k-1)+0.5)/wPerUnit
}
