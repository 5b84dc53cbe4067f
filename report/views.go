package report

import (
	"fmt"
	"image/color"
	"math"
	"strings"

	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/stat"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	papoio "github.com/entropy-polarity/papo/io"
)

// Notes for figures without data.
const (
	noTrained   = "No step has trained tokens: the input has no rows, or every token is masked."
	noAdvantage = "No trained token carries an advantage, so there is no polarity P = A·T " +
		"(the input has no advantage column, or every token with one is masked)."
	noWeighted = "No token was weighted: weights apply to trained tokens with an advantage."
)

// trained are the steps with trained tokens (a step of masked tokens has no mean entropy).
func trained(steps []Step) []Step {
	var out []Step
	for _, s := range steps {
		if s.Tokens > 0 {
			out = append(out, s)
		}
	}
	return out
}

// column is f of every step, with the step numbers.
func column(steps []Step, f func(Step) float64) (xs, ys []float64) {
	for _, s := range steps {
		xs, ys = append(xs, float64(s.Step)), append(ys, f(s))
	}
	return xs, ys
}

func (r *Report) trajectory(s *Series) (*Figure, error) {
	f := &Figure{ID: "trajectory", Title: "Entropy trajectory", w: figWidth, h: figHeight * 1.5,
		Caption: "Token-mean entropy H̄ of each step's trained tokens and its EMA E (top); the phase φ, " +
			"green where it favours expanding updates (φ > 0), red where it favours contracting ones (bottom)."}
	steps := trained(s.Steps())
	if len(steps) == 0 {
		f.NoData = noTrained
		return f, nil
	}
	if masked := len(s.Steps()) - len(steps); masked > 0 {
		f.Caption += fmt.Sprintf(" %d step(s) without trained tokens are left out.", masked)
	}
	top := newPlot("step", "entropy (nats)")
	top.X.Label.Text = ""
	xs, mean := column(steps, func(s Step) float64 { return s.MeanEntropy })
	_, ema := column(steps, func(s Step) float64 { return s.EMAEntropy })
	_, phi := column(steps, func(s Step) float64 { return s.Phase })
	if err := addLine(top, downsample(xs, mean, MaxBins), entropyColor, false, "mean H"); err != nil {
		return nil, err
	}
	if err := addLine(top, downsample(xs, ema, MaxBins), emaColor, false, "EMA E"); err != nil {
		return nil, err
	}
	if r.Target != nil {
		t := *r.Target
		line := plotter.XYs{{X: xs[0], Y: t}, {X: xs[len(xs)-1], Y: t}}
		if err := addLine(top, line, targetColor, true, fmt.Sprintf("target H* = %g", t)); err != nil {
			return nil, err
		}
		f.Caption += fmt.Sprintf(" Dashed: the target H* = %g.", t)
	}
	legend := 2
	if r.Target != nil {
		legend++
	}
	headroom(top, legend)
	bottom := newPlot("step", "phase φ")
	bottom.Y.Min, bottom.Y.Max = -1, 1
	ph := downsample(xs, phi, MaxBins)
	if err := signedArea(bottom, ph, faded(expandColor, 0x90), faded(contractColor, 0x90)); err != nil {
		return nil, err
	}
	if err := addLine(bottom, ph, targetColor, false, ""); err != nil {
		return nil, err
	}
	f.draw = stacked(top, bottom)
	return f, nil
}

// branchQuantiles are the quantiles of |P| of one branch over the step bins.
type branchQuantiles struct{ lo, mid, hi plotter.XYs }

func quantilesOf(bins []stepBin, branch func(*branchHist) *pHist) branchQuantiles {
	var q branchQuantiles
	for i := range bins {
		b := &bins[i]
		h := branch(&b.hist)
		if h.total() == 0 {
			continue
		}
		x := (float64(b.first) + float64(b.last)) / 2
		q.lo = append(q.lo, plotter.XY{X: x, Y: h.quantile(0.25)})
		q.mid = append(q.mid, plotter.XY{X: x, Y: h.quantile(0.5)})
		q.hi = append(q.hi, plotter.XY{X: x, Y: h.quantile(0.75)})
	}
	return q
}

