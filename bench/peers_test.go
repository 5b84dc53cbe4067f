package bench

import (
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
)

func TestParseRoofline(t *testing.T) {
	for _, c := range []struct {
		name, out string
		want      []RooflineISA
		err       bool
	}{
		{"avx2 only", "C roofline of the four sums, V = 151936, 256 rows, best of 3\n" +
			"avx2+fma  1 thread     7754 tokens/s   2 threads    15258 tokens/s   worst relative error of H 6.2e-10 (unpeaked rows)\n" +
			"avx512f   not supported by this CPU\n",
			[]RooflineISA{{ISA: "avx2+fma", Supported: true, OneThread: 7754, AllThreads: 15258, Threads: 2, WorstRelErrH: 6.2e-10}, {ISA: "avx512f"}}, false},
		{"both", "avx2+fma  1 thread    10259 tokens/s   16 threads   90000 tokens/s   worst relative error of H 6.0e-10 (unpeaked rows)\n" +
			"avx512f   1 thread    17770 tokens/s   16 threads  150000 tokens/s   worst relative error of H 5.0e-10 (unpeaked rows)\n",
			[]RooflineISA{{ISA: "avx2+fma", Supported: true, OneThread: 10259, AllThreads: 90000, Threads: 16, WorstRelErrH: 6e-10},
				{ISA: "avx512f", Supported: true, OneThread: 17770, AllThreads: 150000, Threads: 16, WorstRelErrH: 5e-10}}, false},
		{"nothing", "roofline: V must be a positive multiple of 32\n", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := parseRoofline(c.out)
			if c.err {
				if err == nil {
					t.Fatalf("parsed %+v from output without results", r)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(r.ISAs) != len(c.want) {
				t.Fatalf("%d ISAs, want %d: %+v", len(r.ISAs), len(c.want), r.ISAs)
			}
			for i, w := range c.want {
				if r.ISAs[i] != w {
					t.Errorf("ISA %d: %+v, want %+v", i, r.ISAs[i], w)
				}
			}
			best, ok := r.Best()
			if want := c.want[len(c.want)-1]; !ok || (want.Supported && best.ISA != want.ISA) {
				t.Errorf("best %+v, %v", best, ok)
			}
		})
	}
}

// TestRunRoofline compiles and runs the embedded C kernels where a C compiler is installed: their
// H must agree with a float64 pass, and the lines must parse.
func TestRunRoofline(t *testing.T) {
	if _, err := findCC(); err != nil {
		t.Skipf("no C compiler: %v", err)
	}
	r, err := RunRoofline(context.Background(), 4096, 8, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	best, ok := r.Best()
	if !ok || !(best.OneThread > 0) || !(best.AllThreads > 0) || best.Threads != 2 {
		t.Fatalf("roofline %+v", r)
	}
	for _, isa := range r.ISAs {
		if isa.Supported && !(isa.WorstRelErrH < 1e-6) {
			t.Errorf("%s: worst relative error of H %g", isa.ISA, isa.WorstRelErrH)
		}
	}
	if _, err := RunRoofline(context.Background(), 1000, 8, 1, 1); err == nil {
		t.Error("V = 1000 (not a multiple of 32) accepted")
	}
}

func TestMaxDiff(t *testing.T) {
	ours := []float32{1, 2, 3}
	for _, c := range []struct {
		name   string
		theirs *[]float64
		want   float64
		err    bool
	}{
		{"equal", &[]float64{1, 2, 3}, 0, false},
		{"off", &[]float64{1, 2.5, 2.75}, 0.5, false},
		{"NaN", &[]float64{1, math.NaN(), 3}, math.Inf(1), false},
		{"short", &[]float64{1, 2}, 0, true},
		{"missing", nil, 0, true},
	} {
		got, err := maxDiff(c.theirs, ours)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%s: %v, %v; want %v, error %v", c.name, got, err, c.want, c.err)
		}
	}
}

func TestParsePeers(t *testing.T) {
	ours := &polarity.Result{Entropy: []float32{1, 2}, Logprob: []float32{-1, -2}}
	out := `{"peer": "NumPy", "threads": 1, "seconds": 0.5, "entropy": [1.0, 2.0001], "logprob": [-1.0, -2.0], "version": "1.24"}
{"peer": "torch.sum", "threads": 2, "seconds": 0.25, "version": "2.0"}
{"peer": "torch verl-style", "skipped": "no torch"}
`
	peers, err := parsePeers([]byte(out), ours, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(peers) != 3 {
		t.Fatalf("%d peers", len(peers))
	}
	if p := peers[0]; !p.Checked || p.TokensPerSec != 4 || p.BytesPerSec != 2000 || math.Abs(p.MaxDiffH-1e-4) > 1e-9 || !p.Agrees() {
		t.Errorf("NumPy: %+v", p)
	}
	if p := peers[1]; p.Checked || p.Threads != 2 || p.BytesPerSec != 4000 {
		t.Errorf("torch.sum: %+v", p)
	}
	if p := peers[2]; p.Skipped != "no torch" || p.TokensPerSec != 0 {
		t.Errorf("skipped: %+v", p)
	}
	for _, bad := range []string{
		"",
		"not json",
		`{"threads": 1, "seconds": 1}`,
		`{"peer": "NumPy", "threads": 1, "seconds": 0}`,
		`{"peer": "NumPy", "threads": 1, "seconds": 1, "entropy": [1], "logprob": [1, 2]}`,
	} {
		if _, err := parsePeers([]byte(bad), ours, 1000); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, far := range []Peer{{Checked: true, MaxDiffH: 2 * PeerToleranceH}, {Checked: true, MaxDiffLogprob: 2 * PeerToleranceLogprob}} {
		if far.Agrees() {
			t.Errorf("a peer off by twice the tolerance agrees: %+v", far)
		}
	}
}

// peerPython is an interpreter with numpy (and torch if PAPO_REQUIRE_TORCH=1), or skips:
// $PAPO_PYTHON, the project's environment (python/.venv, as .ci/run makes it), python3.
func peerPython(t *testing.T) string {
	t.Helper()
	py, err := FindPython(context.Background(), os.Getenv("PAPO_PYTHON"), "../python/.venv/bin/python", "python3", "/usr/bin/python3")
	if err == nil && os.Getenv("PAPO_REQUIRE_TORCH") == "1" {
		if out, err2 := exec.Command(py, "-c", "import torch").CombinedOutput(); err2 != nil {
			err = err2
			t.Logf("%s", out)
		}
	}
	if err != nil {
		if os.Getenv("PAPO_REQUIRE_TORCH") == "1" {
			t.Fatalf("PAPO_REQUIRE_TORCH=1 and no Python with numpy and torch: %v", err)
		}
		t.Skipf("no Python for the peers: %v", err)
	}
	return py
}

// TestRunPeers runs the peers script on a small workload: each peer's entropy and log-prob must
// agree with papo's (so a broken peer formula, or papo's, fails here), and each must be timed.
func TestRunPeers(t *testing.T) {
	py := peerPython(t)
	w := NewWorkload(6, 5000, polarity.Float32, 2)
	var ours polarity.Result
	if err := polarity.NewCPU(1).Compute(context.Background(), &w.Batch, w.Params, &ours); err != nil {
		t.Fatal(err)
	}
	peers, err := RunPeers(context.Background(), py, w, &ours, []int{1, 2}, 1)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, p := range peers {
		if p.Skipped != "" {
			t.Logf("%s skipped: %s", p.Name, p.Skipped)
			continue
		}
		seen[p.Name]++
		if !(p.TokensPerSec > 0) {
			t.Errorf("%s: %v tokens/s", p.Name, p.TokensPerSec)
		}
		if p.Name != "torch.sum" && !p.Agrees() {
			t.Errorf("%s (%d threads): max |ΔH| %g, |Δ log p| %g", p.Name, p.Threads, p.MaxDiffH, p.MaxDiffLogprob)
		}
	}
	want := map[string]int{"NumPy": 1}
	if os.Getenv("PAPO_REQUIRE_TORCH") == "1" {
		want = map[string]int{"NumPy": 1, "torch verl-style": 2, "torch TRL-style": 2, "torch.sum": 2}
	}
	for name, n := range want {
		if seen[name] != n {
			t.Errorf("%s ran %d times, want %d (once per thread count)", name, seen[name], n)
		}
	}

	// A papo whose entropy is off by 0.01 must be caught by every peer.
	wrong := ours
	wrong.Entropy = append([]float32(nil), ours.Entropy...)
	wrong.Entropy[3] += 0.01
	peers, err = RunPeers(context.Background(), py, w, &wrong, []int{1}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		if p.Checked && p.Agrees() {
			t.Errorf("%s agrees with an entropy 0.01 off", p.Name)
		}
	}
	if _, err := RunPeers(context.Background(), py, NewWorkload(2, 64, polarity.BFloat16, 1), &ours, []int{1}, 1); err == nil {
		t.Error("a bfloat16 workload was given to the peers")
	}
}

func TestInsertRows(t *testing.T) {
	rows := []string{"| r1 |", "| r2 |"}
	for _, c := range []struct {
		name, doc string
		check     func(string) bool
	}{
		{"no section", "# Results\n\n## CPU\n\ntext\n", func(s string) bool {
			return strings.HasPrefix(s, "# Results\n\n## CPU\n\ntext\n\n"+recordSection+"\n") && strings.HasSuffix(s, recordHeader+"| r1 |\n| r2 |\n")
		}},
		{"table then section", "# R\n\n" + recordSection + "\n\nabout\n\n" + recordHeader + "| old |\n\n## GPU\n\ngpu text\n", func(s string) bool {
			return s == "# R\n\n"+recordSection+"\n\nabout\n\n"+recordHeader+"| old |\n| r1 |\n| r2 |\n\n## GPU\n\ngpu text\n"
		}},
		{"table at the end, no newline", recordSection + "\n\n" + recordHeader + "| old |", func(s string) bool {
			return s == recordSection+"\n\n"+recordHeader+"| old |\n| r1 |\n| r2 |\n"
		}},
		{"section without a table", recordSection + "\n\ntext\n\n## Next\n", func(s string) bool {
			return s == recordSection+"\n\ntext\n\n"+recordHeader+"| r1 |\n| r2 |\n\n## Next\n"
		}},
	} {
		if got := insertRows(c.doc, rows); !c.check(got) {
			t.Errorf("%s:\n%s", c.name, got)
		}
	}
}

func testReport() *Report {
	return &Report{Date: "2026-12-03", CPU: "Test CPU", Threads: 2, V: 1000, Entries: []Entry{
		{Kind: Memory, Name: "read", Threads: 1, BytesPerSec: 20e9},
		{Kind: Memory, Name: "read", Threads: 2, BytesPerSec: 30e9},
		{Kind: CKernel, Name: "C avx2+fma", Dtype: "float32", V: 1000, Threads: 1, TokensPerSec: 1000, BytesPerSec: 4e6},
		{Kind: CKernel, Name: "C avx2+fma", Dtype: "float32", V: 1000, Threads: 2, TokensPerSec: 2000, BytesPerSec: 8e6},
		{Kind: Engine, Name: "cpu", Dtype: "float32", V: 1000, Threads: 1, TokensPerSec: 900, BytesPerSec: 3.6e6},
		{Kind: Engine, Name: "cpu", Dtype: "float32", V: 500, Threads: 2, TokensPerSec: 3600, BytesPerSec: 7.2e6},
		{Kind: EndToEnd, Name: "analyze", Dtype: "float32", V: 1000, Threads: 1, TokensPerSec: 800, BytesPerSec: 3.2e6},
		{Kind: EndToEnd, Name: "analyze", Dtype: "float32", V: 1000, Threads: 2, TokensPerSec: 1500, BytesPerSec: 6e6},
		{Kind: PeerKind, Name: "torch verl-style", Dtype: "float32", V: 1000, Threads: 1, TokensPerSec: 80, BytesPerSec: 3.2e5},
		{Kind: PeerKind, Name: "torch verl-style", Dtype: "float32", V: 1000, Threads: 2, TokensPerSec: 100, BytesPerSec: 4e5},
		{Kind: PeerKind, Name: "NumPy", Dtype: "float32", V: 1000, Threads: 1, TokensPerSec: 200, BytesPerSec: 8e5},
	}}
}

func TestReportFractions(t *testing.T) {
	r := testReport()
	for _, c := range []struct {
		i                  int
		roofline, read, sp float64 // 0: none
	}{
		{0, 0, 0, 0},
		{2, 1, 4e6 / 20e9, 0},
		{4, 0.9, 3.6e6 / 20e9, 0},
		{5, 0.9, 7.2e6 / 30e9, 0}, // V = 500: compared in logits/s
		{7, 0.75, 6e6 / 30e9, 0},
		{8, 0.08, 3.2e5 / 20e9, 10}, // papo analyze 800 ÷ 80
		{9, 0.05, 4e5 / 30e9, 15},
		{10, 0.2, 8e5 / 20e9, 4},
	} {
		e := &r.Entries[c.i]
		f, ok := r.FractionOfRoofline(e)
		if (c.roofline != 0) != ok || math.Abs(f-c.roofline) > 1e-12 {
			t.Errorf("entry %d: fraction of roofline %v, %v; want %v", c.i, f, ok, c.roofline)
		}
		m, ok := r.FractionOfRead(e)
		if (c.read != 0) != ok || math.Abs(m-c.read) > 1e-12 {
			t.Errorf("entry %d: fraction of read %v, %v; want %v", c.i, m, ok, c.read)
		}
		s, ok := r.Speedup(e)
		if (c.sp != 0) != ok || math.Abs(s-c.sp) > 1e-12 {
			t.Errorf("entry %d: speedup %v, %v; want %v", c.i, s, ok, c.sp)
		}
	}
	rows := r.RecordRows()
	want := []string{
		"| 2026-12-03 | Test CPU | 1 | 20.0 | 1,000 (avx2+fma) | 900 (90 %) | 800 (80 %) | – / – | 80 (10.0×) | – | 200 (4.0×) |",
		"| 2026-12-03 | Test CPU | 2 | 30.0 | 2,000 (avx2+fma) | – | 1,500 (75 %) | – / – | 100 (15.0×) | – | – |",
	}
	if len(rows) != 2 || rows[0] != want[0] || rows[1] != want[1] {
		t.Errorf("record rows\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
	var b strings.Builder
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "\n"); n != 2+len(r.Entries) {
		t.Errorf("markdown has %d lines for %d entries:\n%s", n, len(r.Entries), b.String())
	}
	if !strings.Contains(b.String(), "| peer | torch verl-style | float32 | 1000 | 1 | 80 | 0.00 | 8 % | 0 % | 10.0× |") {
		t.Errorf("markdown:\n%s", b.String())
	}

	path := filepath.Join(t.TempDir(), "RESULTS.md")
	if err := os.WriteFile(path, []byte("# Benchmark results\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := r.AppendRecord(path); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := os.ReadFile(path)
	if strings.Count(string(data), recordSection) != 1 || strings.Count(string(data), want[0]) != 2 {
		t.Errorf("two appends:\n%s", data)
	}
	if err := r.AppendRecord(filepath.Join(t.TempDir(), "missing.md")); err == nil {
		t.Error("appended to a missing file")
	}
}

func TestCommas(t *testing.T) {
	for x, want := range map[float64]string{0: "0", 7: "7", 999.6: "1,000", 12345: "12,345", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := commas(x); got != want {
			t.Errorf("commas(%v) = %q, want %q", x, got, want)
		}
	}
}

// TestKeepFaster: a repeated measurement replaces the entry only when faster, and a new one is
// added; the percentages are then of the faster C figure.
func TestKeepFaster(t *testing.T) {
	r := &Report{V: 64}
	c := func(tps float64, n int) Entry {
		return Entry{Kind: CKernel, Name: "C avx2+fma", Dtype: "float32", V: 64, Threads: n, TokensPerSec: tps}
	}
	r.KeepFaster(c(100, 1))
	r.KeepFaster(c(80, 1))  // slower: kept out
	r.KeepFaster(c(120, 2)) // another thread count: added
	r.KeepFaster(c(150, 2)) // faster: replaces
	if len(r.Entries) != 2 || r.Entries[0].TokensPerSec != 100 || r.Entries[1].TokensPerSec != 150 {
		t.Fatalf("entries %+v; want 100 on 1 thread and 150 on 2", r.Entries)
	}
	if e, ok := r.roofline(2); !ok || e.TokensPerSec != 150 {
		t.Fatalf("the 2-thread roofline is %+v; want the faster, 150", e)
	}
}
