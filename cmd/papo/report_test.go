package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"html"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/reporttest"
	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/files"
)

// reportFigures are the figures every report has, drawn or with a note.
var reportFigures = []string{"trajectory", "polarity-distribution", "polarity-steps", "quadrants", "predicted",
	"weights", "weighted-dH", "changed"}

// reportDemo runs make demo's commands at a small size in dir (a 4,096-token vocabulary, 5
// steps of 96 tokens) and a report over the reweight output and the analyze output; it returns
// the report's path.
func reportDemo(t *testing.T, dir string) string {
	t.Helper()
	in := filepath.Join(dir, "rollouts.arrow")
	phase := []string{"--phase-mode", "target", "--target-entropy", "0.8"}
	for _, args := range [][]string{
		{"gen", "-o", in, "--vocab", "4096", "--tokens", "96", "--steps", "5", "--seed", "7"},
		{"analyze", in, "-o", filepath.Join(dir, "polarity.arrow"), "--summary", filepath.Join(dir, "summary.csv"),
			"--device", "cpu", "--quiet"},
		append([]string{"reweight", in, "-o", filepath.Join(dir, "reweighted.parquet"), "--device", "cpu", "--quiet",
			"--summary", filepath.Join(dir, "reweight-summary.csv")}, phase...),
		append([]string{"report", filepath.Join(dir, "reweighted.parquet"), filepath.Join(dir, "polarity.arrow"),
			"-o", filepath.Join(dir, "report.html"), "--device", "cpu"}, phase...),
	} {
		if code, _, stderr := runCLI(t, args...); code != 0 {
			t.Fatalf("papo %s: exit %d: %s", args[0], code, stderr)
		}
	}
	return filepath.Join(dir, "report.html")
}

