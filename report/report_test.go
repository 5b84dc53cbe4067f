package report

import (
	"bytes"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/internal/reporttest"
	"github.com/entropy-polarity/papo/vocab"
)

var allFigures = []string{"trajectory", "polarity-distribution", "polarity-steps", "quadrants", "predicted", "weights",
	"weighted-dH", "changed"}

// printedTolerance is a printed cell's value and half a unit of its last digit.
func printedTolerance(t *testing.T, text string) (value, tol float64) {
	t.Helper()
	v, half, err := reporttest.Printed(text)
	if err != nil {
		t.Fatal(err)
	}
	return v, half * (1 + 1e-9)
}

// tableRows are the rows of the page's table data-table=name, as column → text.
func tableRows(t *testing.T, page, name string) []map[string]string {
	t.Helper()
	rows, err := reporttest.Table(page, name)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestReportStructure: a run of six steps compared with a second series has every figure drawn
// and every table, and the numbers of the per-step table are the steps' summaries to the
// printed precision.
func TestReportStructure(t *testing.T) {
	papoRun := synth{steps: 6, tokens: 300, seed: 1, maskedStep: -1, lambda: 0.3}
	plain := synth{steps: 6, tokens: 300, seed: 1, maskedStep: -1}
	target := 0.4
	r := &Report{Version: "papo test", Engine: "cpu (test)", Target: &target,
		Series: []*Series{papoRun.series(t, "papo"), plain.series(t, "none")},
		Params: []Param{{"method", "papo"}}, Inputs: []Input{{Path: "in.arrow", Kind: "logits", Rows: 1800, Steps: 6}}}
	page := render(t, r)
	inner, nodata := reporttest.Figures(page)
	for _, id := range allFigures {
		if nodata[id] || !strings.Contains(inner[id], "<svg") {
			t.Errorf("figure %s: not drawn (no data: %v)", id, nodata[id])
			continue
		}
		if n := drawnElements(inner[id]); n < 10 {
			t.Errorf("figure %s: %d drawn elements; want a drawing", id, n)
		}
	}
	if len(inner) != len(allFigures) {
		t.Errorf("%d figures; want %d", len(inner), len(allFigures))
	}
	for _, table := range []string{"steps", "quadrants", "methods", "top", "inputs"} {
		if !strings.Contains(page, `data-table="`+table+`"`) {
			t.Errorf("no table %s", table)
		}
	}
	rows := tableRows(t, page, "steps")
	steps := r.Series[0].Steps()
	if len(rows) != len(steps) {
		t.Fatalf("the steps table has %d rows; want %d", len(rows), len(steps))
	}
	for i, s := range steps {
		want := map[string]float64{"step": float64(s.Step), "tokens": float64(s.Tokens), "mean_entropy": s.MeanEntropy,
			"ema_entropy": s.EMAEntropy, "phase": s.Phase, "expanding_fraction": s.ExpandingFraction,
			"sum_positive_polarity": s.SumPositivePolarity, "sum_negative_polarity": s.SumNegativePolarity,
			"predicted_dH": s.PredictedDeltaH, "reweighted_predicted_dH": s.ReweightedPredictedDeltaH,
			"weight_min": s.WeightMin, "weight_mean": s.WeightMean, "weight_max": s.WeightMax}
		for col, w := range want {
			got, tol := printedTolerance(t, rows[i][col])
			if math.Abs(got-w) > tol {
				t.Errorf("step %d, %s: printed %s; the summary has %v", s.Step, col, rows[i][col], w)
			}
		}
	}
	var quadrantTokens int64
	for _, row := range tableRows(t, page, "quadrants") {
		n, _ := strconv.ParseInt(row["tokens"], 10, 64)
		quadrantTokens += n
	}
	var want int64
	for _, q := range r.Series[0].Quadrants() {
		want += q.Tokens
	}
	if quadrantTokens != want || want == 0 {
		t.Errorf("the quadrant table counts %d tokens; want %d", quadrantTokens, want)
	}
	for _, must := range []string{"Methods side by side", "papo test", "cpu (test)", "in.arrow", "target H* = 0.4",
		"Content-Security-Policy", `data-fit="r = `} {
		if !strings.Contains(page, must) {
			t.Errorf("the page lacks %q", must)
		}
	}
	// Self-contained: no address is fetched (the SVG namespaces are names, not loads).
	if m := regexp.MustCompile(`(src|href)="(https?:)?//`).FindString(page); m != "" {
		t.Errorf("the page loads %s", m)
	}
}

// TestReportEdgeCases: pages still render when there is little or nothing to draw, and each
// figure without data says why.
func TestReportEdgeCases(t *testing.T) {
	tests := []struct {
		name   string
		series func(t *testing.T) []*Series
		nodata []string // the figures that have no data; the others are drawn
		text   []string // sentences the page must have
	}{
		{"no input at all", func(*testing.T) []*Series { return nil }, allFigures, []string{"No steps: the input has no token rows."}},
		{"a file with zero rows", func(*testing.T) []*Series { return []*Series{NewSeries("empty", 0)} }, allFigures,
			[]string{noTrained, "No steps: the input has no token rows."}},
		{"a single step", func(t *testing.T) []*Series {
			return []*Series{synth{steps: 1, tokens: 50, seed: 2, maskedStep: -1, lambda: 0.2}.series(t, "one")}
		}, []string{"predicted"}, []string{"The realized change needs two steps with trained tokens; this run has 1."}},
		{"a step with every token masked", func(t *testing.T) []*Series {
			return []*Series{synth{steps: 5, tokens: 50, seed: 3, maskedStep: 2, lambda: 0.2}.series(t, "masked")}
		}, nil, []string{"1 step(s) without trained tokens are left out."}},
		{"every step masked", func(t *testing.T) []*Series {
			s := NewSeries("all masked", 0)
			for k := range 3 {
				synth{steps: 1, tokens: 20, seed: uint64(k), maskedStep: 0}.feedAt(t, s, int64(k))
			}
			return []*Series{s}
		}, allFigures, []string{noTrained}},
		{"a file with no advantages", func(t *testing.T) []*Series {
			return []*Series{synth{steps: 4, tokens: 50, seed: 4, maskedStep: -1, noAdvantage: true}.series(t, "no A")}
		}, []string{"polarity-distribution", "polarity-steps", "quadrants", "predicted", "weights", "weighted-dH", "changed"},
			[]string{noAdvantage, "without advantages it is 0", "No token has a polarity"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			page := render(t, &Report{Series: tc.series(t)})
			inner, nodata := reporttest.Figures(page)
			if len(inner) != len(allFigures) {
				t.Fatalf("%d figures; want %d", len(inner), len(allFigures))
			}
			for _, id := range allFigures {
				want := false
				for _, n := range tc.nodata {
					want = want || n == id
				}
				switch {
				case want && (!nodata[id] || !strings.Contains(inner[id], `class="nodata"`)):
					t.Errorf("figure %s is drawn; want a note that it has no data", id)
				case !want && (nodata[id] || drawnElements(inner[id]) == 0):
					t.Errorf("figure %s has no drawing: %.200s", id, inner[id])
				}
			}
			for _, s := range tc.text {
				if !strings.Contains(page, s) {
					t.Errorf("the page lacks %q", s)
				}
			}
		})
	}
}

// TestReportManySteps: 10,000 steps draw no more than 500 steps do: lines are averaged over
// at most MaxBins points and the polarity histograms merged into at most MaxBins bins.
func TestReportManySteps(t *testing.T) {
	type size struct{ elements, bytes int }
	sizes := map[int]map[string]size{}
	for _, steps := range []int{500, 10000} {
		s := synth{steps: steps, tokens: 3, seed: 5, maskedStep: -1, lambda: 0.4}.series(t, "long")
		if n := len(s.bins.bins); n > MaxBins {
			t.Fatalf("%d steps kept %d histogram bins; want at most %d", steps, n, MaxBins)
		}
		page := render(t, &Report{Series: []*Series{s}})
		inner, nodata := reporttest.Figures(page)
		sizes[steps] = map[string]size{}
		for _, id := range allFigures {
			if nodata[id] {
				t.Fatalf("%d steps: figure %s has no data", steps, id)
			}
			sizes[steps][id] = size{drawnElements(inner[id]), len(inner[id])}
		}
		if n := len(tableRows(t, page, "steps")); n > maxTableSteps {
			t.Errorf("%d steps: the steps table has %d rows", steps, n)
		}
		if len(page) > 2<<20 {
			t.Errorf("%d steps: the page is %d KB", steps, len(page)>>10)
		}
	}
	// Figures along the steps draw no more at 10,000 steps than at 500 (tick labels may differ
	// in length); the others draw fixed bins (|P|, w, the quadrants). None is large.
	for _, id := range allFigures {
		a, b := sizes[500][id], sizes[10000][id]
		if b.elements > MaxBins+200 || b.bytes > 120<<10 {
			t.Errorf("figure %s: %d elements, %d bytes at 10,000 steps", id, b.elements, b.bytes)
		}
		if id == "polarity-distribution" || id == "weights" || id == "quadrants" {
			continue
		}
		if b.elements > a.elements+20 || b.bytes > a.bytes+a.bytes/4 {
			t.Errorf("figure %s: %d elements and %d bytes at 10,000 steps; %d and %d at 500", id, b.elements, b.bytes,
				a.elements, a.bytes)
		}
	}
}

// TestReportEscapesText: token texts from a vocabulary and labels from file names are
// untrusted: the page shows them, escaped.
func TestReportEscapesText(t *testing.T) {
	hostile := "</td><script>alert(1)</script>"
	text := map[string]string{}
	for id := range 1000 {
		text[strconv.Itoa(id)] = hostile
	}
	data := "{"
	for id := range 1000 {
		if id > 0 {
			data += ","
		}
		data += fmt.Sprintf("%q: %q", strconv.Itoa(id), hostile)
	}
	v, err := vocab.Parse([]byte(data + "}"))
	if err != nil {
		t.Fatal(err)
	}
	label := `<img src=x onerror=alert(2)>`
	s := synth{steps: 3, tokens: 40, seed: 6, maskedStep: -1, lambda: 0.2}.series(t, label)
	page := render(t, &Report{Series: []*Series{s}, Vocab: v, Inputs: []Input{{Path: label, Series: label}}})
	for _, raw := range []string{"<script>alert(1)", "<img src=x"} {
		if strings.Contains(page, raw) {
			t.Errorf("the page has %q unescaped", raw)
		}
	}
	if !strings.Contains(page, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(page, "&lt;img src=x") {
		t.Error("the page does not show the texts (escaped)")
	}
	if len(tableRows(t, page, "top")) == 0 && !strings.Contains(page, `<td class="text">`) {
		t.Error("the top tokens have no text column")
	}
}

func TestFitSentence(t *testing.T) {
	line := func(slope float64, n int) Fit {
		s := NewSeries("fit", 0)
		for k := range n {
			// predicted per token = k/100 (Σ over 10 tokens), realized change = slope·predicted.
			s.steps = append(s.steps, Step{})
			st := &s.steps[k]
			st.Step, st.Tokens, st.ReweightedPredictedDeltaH = int64(k), 10, float64(k)/10
		}
		h := 1.0
		for k := range n {
			s.steps[k].MeanEntropy = h
			h += slope * float64(k) / 100
		}
		return s.PredictedRealized()
	}
	tests := []struct {
		name string
		fit  Fit
		want []string
	}{
		{"realized = 2 × predicted", line(2, 8), []string{"closely", "r = 1.00", "slope 2 nats", "usable guide"}},
		{"realized = −1 × predicted", line(-1, 8), []string{"against the predicted one", "r = -1.00"}},
		{"two pairs", line(2, 3), []string{"With 2 step pair(s) there is too little to correlate"}},
		{"one step", line(2, 1), []string{"needs two steps", "this run has 1"}},
		{"no advantages", func() Fit { f := line(2, 6); return f }(), nil},
	}
	tests[4].fit = func() Fit {
		s := NewSeries("flat", 0)
		for k := range 5 {
			s.steps = append(s.steps, Step{})
			s.steps[k].Step, s.steps[k].Tokens, s.steps[k].MeanEntropy = int64(k), 10, 1/float64(k+1)
		}
		return s.PredictedRealized()
	}()
	tests[4].want = []string{"the same at every step"}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.fit.Sentence()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("%q lacks %q", got, w)
				}
			}
		})
	}
	if f := line(2, 8); math.Abs(f.Slope-2) > 1e-9 || math.Abs(f.Correlation-1) > 1e-9 || f.Pairs != 7 {
		t.Errorf("fit of realized = 2·predicted: slope %v, r %v over %d pairs", f.Slope, f.Correlation, f.Pairs)
	}
}