var branches = []struct {
	name string
	of   func(*branchHist) *pHist
	c    color.RGBA
}{
	{"expanding (P > 0)", func(b *branchHist) *pHist { return &b.expanding }, expandColor},
	{"contracting (P < 0)", func(b *branchHist) *pHist { return &b.contracting }, contractColor},
}

// polarityNote is why s has no polarity to draw, "" when it has.
func polarityNote(s *Series) string {
	if t := s.bins.total(); t.expanding.total()+t.contracting.total() > 0 {
		return ""
	}
	return noAdvantage
}

func (r *Report) polaritySteps(s *Series) (*Figure, error) {
	f := &Figure{ID: "polarity-steps", Title: "Polarity per step, by branch", w: figWidth, h: figHeight,
		Caption: "Median |P| of each step's expanding and contracting tokens, and the band from the 25th to " +
			"the 75th percentile (from histograms of four bins a decade)."}
	if f.NoData = polarityNote(s); f.NoData != "" {
		return f, nil
	}
	if s.bins.width > 1 {
		f.Caption += fmt.Sprintf(" Steps are merged in runs of %d.", s.bins.width)
	}
	p := newPlot("step", "|P|")
	for _, br := range branches {
		q := quantilesOf(s.bins.bins, br.of)
		if err := addBand(p, q.lo, q.hi, faded(br.c, 0x28)); err != nil {
			return nil, err
		}
		if err := addLine(p, q.mid, br.c, false, br.name); err != nil {
			return nil, err
		}
	}
	logAxis(&p.Y)
	headroom(p, 2)
	f.draw = single(p)
	return f, nil
}