// summaryCSV reads a --summary table: one map per step, column → value.
func summaryCSV(t *testing.T, path string) []map[string]float64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	table, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var rows []map[string]float64
	for _, rec := range table[1:] {
		row := map[string]float64{}
		for i, name := range table[0] {
			if row[name], err = strconv.ParseFloat(rec[i], 64); err != nil {
				t.Fatalf("%s: %s = %q", path, name, rec[i])
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// reportTable is the page's table data-table=name: one map per row, column → printed text.
func reportTable(t *testing.T, page, name string) []map[string]string {
	t.Helper()
	rows, err := reporttest.Table(page, name)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// printedValue is a table cell's number and half a unit of its last printed digit.
func printedValue(t *testing.T, text string) (value, halfUnit float64) {
	t.Helper()
	v, half, err := reporttest.Printed(text)
	if err != nil {
		t.Fatal(err)
	}
	return v, half
}

// TestReportDemo: the demo's report has each figure drawn and each table, and its per-step
// table is reweight's per-step summary to the printed precision (its first input is
// reweight's output, read back, and the phase computed again with the same flags).
func TestReportDemo(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(reportDemo(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	inner, nodata := reporttest.Figures(page)
	for _, id := range reportFigures {
		if nodata[id] || !strings.Contains(inner[id], "<svg") {
			t.Errorf("figure %s is not drawn", id)
		}
	}
	for _, table := range []string{"steps", "quadrants", "methods", "top", "inputs"} {
		if !strings.Contains(page, `data-table="`+table+`"`) {
			t.Errorf("the report has no %s table", table)
		}
	}
	want := summaryCSV(t, filepath.Join(dir, "reweight-summary.csv"))
	got := reportTable(t, page, "steps")
	if len(got) != len(want) {
		t.Fatalf("the steps table has %d rows; the summary %d", len(got), len(want))
	}
	for i := range want {
		for col, w := range want[i] {
			v, half := printedValue(t, got[i][col])
			// The weights are float32 in the output file, float64 in reweight's summary: 1e-6.
			if math.Abs(v-w) > half+1e-6 {
				t.Errorf("step %v, %s: the report prints %s; the summary has %v", want[i]["step"], col, got[i][col], w)
			}
		}
	}
	for _, must := range []string{"Methods side by side", "reweighted", "polarity", versionString(), "per-token output"} {
		if !strings.Contains(page, must) {
			t.Errorf("the report lacks %q", must)
		}
	}
}

// TestReportComputed: an input of logits runs through the pipeline with reweight's flags and
// gives reweight's per-step summary; the engine that ran is named, and --png writes the figures.
func TestReportComputed(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.arrow")
	if err := testinput.WriteFile(in, testinput.Spec{V: 300, Steps: testinput.StepRows(40, 0, 1, 2), Seed: 3}); err != nil {
		t.Fatal(err)
	}
	summary := filepath.Join(dir, "summary.csv")
	out := filepath.Join(dir, "report.html")
	pngs := filepath.Join(dir, "figures")
	for _, args := range [][]string{
		{"reweight", in, "-o", filepath.Join(dir, "out.arrow"), "--summary", summary, "--device", "cpu", "--quiet", "--method", "steer"},
		{"report", in, "-o", out, "--png", pngs, "--device", "cpu", "--method", "steer"},
	} {
		if code, _, stderr := runCLI(t, args...); code != 0 {
			t.Fatalf("papo %s: exit %d: %s", args[0], code, stderr)
		}
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	page := string(data)
	want := summaryCSV(t, summary)
	got := reportTable(t, page, "steps")
	if len(got) != len(want) {
		t.Fatalf("%d steps in the report; %d in the summary", len(got), len(want))
	}
	for i := range want {
		for col, w := range want[i] {
			if v, half := printedValue(t, got[i][col]); math.Abs(v-w) > half*(1+1e-9) {
				t.Errorf("step %v, %s: %s; the summary has %v", want[i]["step"], col, got[i][col], w)
			}
		}
	}
	if !strings.Contains(page, "in (steer)") || !strings.Contains(page, "cpu → cpu") {
		t.Error("the report does not name the series' method or the engine that ran")
	}
	files, _ := filepath.Glob(filepath.Join(pngs, "*.png"))
	if len(files) != len(reportFigures) {
		t.Errorf("--png wrote %d files; want %d", len(files), len(reportFigures))
	}
}

// TestReportInputs: inputs with little to show still give a page, with a note where a figure
// has nothing to draw; token texts from --vocab are escaped; bad command lines exit 2.
func TestReportInputs(t *testing.T) {
	dir := t.TempDir()
	noAdv := filepath.Join(dir, "no-advantage.arrow")
	if err := testinput.WriteFile(noAdv, testinput.Spec{V: 50, Steps: testinput.StepRows(10, 0, 1), NoAdvantage: true}); err != nil {
		t.Fatal(err)
	}
	masked := filepath.Join(dir, "masked.arrow")
	if err := testinput.WriteFile(masked, testinput.Spec{V: 50, Steps: testinput.StepRows(10, 0, 1, 2), Seed: 4,
		Edit: func(c *papoio.InputColumns) {
			for i := 10; i < 20; i++ {
				c.Batch.Mask[i] = false
			}
		}}); err != nil {
		t.Fatal(err)
	}
	single := filepath.Join(dir, "single.arrow")
	if err := testinput.WriteFile(single, testinput.Spec{V: 50, Steps: testinput.StepRows(10, 3), Seed: 5}); err != nil {
		t.Fatal(err)
	}
	// An output file of zero rows: the schema of analyze's output, no batch.
	empty := filepath.Join(dir, "empty.arrow")
	data, err := testinput.Stream(testinput.Spec{V: 5, Steps: testinput.StepRows(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := papoio.NewReader(bytes.NewReader(data), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	w, err := files.Create(empty, papoio.OutputSchema(r.Schema()), memory.DefaultAllocator)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	vocabPath := filepath.Join(dir, "vocab.json")
	texts := map[string]string{}
	for id := range 50 {
		texts[strconv.Itoa(id)] = "<script>alert(1)</script>"
	}
	vb, _ := json.Marshal(texts)
	if err := os.WriteFile(vocabPath, vb, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		args   []string
		nodata []string
		text   []string
	}{
		{"no advantages", []string{noAdv}, []string{"polarity-distribution", "polarity-steps", "quadrants", "predicted",
			"weights", "weighted-dH", "changed"}, []string{"No trained token carries an advantage"}},
		{"a step with every token masked", []string{masked}, nil, []string{"1 step(s) without trained tokens are left out"}},
		{"a single step", []string{single}, []string{"predicted"}, []string{"needs two steps with trained tokens"}},
		{"zero rows", []string{empty}, reportFigures, []string{"No steps: the input has no token rows."}},
		{"token texts from --vocab", []string{single, "--vocab", vocabPath}, []string{"predicted"},
			[]string{"&#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "report.html")
			args := append([]string{"report", "-o", out, "--device", "cpu"}, tc.args...)
			if code, _, stderr := runCLI(t, args...); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			page := string(data)
			_, nodataOf := reporttest.Figures(page)
			for _, id := range reportFigures {
				nodata := nodataOf[id]
				want := false
				for _, n := range tc.nodata {
					want = want || n == id
				}
				if nodata != want {
					t.Errorf("figure %s: no-data note %v; want %v", id, nodata, want)
				}
			}
			for _, s := range tc.text {
				if !strings.Contains(page, s) {
					t.Errorf("the report lacks %q", s)
				}
			}
			if strings.Contains(page, "<script>alert") {
				t.Error("a token text reached the page unescaped")
			}
		})
	}

	for _, args := range [][]string{{"report", "-o", "x.html"}, {"report", single}, {"report", "-", "-o", "x.html"},
		{"report", single, "-o", "x.html", "--top", "0"}} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("papo %v: exit %d; want 2", args, code)
		}
	}
}

// The browser test. Debian's chromium loads a report from disk, headless, and the test reads
// back what the page recorded (package report's inline script: data-errors, and per figure
// data-width, data-height and data-drawn) with --dump-dom, and what reached the console from
// chromium's log; a screenshot goes to $PAPO_ARTIFACTS, or out/artifacts at the repository's
// root, for people to look at. Without chromium the test is skipped, unless
// PAPO_REQUIRE_BROWSER=1 (CI), where it fails.

// chromiumPath finds the browser or skips the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("PAPO_REQUIRE_BROWSER") == "1" {
		t.Fatal("PAPO_REQUIRE_BROWSER=1 but chromium is not installed (apt-get install chromium)")
	}
	t.Skip("chromium is not installed: the browser check of the report is skipped (apt-get install chromium; CI sets PAPO_REQUIRE_BROWSER=1)")
	return ""
}

// browserCheck is what a page did in the browser.
type browserCheck struct {
	errors  []string          // page-recorded errors and the console's messages
	figures map[string]string // figure → "WxH, N drawn" or why it is empty
	empty   []string          // figures without size or drawing
}

var (
	htmlTagRE   = regexp.MustCompile(`<html[^>]*>`)
	figureTagRE = regexp.MustCompile(`<figure class="fig" data-fig="([^"]+)"([^>]*)>`)
	attrRE      = regexp.MustCompile(`data-([a-z]+)="([^"]*)"`)
)

// checkInBrowser loads page (a file) in headless chromium, with a fresh profile, and returns
// what it did; with screenshot set, it also saves a screenshot there.
func checkInBrowser(t *testing.T, chromium, page, screenshot string) browserCheck {
	t.Helper()
	url := "file://" + page
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=3000", "--window-size=1280,2400"}
	run := func(args ...string) (string, string) {
		cmd := exec.Command(chromium, append(append(base, "--user-data-dir="+t.TempDir()), args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
		return stdout.String(), stderr.String()
	}
	dom, log := run("--dump-dom", url)
	var c browserCheck
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, ":CONSOLE") {
			c.errors = append(c.errors, "console: "+line)
		}
	}
	root := htmlTagRE.FindString(dom)
	attrs := map[string]string{}
	for _, m := range attrRE.FindAllStringSubmatch(root, -1) {
		attrs[m[1]] = html.UnescapeString(m[2])
	}
	if attrs["checked"] != "1" {
		c.errors = append(c.errors, "the page's script did not run to its end (no data-checked)")
	}
	var recorded []string
	if err := json.Unmarshal([]byte(attrs["errors"]), &recorded); err != nil {
		c.errors = append(c.errors, "data-errors is not a JSON list: "+attrs["errors"])
	}
	c.errors = append(c.errors, recorded...)
	c.figures = map[string]string{}
	for _, m := range figureTagRE.FindAllStringSubmatch(dom, -1) {
		fa := map[string]string{}
		for _, a := range attrRE.FindAllStringSubmatch(m[2], -1) {
			fa[a[1]] = a[2]
		}
		w, _ := strconv.Atoi(fa["width"])
		h, _ := strconv.Atoi(fa["height"])
		drawn, _ := strconv.Atoi(fa["drawn"])
		c.figures[m[1]] = fa["width"] + "x" + fa["height"] + ", " + fa["drawn"] + " drawn"
		// A figure is an SVG with a size and drawn elements, or a visible note of no data.
		if w == 0 || h == 0 || (fa["nodata"] != "1" && drawn == 0) {
			c.empty = append(c.empty, m[1])
		}
	}
	if screenshot != "" {
		run("--screenshot="+screenshot, url)
		if st, err := os.Stat(screenshot); err != nil || st.Size() == 0 {
			t.Fatalf("chromium wrote no screenshot to %s", screenshot)
		}
	}
	return c
}

// artifactDir is where the browser test leaves its screenshots: $PAPO_ARTIFACTS, else
// out/artifacts at the repository's root (ignored by git).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PAPO_ARTIFACTS")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(wd, "..", "..", "out", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestReportBrowser: the demo's report in a real browser: no console errors, every figure has a
// size and drawn elements, and a screenshot is kept.
func TestReportBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	page := reportDemo(t, t.TempDir())
	shot := filepath.Join(artifactDir(t), "report.png")
	c := checkInBrowser(t, chromium, page, shot)
	for _, e := range c.errors {
		t.Errorf("in the browser: %s", e)
	}
	if len(c.figures) != len(reportFigures) {
		t.Errorf("the browser found %d figures; want %d", len(c.figures), len(reportFigures))
	}
	if len(c.empty) > 0 {
		t.Errorf("empty figures in the browser: %v (%v)", c.empty, c.figures)
	}
	t.Logf("figures: %v; screenshot: %s", c.figures, shot)
}

// TestReportBrowserCatches: the browser check fails a page with a script error, a console
// error, a fetch from the network and an empty figure; each is reported.
func TestReportBrowserCatches(t *testing.T) {
	chromium := chromiumPath(t)
	dir := t.TempDir()
	data, err := os.ReadFile(reportDemo(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(data), "</body>", `<script>notDefined();</script>`+
		`<script>console.error("went wrong")</script><img src="http://127.0.0.1:9/x.png"></body>`, 1)
	// Empty the first figure's drawing.
	broken = regexp.MustCompile(`(?s)(<figure class="fig" data-fig="trajectory">\s*)<svg.*?</svg>`).ReplaceAllString(broken, "$1<svg></svg>")
	page := filepath.Join(dir, "broken.html")
	if err := os.WriteFile(page, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	c := checkInBrowser(t, chromium, page, "")
	all := strings.Join(c.errors, "\n")
	for _, want := range []string{"notDefined is not defined", "went wrong", "http://127.0.0.1:9/x.png"} {
		if !strings.Contains(all, want) {
			t.Errorf("the browser check missed %q; it found:\n%s", want, all)
		}
	}
	if len(c.empty) != 1 || c.empty[0] != "trajectory" {
		t.Errorf("empty figures %v; want [trajectory] (%v)", c.empty, c.figures)
	}
}