// TestStepBins: histograms of many steps merge pairwise into at most max bins that cover
// every step once, counts intact.
func TestStepBins(t *testing.T) {
	for _, n := range []int{1, 7, 500, 501, 10000} {
		b := stepBins{max: 500, width: 1}
		for k := range n {
			var h branchHist
			h.add(float64(k%5) - 2) // two expanding, two contracting, one zero
			b.add(int64(3*k), h)
		}
		if len(b.bins) > 500 {
			t.Fatalf("%d steps: %d bins", n, len(b.bins))
		}
		var steps int
		next := int64(0)
		for _, bin := range b.bins {
			if bin.first != next || bin.last < bin.first {
				t.Fatalf("%d steps: a bin covers steps %d…%d after step %d", n, bin.first, bin.last, next-3)
			}
			next = bin.last + 3
			steps += bin.steps
		}
		total := b.total()
		if steps != n || total.expanding.total()+total.contracting.total()+total.zero != int64(n) {
			t.Errorf("%d steps: bins hold %d steps and %d tokens", n, steps, total.expanding.total()+total.contracting.total()+total.zero)
		}
	}
}

func TestTopTokens(t *testing.T) {
	var h tokenHeap
	for i, p := range []float32{0.1, -3, 2, 0.5, -2, 3, 0.2} {
		h.offer(4, Token{Polarity: p, order: int64(i)})
	}
	var got []float32
	for _, tok := range h.sorted() {
		got = append(got, tok.Polarity)
	}
	// |P| = 3 twice: the earlier row first; then the two of |P| = 2 in row order.
	if fmt.Sprint(got) != "[-3 3 2 -2]" {
		t.Errorf("top tokens %v; want [-3 3 2 -2]", got)
	}
}

