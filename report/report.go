package report

import (
	"bufio"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"sync"

	"github.com/entropy-polarity/papo/vocab"
)

// Report is one HTML page over one or more series. The first series is the run the page
// describes; every series is compared in "Methods side by side" (reweight outputs of several
// methods over the same rollouts).
type Report struct {
	Title   string
	Version string // papo's version
	Engine  string // the engine that computed the series ("" where they were read back)
	Device  string // the --device asked for, and what ran
	Params  []Param
	Inputs  []Input
	// Target is the phase's target entropy H* (phase mode target), nil in slope mode.
	Target *float64
	Series []*Series
	// Vocab, when set, gives the top tokens their text.
	Vocab *vocab.Vocab
	// Notes are sentences for the "Run" section (how the series were obtained).
	Notes []string
}

// Param is one parameter of the run, as text.
type Param struct{ Name, Value string }

// Input is one input file.
type Input struct {
	Path, Kind string // Kind: "logits (V = 151936, float32)", "row statistics", "per-token output"
	Series     string // the series it feeds
	Rows       int64
	Steps      int
}

// Figures builds every figure of the page, in page order.
func (r *Report) Figures() ([]*Figure, error) {
	s := r.primary()
	var out []*Figure
	for _, build := range []func() (*Figure, error){
		func() (*Figure, error) { return r.trajectory(s) },
		func() (*Figure, error) { return r.polarityDistribution(s) },
		func() (*Figure, error) { return r.polaritySteps(s) },
		func() (*Figure, error) { return r.quadrantFigure(s) },
		func() (*Figure, error) { return r.predictedFigure(s, s.PredictedRealized()) },
		r.weightFigure,
		r.weightedDeltaHFigure,
		r.changedFigure,
	} {
		f, err := build()
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

// primary is the series the page describes (an empty one when there is none).
func (r *Report) primary() *Series {
	if len(r.Series) == 0 {
		return NewSeries("(no input)", 0)
	}
	return r.Series[0]
}

// WritePNG writes every figure that has data as dir/ID.png and returns the paths.
func (r *Report) WritePNG(dir string) ([]string, error) {
	figs, err := r.Figures()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, f := range figs {
		path, err := f.PNG(dir)
		if err != nil {
			return nil, err
		}
		if path != "" {
			paths = append(paths, path)
		}
	}
	return paths, nil
}

//go:embed page.html
var pageTemplate string

// page is the parsed page template, parsed at the first report: parsing it in the package's
// initialisation cost every papo command (papo analyze included) 0.25 ms at start.
var page = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Parse(pageTemplate))
})

// view is what the template reads.
type view struct {
	*Report
	Primary    *Series
	Figures    map[string]figureView
	Steps      []map[string]string
	StepsShown int
	StepsTotal int
	Rows       int64
	Trained    int64
	Quadrants  []quadrantView
	Fit        Fit
	FitLine    string
	FitNumbers string
	Methods    []methodView
	Top        []map[string]string
	HasText    bool
	FontFace   template.CSS
}

type figureView struct {
	ID, Title, Caption, NoData string
	SVG                        template.HTML
}

type quadrantView struct {
	Label, Branch      string
	Tokens             int64
	SumPredictedDeltaH string
	SumPolarity        string
}

type methodView struct {
	Label                                  string
	Steps                                  int
	Weighted                               int64
	Changed                                string
	SumPredicted, SumWeighted              string
	WeightMin, WeightMean, WeightMax, Note string
}

// maxTableSteps is how many steps the per-step table lists; a longer run lists that many,
// evenly spaced, first and last included.
const maxTableSteps = 60

// StepCells formats a step as the per-step table prints it, keyed by the summary table's
// column names (docs/SCHEMA.md), plus "changed", the fraction of weighted tokens changed.
func StepCells(s Step) map[string]string {
	changed := "–"
	if s.Weighted > 0 {
		changed = fmt.Sprintf("%.1f%%", 100*float64(s.Changed)/float64(s.Weighted))
	}
	return map[string]string{
		"step":                    strconv.FormatInt(s.Step, 10),
		"tokens":                  strconv.FormatInt(s.Tokens, 10),
		"mean_entropy":            fmt.Sprintf("%.4f", s.MeanEntropy),
		"ema_entropy":             fmt.Sprintf("%.4f", s.EMAEntropy),
		"phase":                   fmt.Sprintf("%+.3f", s.Phase),
		"expanding_fraction":      fmt.Sprintf("%.1f%%", 100*s.ExpandingFraction),
		"sum_positive_polarity":   fmt.Sprintf("%.4g", s.SumPositivePolarity),
		"sum_negative_polarity":   fmt.Sprintf("%.4g", s.SumNegativePolarity),
		"predicted_dH":            fmt.Sprintf("%+.4g", s.PredictedDeltaH),
		"reweighted_predicted_dH": fmt.Sprintf("%+.4g", s.ReweightedPredictedDeltaH),
		"weight_min":              fmt.Sprintf("%.3f", s.WeightMin),
		"weight_mean":             fmt.Sprintf("%.3f", s.WeightMean),
		"weight_max":              fmt.Sprintf("%.3f", s.WeightMax),
		"changed":                 changed,
	}
}