func (r *Report) polarityDistribution(s *Series) (*Figure, error) {
	f := &Figure{ID: "polarity-distribution", Title: "Distribution of |P|, by branch", w: figWidth, h: figHeight,
		Caption: "Fraction of the trained tokens with an advantage in each bin of |P| (four bins a decade), " +
			"all steps together."}
	if f.NoData = polarityNote(s); f.NoData != "" {
		return f, nil
	}
	t := s.bins.total()
	n := float64(t.expanding.total() + t.contracting.total() + t.zero)
	if t.zero > 0 {
		f.Caption += fmt.Sprintf(" %d token(s) with P = 0 (A = 0) are in neither branch.", t.zero)
	}
	lo, hi := pBins, -1
	for k := range pBins {
		if t.expanding[k]+t.contracting[k] > 0 {
			lo, hi = min(lo, k), max(hi, k)
		}
	}
	p := newPlot("|P|", "fraction of tokens")
	for _, br := range branches {
		h := br.of(&t)
		var xys plotter.XYs
		for k := lo; k <= hi; k++ {
			xys = append(xys, plotter.XY{X: pBinCenter(k), Y: float64(h[k]) / n})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.StepStyle, l.Color, l.Width, l.FillColor = plotter.MidStep, br.c, vg.Points(1.5), faded(br.c, 0x50)
		p.Add(l)
		p.Legend.Add(br.name, l)
	}
	logAxis(&p.X)
	p.Y.Min = 0
	headroom(p, 2)
	f.draw = single(p)
	return f, nil
}

// quadrantLabels name Series.Quadrants' cells.
var quadrantLabels = [4]string{"A<0, T<0", "A<0, T>0", "A>0, T<0", "A>0, T>0"}

func (r *Report) quadrantFigure(s *Series) (*Figure, error) {
	f := &Figure{ID: "quadrants", Title: "Predicted ΔH by quadrant of sign(A) × sign(T)", w: figWidth, h: figHeight,
		Caption: "Σ ΔĤ of the tokens of each quadrant, all steps together: green bars expand entropy " +
			"(P = A·T > 0), red ones contract it."}
	qs := s.Quadrants()
	var n int64
	for _, q := range qs {
		n += q.Tokens
	}
	if n == 0 {
		f.NoData = noAdvantage
		return f, nil
	}
	p := newPlot("", "Σ predicted ΔH")
	for i, q := range qs {
		bc, err := plotter.NewBarChart(plotter.Values{q.SumPredictedDeltaH}, vg.Points(40))
		if err != nil {
			return nil, err
		}
		bc.XMin = float64(i)
		bc.Color = contractColor
		if q.Expanding() {
			bc.Color = expandColor
		}
		bc.LineStyle.Width = 0
		p.Add(bc)
	}
	pad := 0.08 * (p.Y.Max - p.Y.Min)
	p.Y.Min, p.Y.Max = p.Y.Min-pad, p.Y.Max+pad
	labels := make([]string, 4)
	for i, q := range qs {
		labels[i] = fmt.Sprintf("%s (%d)", quadrantLabels[i], q.Tokens)
	}
	p.NominalX(labels...)
	f.draw = single(p)
	return f, nil
}

// Fit is the predicted entropy change of each step against its realized change: on the same
// tokens after the trainer's first update when the input has entropy_after, else the change of
// mean entropy to the next step (fresh samples).
type Fit struct {
	Pairs int
	// Per pair: the mean w·ΔĤ per token, and the realized change (same tokens: the mean of
	// H_after − H over them; else H̄ of the next step − H̄).
	Predicted, Realized    []float64
	Correlation            float64 // Pearson's r (NaN with fewer than 3 pairs or no variation)
	Slope, Intercept       float64 // realized ≈ Intercept + Slope·predicted
	ConstantPrediction     bool    // every predicted value is the same (no advantages: all 0)
	StepsWithTrainedTokens int
	// SameToken: the realized change is measured on the same tokens (entropy_after).
	SameToken bool
	// Noise (next-step pairs only) is each pair's lower bound on the sampling noise of the
	// difference of two step means, √(se_k² + se_{k+1}²) with se = sd(H)/√n over the tokens.
	Noise []float64
}

// PredictedRealized pairs each step with its realized change: itself on the same tokens when
// the input had entropy_after, else the next step with trained tokens.
func (s *Series) PredictedRealized() Fit {
	steps := trained(s.Steps())
	f := Fit{StepsWithTrainedTokens: len(steps), Correlation: math.NaN(), Slope: math.NaN(), Intercept: math.NaN(),
		SameToken: s.sameTokenInput}
	if f.SameToken {
		for _, st := range steps {
			if n := float64(st.realized.SameTokens); n > 0 {
				f.Predicted = append(f.Predicted, st.realized.SumPredicted/n)
				f.Realized = append(f.Realized, st.realized.SumRealized/n)
			}
		}
	} else {
		for i := 0; i+1 < len(steps); i++ {
			f.Predicted = append(f.Predicted, steps[i].ReweightedPredictedDeltaH/float64(steps[i].Tokens))
			f.Realized = append(f.Realized, steps[i+1].MeanEntropy-steps[i].MeanEntropy)
			f.Noise = append(f.Noise, math.Hypot(steps[i].realized.StandardError(), steps[i+1].realized.StandardError()))
		}
	}
	f.Pairs = len(f.Predicted)
	if f.Pairs == 0 {
		return f
	}
	f.ConstantPrediction = stat.Variance(f.Predicted, nil) == 0 || f.Pairs == 1
	if f.Pairs >= 3 && !f.ConstantPrediction {
		f.Intercept, f.Slope = stat.LinearRegression(f.Predicted, f.Realized, nil, false)
		f.Correlation = stat.Correlation(f.Predicted, f.Realized, nil)
	}
	return f
}

// what names the realized change and its pairs in the fit's sentences.
func (f Fit) what() (change, pairs string) {
	if f.SameToken {
		return "the realized change of the same tokens' entropy after the first update", "steps"
	}
	return "the realized change of mean entropy", "step pairs"
}

// NoiseSentence compares, for next-step pairs, the sampling noise of a step's mean entropy with
// the predicted changes ("" for same-token fits and without pairs).
func (f Fit) NoiseSentence() string {
	if f.SameToken || f.Pairs == 0 {
		return ""
	}
	var pred float64
	for _, x := range f.Predicted {
		pred += math.Abs(x) / float64(f.Pairs)
	}
	return fmt.Sprintf("The next step's tokens are fresh samples (other prompts, other answers), so the change to it "+
		"carries their sampling noise: at least ±%.2g nats per pair (the dashed lines; the tokens of one response are not "+
		"independent, so it is larger) against a mean predicted |change| of %.2g. A trainer that runs more than one "+
		"epoch per batch can send %s, the entropy of the same rows after its first update, to measure the same tokens "+
		"(docs/SCHEMA.md).", f.MeanNoise(), pred, papoio.ColEntropyAfter)
}

// MeanNoise is the mean over the next-step pairs of their noise bound (0 for same-token fits).
func (f Fit) MeanNoise() float64 {
	if len(f.Noise) == 0 {
		return 0
	}
	return floats.Sum(f.Noise) / float64(len(f.Noise))
}

// Sentence says in one sentence what the fit means for the run.
func (f Fit) Sentence() string {
	change, pairs := f.what()
	switch {
	case f.Pairs == 0 && f.SameToken:
		return "The input has " + papoio.ColEntropyAfter + " but no trained token with an advantage carries a value."
	case f.Pairs == 0:
		return "The realized change needs two steps with trained tokens; this run has " +
			fmt.Sprint(f.StepsWithTrainedTokens) + "."
	case f.ConstantPrediction && f.Pairs > 1:
		return "The predicted change is the same at every step (without advantages it is 0), so it cannot say " +
			"where this run's entropy goes."
	case f.Pairs < 3 || math.IsNaN(f.Correlation):
		return fmt.Sprintf("With %d %s(s) there is too little to correlate; the points are the numbers.", f.Pairs, strings.TrimSuffix(pairs, "s"))
	}
	r := f.Correlation
	strength := "hardly"
	switch a := math.Abs(r); {
	case a >= 0.7:
		strength = "closely"
	case a >= 0.4:
		strength = "moderately"
	case a >= 0.2:
		strength = "weakly"
	}
	if r < 0 {
		return fmt.Sprintf("Over %d %s %s moves %s against the predicted one "+
			"(r = %.2f, slope %.3g), so the first-order prediction does not describe this run's steps: the updates may be "+
			"too large for it, or the trainer used other advantages than these.", f.Pairs, pairs, change, strength, r, f.Slope)
	}
	verdict := "says little about where this run's entropy goes next"
	if r >= 0.4 {
		verdict = "is a usable guide to where this run's entropy goes next"
	}
	return fmt.Sprintf("Over %d %s %s follows the predicted one %s "+
		"(r = %.2f, R² = %.2f, slope %.3g nats per nat predicted), so entropy polarity %s.",
		f.Pairs, pairs, change, strength, r, r*r, f.Slope, verdict)
}

func (r *Report) predictedFigure(s *Series, fit Fit) (*Figure, error) {
	f := &Figure{ID: "predicted", Title: "Predicted vs realized entropy change", w: figWidth, h: figHeight * 1.2,
		Caption: "Each point is a step: its predicted change, Σ w·ΔĤ over its trained tokens divided by their " +
			"number, against the change of mean entropy to the next step; the line is the least-squares fit. " +
			fit.NoiseSentence()}
	if fit.SameToken {
		f.Caption = "Each point is a step: its predicted change, the mean w·ΔĤ over its trained tokens that carry " +
			papoio.ColEntropyAfter + ", against the mean change of those same tokens' entropy after the trainer's first " +
			"update (" + papoio.ColEntropyAfter + " − entropy); the line is the least-squares fit."
	}
	switch {
	case polarityNote(s) != "":
		f.NoData = "The predicted change ΔĤ needs advantages. " + polarityNote(s)
		return f, nil
	case fit.Pairs == 0:
		f.NoData = fit.Sentence()
		return f, nil
	case fit.ConstantPrediction && fit.Pairs > 1:
		f.NoData = fit.Sentence()
		return f, nil
	}
	ylabel := "realized ΔH̄ to the next step"
	if fit.SameToken {
		ylabel = "realized ΔH, same tokens"
	}
	p := newPlot("predicted ΔH per token (mean w·ΔĤ)", ylabel)
	var pts plotter.XYs
	for _, b := range buckets(fit.Pairs, MaxBins) {
		pts = append(pts, plotter.XY{X: fit.Predicted[b[0]], Y: fit.Realized[b[0]]})
	}
	if len(pts) < fit.Pairs {
		f.Caption += fmt.Sprintf(" %d of the %d pairs are drawn, evenly spaced; the fit uses all.", len(pts), fit.Pairs)
	}
	if noise := fit.MeanNoise(); noise > 0 {
		xmin, xmax := floats.Min(fit.Predicted), floats.Max(fit.Predicted)
		for _, y := range []float64{noise, -noise} {
			name := ""
			if y > 0 {
				name = fmt.Sprintf("± sampling noise %.2g", noise)
			}
			if err := addLine(p, plotter.XYs{{X: xmin, Y: y}, {X: xmax, Y: y}}, targetColor, true, name); err != nil {
				return nil, err
			}
		}
	}
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return nil, err
	}
	sc.Color, sc.Radius = entropyColor, vg.Points(2.5)
	p.Add(sc)
	if !math.IsNaN(fit.Slope) {
		xmin, xmax := math.Inf(1), math.Inf(-1)
		for _, x := range fit.Predicted {
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
		}
		line := plotter.XYs{{X: xmin, Y: fit.Intercept + fit.Slope*xmin}, {X: xmax, Y: fit.Intercept + fit.Slope*xmax}}
		if err := addLine(p, line, emaColor, false, fmt.Sprintf("fit: slope %.3g, r = %.2f", fit.Slope, fit.Correlation)); err != nil {
			return nil, err
		}
		headroom(p, 1)
	}
	f.draw = single(p)
	return f, nil
}