// TestReportPNG: every figure is a decodable PNG of a sensible size, written atomically: a file
// already at a figure's path is replaced, not written in place (a hard link to the old file keeps
// its bytes), and no temporary file is left in the directory.
func TestReportPNG(t *testing.T) {
	s := synth{steps: 4, tokens: 60, seed: 7, maskedStep: -1, lambda: 0.2}.series(t, "png")
	dir := t.TempDir()
	figs, err := (&Report{Series: []*Series{s}}).Figures()
	if err != nil {
		t.Fatal(err)
	}
	old := []byte("the previous figure")
	keep := filepath.Join(t.TempDir(), "kept")
	if err := os.WriteFile(keep, old, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(keep, filepath.Join(dir, figs[0].ID+".png")); err != nil {
		t.Fatal(err)
	}
	paths, err := (&Report{Series: []*Series{s}}).WritePNG(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(allFigures) {
		t.Fatalf("%d PNG files; want %d", len(paths), len(allFigures))
	}
	if b, err := os.ReadFile(keep); err != nil || !bytes.Equal(b, old) {
		t.Errorf("%s, a hard link to the old %s.png: %d bytes, %v; want its %d bytes untouched (the PNG was written in place)", keep, figs[0].ID, len(b), err, len(old))
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != len(paths) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v (%v); want only the %d PNG files", names, err, len(paths))
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(p), err)
		}
		if b := img.Bounds(); b.Dx() < 500 || b.Dy() < 200 {
			t.Errorf("%s is %v", filepath.Base(p), b)
		}
	}
}