// WriteHTML writes the page.
func (r *Report) WriteHTML(w io.Writer) error {
	figs, err := r.Figures()
	if err != nil {
		return err
	}
	s := r.primary()
	fontFace, err := FontFaceCSS()
	if err != nil {
		return err
	}
	v := view{Report: r, Primary: s, Figures: map[string]figureView{}, FontFace: template.CSS(fontFace)}
	if v.Title == "" {
		v.Title = "papo report"
	}
	for _, f := range figs {
		svg, err := f.SVG()
		if err != nil {
			return err
		}
		// The SVG is plot's output, whose texts plot escapes (html.EscapeString).
		v.Figures[f.ID] = figureView{ID: f.ID, Title: f.Title, Caption: f.Caption, NoData: f.NoData, SVG: template.HTML(svg)}
	}
	steps := s.Steps()
	v.StepsTotal = len(steps)
	for _, b := range buckets(len(steps), maxTableSteps) {
		v.Steps = append(v.Steps, StepCells(steps[b[0]]))
	}
	if n := len(steps); n > maxTableSteps {
		v.Steps[len(v.Steps)-1] = StepCells(steps[n-1])
	}
	v.StepsShown = len(v.Steps)
	for _, st := range steps {
		v.Trained += st.Tokens
	}
	v.Rows = s.rows
	for i, q := range s.Quadrants() {
		branch := "contracts"
		if q.Expanding() {
			branch = "expands"
		}
		v.Quadrants = append(v.Quadrants, quadrantView{Label: quadrantLabels[i], Branch: branch, Tokens: q.Tokens,
			SumPredictedDeltaH: fmt.Sprintf("%+.4g", q.SumPredictedDeltaH), SumPolarity: fmt.Sprintf("%+.4g", q.SumPolarity)})
	}
	v.Fit = s.PredictedRealized()
	v.FitLine = v.Fit.Sentence()
	if !math.IsNaN(v.Fit.Correlation) {
		_, pairs := v.Fit.what()
		v.FitNumbers = fmt.Sprintf("r = %.3f, slope = %.4g, intercept = %.4g, %d %s", v.Fit.Correlation,
			v.Fit.Slope, v.Fit.Intercept, v.Fit.Pairs, pairs)
	}
	for _, ser := range r.Series {
		v.Methods = append(v.Methods, methodOf(ser))
	}
	v.HasText = r.Vocab != nil
	for _, t := range s.Top() {
		v.Top = append(v.Top, r.tokenCells(t))
	}
	bw := bufio.NewWriter(w)
	if err := page().Execute(bw, v); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return bw.Flush()
}

// methodOf sums a series over its steps.
func methodOf(s *Series) methodView {
	m := methodView{Label: s.Label, Steps: len(s.Steps())}
	var changed int64
	var sumP, sumW, sumMean float64
	wmin, wmax := math.Inf(1), math.Inf(-1)
	for _, st := range s.Steps() {
		sumP += st.PredictedDeltaH
		sumW += st.ReweightedPredictedDeltaH
		if st.Weighted == 0 {
			continue
		}
		m.Weighted += st.Weighted
		changed += st.Changed
		sumMean += st.WeightMean * float64(st.Weighted)
		wmin, wmax = math.Min(wmin, st.WeightMin), math.Max(wmax, st.WeightMax)
	}
	m.SumPredicted, m.SumWeighted = fmt.Sprintf("%+.4g", sumP), fmt.Sprintf("%+.4g", sumW)
	if m.Weighted == 0 {
		m.Changed, m.WeightMin, m.WeightMean, m.WeightMax = "–", "–", "–", "–"
		m.Note = "no weighted tokens"
		return m
	}
	m.Changed = fmt.Sprintf("%.1f%%", 100*float64(changed)/float64(m.Weighted))
	m.WeightMin, m.WeightMean, m.WeightMax = fmt.Sprintf("%.3f", wmin), fmt.Sprintf("%.3f", sumMean/float64(m.Weighted)),
		fmt.Sprintf("%.3f", wmax)
	if wmin == 1 && wmax == 1 {
		m.Note = "every weight is 1 (analyze, or method none)"
	}
	return m
}

// tokenCells formats a top token. A vocabulary's text is quoted the way Go quotes strings, so
// that spaces, newlines and control bytes are visible; html/template escapes the rest.
func (r *Report) tokenCells(t Token) map[string]string {
	id := func(x int64) string {
		if x < 0 {
			return "–"
		}
		return strconv.FormatInt(x, 10)
	}
	branch := "contracts"
	if t.Polarity > 0 {
		branch = "expands"
	}
	c := map[string]string{
		"step": strconv.FormatInt(t.Step, 10), "sequence": id(t.Sequence), "position": id(t.Position),
		"token_id": strconv.Itoa(int(t.TokenID)), "polarity": fmt.Sprintf("%+.4g", t.Polarity),
		"advantage": fmt.Sprintf("%+.4g", t.Advantage), "polarity_factor": fmt.Sprintf("%+.4g", t.PolarityFactor),
		"entropy": fmt.Sprintf("%.4f", t.Entropy), "predicted_dH": fmt.Sprintf("%+.4g", t.PredictedDeltaH),
		"weight": fmt.Sprintf("%.3f", t.Weight), "branch": branch,
	}
	if r.Vocab != nil {
		if text, ok := r.Vocab.Text(t.TokenID); ok {
			c["text"] = strconv.Quote(text)
		} else {
			c["text"] = "(not in the vocabulary)"
		}
	}
	return c
}