// anyWeighted reports whether some series weighted a token.
func (r *Report) anyWeighted() bool {
	for _, s := range r.Series {
		if s.weights.n > 0 {
			return true
		}
	}
	return false
}

func (r *Report) weightFigure() (*Figure, error) {
	f := &Figure{ID: "weights", Title: "Weight distribution", w: figWidth, h: figHeight,
		Caption: "Fraction of each series' weighted tokens (trained, with an advantage) in each bin of w " +
			"(bins of 1/40 over [0, 2); weights outside are counted at the edges)."}
	if !r.anyWeighted() {
		f.NoData = noWeighted
		return f, nil
	}
	lo, hi := wBins, -1
	for _, s := range r.Series {
		for k, c := range s.weights.counts {
			if c > 0 {
				lo, hi = min(lo, k), max(hi, k)
			}
		}
	}
	lo, hi = max(lo-1, 0), min(hi+1, wBins-1)
	p := newPlot("weight w", "fraction of tokens")
	for i, s := range r.Series {
		if s.weights.n == 0 {
			continue
		}
		var xys plotter.XYs
		for k := lo; k <= hi; k++ {
			xys = append(xys, plotter.XY{X: wBinCenter(k), Y: float64(s.weights.counts[k]) / float64(s.weights.n)})
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.StepStyle, l.Color, l.Width = plotter.MidStep, seriesColor(i), vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.Label, l)
	}
	p.Y.Min = 0
	headroom(p, len(r.Series))
	f.draw = single(p)
	return f, nil
}

// perStep draws f of every step for each series.
func (r *Report) perStep(fig *Figure, y string, value func(Step) (float64, bool)) (*Figure, error) {
	p := newPlot("step", y)
	drawn := false
	for i, s := range r.Series {
		var xs, ys []float64
		for _, st := range s.Steps() {
			if v, ok := value(st); ok {
				xs, ys = append(xs, float64(st.Step)), append(ys, v)
			}
		}
		if len(xs) == 0 {
			continue
		}
		drawn = true
		if err := addLine(p, downsample(xs, ys, MaxBins), seriesColor(i), false, s.Label); err != nil {
			return nil, err
		}
	}
	if !drawn {
		fig.NoData = noWeighted
		return fig, nil
	}
	headroom(p, len(r.Series))
	fig.draw = single(p)
	return fig, nil
}

func (r *Report) weightedDeltaHFigure() (*Figure, error) {
	f := &Figure{ID: "weighted-dH", Title: "Σ w·ΔĤ per step", w: figWidth, h: figHeight,
		Caption: "The predicted entropy change of each step with the method's weights: where the lines part, " +
			"the methods steer entropy differently."}
	return r.perStep(f, "Σ w·ΔĤ", func(s Step) (float64, bool) { return s.ReweightedPredictedDeltaH, s.Weighted > 0 })
}

func (r *Report) changedFigure() (*Figure, error) {
	f := &Figure{ID: "changed", Title: "Fraction of tokens changed per step", w: figWidth, h: figHeight,
		Caption: "Share of each step's weighted tokens whose advantage the method changed (Ã ≠ A)."}
	return r.perStep(f, "changed", func(s Step) (float64, bool) {
		return float64(s.Changed) / float64(s.Weighted), s.Weighted > 0
	})
}
