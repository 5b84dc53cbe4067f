package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/files"
	"github.com/entropy-polarity/papo/polarity"
)

// runCLI runs papo in-process and returns its exit status, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// writeInput writes an input file with the given columns.
func writeInput(t *testing.T, path string, cols *papoio.InputColumns, meta map[string]string) {
	t.Helper()
	mem := memory.DefaultAllocator
	l := cols.Batch.Logits
	schema := papoio.InputSchema(l.V, l.Dtype, *cols, meta)
	w, err := files.Create(path, schema, mem)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := papoio.BuildInput(mem, schema, cols)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Release()
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// readFloat32Columns reads named float32 columns of an Arrow IPC file, as float64.
func readColumns(t *testing.T, path string, names ...string) map[string][]float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string][]float64{}
	for i := range r.NumRecords() {
		rec, err := r.Record(i)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names {
			idx := rec.Schema().FieldIndices(name)
			if len(idx) != 1 {
				t.Fatalf("%s: no column %q in %v", path, name, rec.Schema())
			}
			col := rec.Column(idx[0])
			for j := range col.Len() {
				v := math.NaN()
				if col.IsValid(j) {
					switch c := col.(type) {
					case *array.Float32:
						v = float64(c.Value(j))
					case *array.Float64:
						v = c.Value(j)
					case *array.Int64:
						v = float64(c.Value(j))
					default:
						t.Fatalf("column %s has type %s", name, col.DataType())
					}
				}
				out[name] = append(out[name], v)
			}
		}
	}
	return out
}

// tableSteps returns the step column of the summary table printed on stdout.
func tableSteps(stdout string) []int {
	var steps []int
	for _, line := range strings.Split(stdout, "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		if step, err := strconv.Atoi(fields[0]); err == nil {
			steps = append(steps, step)
		}
	}
	return steps
}

// golden is docs/MATH.md §4: z = [2, 1, 0.1, −1], η = 1.
func goldenInput(tokens []int32, adv []float64) *papoio.InputColumns {
	z := []float32{2, 1, 0.1, -1}
	var logits []float32
	for range tokens {
		logits = append(logits, z...)
	}
	return &papoio.InputColumns{Batch: polarity.Batch{
		Logits:    polarity.Logits{Dtype: polarity.Float32, V: 4, F32: logits},
		TokenID:   tokens,
		Advantage: adv,
	}}
}

func TestGoldenThroughCLI(t *testing.T) {
	const h1, c1 = 0.960672790130348, 0.166106807355343
	tests := []struct {
		name string
		args []string
		h    float64
		dH   []float64 // rows: (a=0, A=+1), (a=0, A=−1), (a=3, A=+1), (a=3, A=−1)
	}{
		{"tau=1", nil, h1, []float64{-0.160174666538, 0.160174666538, 0.245164568451, -0.245164568451}},
		{"tau=0.7", []string{"--temperature", "0.7"}, 0.717773779666263,
			[]float64{-0.244030795198, 0.244030795198, 0.518871031578, -0.518871031578}},
		{"natural gradient", []string{"--natural-gradient"}, h1,
			[]float64{-0.51135978775, 0.51135978775, 2.48864021225, -2.48864021225}},
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "golden.arrow")
	writeInput(t, in, goldenInput([]int32{0, 0, 3, 3}, []float64{1, -1, 1, -1}), nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.arrow")
			args := append([]string{"analyze", in, "-o", out, "--device", "cpu", "--quiet"}, tc.args...)
			code, _, stderr := runCLI(t, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			got := readColumns(t, out, "entropy", "predicted_dH", "correction", "weight", "reweighted_advantage")
			// Outputs are float32 computed from float32 logits: 2e-6 relative is a few float32 ulps
			// on top of the rounding of z to float32 (0.1 is not exact).
			const tol = 2e-6
			for i := range 4 {
				if d := math.Abs(got["entropy"][i]-tc.h) / tc.h; d > tol {
					t.Errorf("row %d: entropy %v, want %v (rel %v)", i, got["entropy"][i], tc.h, d)
				}
				if d := math.Abs(got["predicted_dH"][i]-tc.dH[i]) / math.Abs(tc.dH[i]); d > tol {
					t.Errorf("row %d: predicted_dH %v, want %v (rel %v)", i, got["predicted_dH"][i], tc.dH[i], d)
				}
				if got["weight"][i] != 1 {
					t.Errorf("row %d: analyze wrote weight %v, want 1", i, got["weight"][i])
				}
			}
			if tc.name == "tau=1" && math.Abs(got["correction"][0]-c1)/c1 > tol {
				t.Errorf("correction %v, want %v", got["correction"][0], c1)
			}
		})
	}
}

func TestAnalyzeWritesEveryFormat(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.arrows")
	code, _, stderr := runCLI(t, "gen", "-o", in, "--vocab", "1000", "--tokens", "64", "--steps", "3", "--dtype", "bfloat16")
	if code != 0 {
		t.Fatalf("gen: exit %d: %s", code, stderr)
	}
	for _, ext := range []string{".arrow", ".arrows", ".parquet", ".csv", ".jsonl"} {
		out := filepath.Join(dir, "out"+ext)
		code, stdout, stderr := runCLI(t, "analyze", in, "-o", out, "--device", "cpu")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", ext, code, stderr)
		}
		if st, err := os.Stat(out); err != nil || st.Size() == 0 {
			t.Fatalf("%s: no output: %v", ext, err)
		}
		// Three steps, three table rows in step order, and the engine named on stderr.
		if steps := tableSteps(stdout); !slices.Equal(steps, []int{0, 1, 2}) || !strings.Contains(stdout, "mean H") {
			t.Errorf("%s: table rows for steps %v, want [0 1 2]:\n%s", ext, steps, stdout)
		}
		if !strings.Contains(stderr, "engine cpu") {
			t.Errorf("stderr does not name the engine: %s", stderr)
		}
	}
	rows := readColumns(t, filepath.Join(dir, "out.arrow"), "step", "entropy")
	if len(rows["step"]) != 192 {
		t.Fatalf("%d output rows, want 3 × 64", len(rows["step"]))
	}
	for i, s := range rows["step"] {
		if want := float64(i / 64); s != want {
			t.Fatalf("row %d: step %v, want %v (input order)", i, s, want)
		}
	}
}

func TestBadInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.arrow")
	writeInput(t, good, goldenInput([]int32{0, 3}, []float64{1, -1}), nil)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.arrow")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	empty := filepath.Join(dir, "empty.arrow")
	os.WriteFile(empty, nil, 0o644)
	outOfRange := filepath.Join(dir, "range.arrow")
	writeInput(t, outOfRange, goldenInput([]int32{0, 7}, []float64{1, 1}), nil)
	nanRow := filepath.Join(dir, "nan.arrow")
	cols := goldenInput([]int32{0, 1, 2}, []float64{1, 1, 1})
	cols.Batch.Logits.F32[4*2+1] = float32(math.NaN())
	writeInput(t, nanRow, cols, nil)
	infRow := filepath.Join(dir, "inf.arrow")
	cols = goldenInput([]int32{0, 1}, []float64{1, 1})
	cols.Batch.Logits.F32[4+2] = float32(math.Inf(1))
	writeInput(t, infRow, cols, nil)
	zeroRows := filepath.Join(dir, "zero.arrow")
	writeInput(t, zeroRows, goldenInput(nil, nil), nil)

	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of stderr
	}{
		{"no arguments", []string{"analyze"}, 2, []string{"input"}},
		{"unknown flag", []string{"analyze", good, "--bogus"}, 2, []string{"bogus"}},
		{"bad device", []string{"analyze", good, "--device", "tpu"}, 2, []string{"tpu"}},
		{"bad temperature", []string{"analyze", good, "--temperature", "-1", "--device", "cpu"}, 2, []string{"temperature"}},
		{"missing file", []string{"analyze", filepath.Join(dir, "nope.arrow"), "--device", "cpu"}, 1, []string{"nope.arrow"}},
		{"truncated", []string{"analyze", truncated, "--device", "cpu"}, 1, []string{"truncated.arrow"}},
		{"empty file", []string{"analyze", empty, "--device", "cpu"}, 1, []string{"empty.arrow"}},
		{"zero rows", []string{"analyze", zeroRows, "--device", "cpu"}, 1, []string{"zero.arrow", "no token rows"}},
		{"token out of range", []string{"analyze", outOfRange, "--device", "cpu"}, 1, []string{"row 1", "token_id", "7"}},
		{"NaN logit", []string{"analyze", nanRow, "--device", "cpu"}, 1, []string{"nan.arrow", "batch 0, row 2", "logits", "NaN"}},
		{"+Inf logit", []string{"analyze", infRow, "--device", "cpu"}, 1, []string{"inf.arrow", "row 1", "logits"}},
		{"cuda without a device", []string{"analyze", good, "--device", "cuda"}, 1, []string{"cuda"}},
		{"unknown command", []string{"frobnicate"}, 2, []string{"unknown command"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.arrow")
			args := append(append([]string{}, tc.args...), "-o", out)
			if tc.name == "no arguments" || tc.name == "unknown command" {
				args = tc.args
			}
			code, _, stderr := runCLI(t, args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q: %s", w, stderr)
				}
			}
			if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
				t.Errorf("a trace reached the user: %s", stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a failed run left an output file")
			}
			matches, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*tmp*"))
			if len(matches) > 0 {
				t.Errorf("a failed run left temporary files: %v", matches)
			}
		})
	}
}

func TestDeviceAutoFallsBackWhenProbeFails(t *testing.T) {
	// A papo-cuda whose probe fails as the real one does on a GPU-less host, and that leaves a
	// mark when it runs.
	bin := t.TempDir()
	mark := filepath.Join(bin, "ran")
	fake := "#!/bin/sh\ntouch " + mark + "\necho 'papo-cuda: no usable CUDA device: CUDA_ERROR_NO_DEVICE' >&2\nexit 3\n"
	if err := os.WriteFile(filepath.Join(bin, "papo-cuda"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in.arrow")
	writeInput(t, in, goldenInput([]int32{0, 3, 1}, []float64{1, -1, 0.5}), nil)
	// On PATH only, it is never run: --device auto hands over only to the papo-cuda next to
	// papo or to $PAPO_CUDA.
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("PAPO_CUDA", "")
	code, _, stderr := runCLI(t, "analyze", in, "-o", filepath.Join(dir, "path.arrow"), "--device", "auto", "--quiet")
	if _, err := os.Stat(mark); code != 0 || err == nil || !strings.Contains(stderr, "PATH is not searched") {
		t.Fatalf("papo-cuda on PATH: exit %d, ran %v, stderr %s", code, err == nil, stderr)
	}
	t.Setenv("PAPO_CUDA", "papo-cuda")
	if code, _, stderr := runCLI(t, "analyze", in, "--device", "cuda"); code != 1 || !strings.Contains(stderr, "PAPO_CUDA=\"papo-cuda\": want the absolute path") {
		t.Fatalf("a relative PAPO_CUDA: exit %d, stderr %s", code, stderr)
	}
	t.Setenv("PAPO_CUDA", filepath.Join(bin, "papo-cuda"))
	outs := map[string]string{}
	for _, device := range []string{"auto", "cpu"} {
		out := filepath.Join(dir, device+".arrow")
		code, _, stderr := runCLI(t, "analyze", in, "-o", out, "--device", device)
		if code != 0 {
			t.Fatalf("--device %s: exit %d: %s", device, code, stderr)
		}
		if device == "auto" && !strings.Contains(stderr, "using the CPU engine") || !strings.Contains(stderr, "engine cpu") {
			t.Errorf("--device %s: stderr does not say the CPU engine ran and why: %s", device, stderr)
		}
		if device == "auto" && !strings.Contains(stderr, "CUDA_ERROR_NO_DEVICE") {
			t.Errorf("the fallback line does not carry the probe's reason: %s", stderr)
		}
		outs[device] = out
	}
	a, _ := os.ReadFile(outs["auto"])
	c, _ := os.ReadFile(outs["cpu"])
	if !bytes.Equal(a, c) {
		t.Error("--device auto (fallen back) and --device cpu wrote different outputs")
	}
	// --device cuda fails instead of falling back.
	code, _, stderr = runCLI(t, "analyze", in, "--device", "cuda")
	if code != 1 || !strings.Contains(stderr, "CUDA_ERROR_NO_DEVICE") {
		t.Errorf("--device cuda: exit %d, stderr %s", code, stderr)
	}
}

func TestReweightStateAcrossRuns(t *testing.T) {
	dir := t.TempDir()
	all := filepath.Join(dir, "all.arrow")
	if code, _, stderr := runCLI(t, "gen", "-o", all, "--vocab", "500", "--tokens", "96", "--steps", "4", "--seed", "3"); code != 0 {
		t.Fatalf("gen: %s", stderr)
	}
	// The same rollouts, cut in two files at a step boundary: steps 0–1 and 2–3.
	first, second := filepath.Join(dir, "first.arrow"), filepath.Join(dir, "second.arrow")
	splitBySteps(t, all, first, second, 2)
	flags := []string{"--device", "cpu", "--quiet", "--phase-mode", "target", "--target-entropy", "2"}
	whole := filepath.Join(dir, "whole.arrow")
	code, _, stderr := runCLI(t, append([]string{"reweight", all, "-o", whole, "--state", filepath.Join(dir, "s1.json")}, flags...)...)
	if code != 0 {
		t.Fatalf("reweight: %s", stderr)
	}
	want := readColumns(t, whole, "step", "weight", "reweighted_advantage")
	changed := 0
	for _, w := range want["weight"] {
		if !(w > 0) {
			t.Fatalf("weight %v ≤ 0", w)
		}
		if w != 1 {
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("PAPO with entropy below its target changed no weight")
	}

	// Run 1 saves the state after steps 0–1; run 2, a new process in real life, resumes it.
	state := filepath.Join(dir, "s2.json")
	part1, part2 := filepath.Join(dir, "part1.arrow"), filepath.Join(dir, "part2.arrow")
	var afterFirst []byte
	for _, r := range [][2]string{{first, part1}, {second, part2}} {
		if code, _, stderr := runCLI(t, append([]string{"reweight", r[0], "-o", r[1], "--state", state}, flags...)...); code != 0 {
			t.Fatalf("reweight %s: %s", r[0], stderr)
		}
		if afterFirst == nil {
			afterFirst, _ = os.ReadFile(state)
		}
	}
	got := readColumns(t, part1, "weight", "reweighted_advantage")
	got2 := readColumns(t, part2, "weight", "reweighted_advantage")
	for _, col := range []string{"weight", "reweighted_advantage"} {
		joined := append(got[col], got2[col]...)
		if len(joined) != len(want[col]) {
			t.Fatalf("%s: %d rows after the restart, %d in one run", col, len(joined), len(want[col]))
		}
		for i := range joined {
			if joined[i] != want[col][i] && !(math.IsNaN(joined[i]) && math.IsNaN(want[col][i])) {
				t.Fatalf("%s row %d: %v after the restart, %v in one run", col, i, joined[i], want[col][i])
			}
		}
	}
	// Steps the state has already seen (a trainer resumed from a checkpoint) roll the run back
	// to just before the first of them, and say so: the output and the state are those of the
	// first run.
	again := filepath.Join(dir, "again.arrow")
	code, _, stderr = runCLI(t, append([]string{"reweight", first, "-o", again, "--state", state}, flags...)...)
	if code != 0 || !strings.Contains(stderr, "step 0 comes again: the run state goes back to just before it, forgetting 4 processed step(s) (0 … 3)") {
		t.Fatalf("steps 0–1 on a state at step 3: exit %d: %s", code, stderr)
	}
	if a, b := readFileBytes(t, again), readFileBytes(t, part1); !bytes.Equal(a, b) {
		t.Error("steps 0–1 after a rollback: the output differs from the first run's")
	}
	if got := readFileBytes(t, state); !bytes.Equal(got, afterFirst) {
		t.Errorf("steps 0–1 after a rollback: the state differs from the first run's:\n%s\nwant\n%s", got, afterFirst)
	}
	// Other parameters against the saved state are refused unless --reset-state.
	code, _, stderr = runCLI(t, "reweight", all, "-o", filepath.Join(dir, "other.arrow"), "--state", state, "--device", "cpu", "--quiet", "--lambda", "0.3", "--phase-mode", "target", "--target-entropy", "2")
	if code == 0 || !strings.Contains(stderr, "lambda") {
		t.Fatalf("changed λ against a saved state: exit %d: %s", code, stderr)
	}
}

func readFileBytes(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// splitBySteps copies the batches of in with step < cut to a, the others to b.
func splitBySteps(t *testing.T, in, a, b string, cut int64) {
	t.Helper()
	mem := memory.DefaultAllocator
	r, err := files.Open(in, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	wa, err := files.Create(a, r.Schema(), mem)
	if err != nil {
		t.Fatal(err)
	}
	wb, err := files.Create(b, r.Schema(), mem)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		batch := r.Batch()
		first, last := batch.Step[0], batch.Step[len(batch.Step)-1]
		if (first < cut) != (last < cut) {
			t.Fatalf("batch %d spans the cut", batch.Index)
		}
		w := wb
		if first < cut {
			w = wa
		}
		if err := w.Write(batch.Record); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if err := wa.Close(); err != nil {
		t.Fatal(err)
	}
	if err := wb.Close(); err != nil {
		t.Fatal(err)
	}
}

// --quiet prints nothing when the command succeeds (a trainer that runs papo every step wants
// no line per call); without it the command says which engine ran and how fast.
func TestQuiet(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.arrow")
	writeInput(t, in, goldenInput([]int32{0, 3, 1}, []float64{1, -1, 0.5}), nil)
	for _, cmd := range []string{"analyze", "reweight"} {
		args := []string{cmd, in, "-o", filepath.Join(dir, cmd+".arrow"), "--device", "cpu"}
		if cmd == "reweight" {
			args = append(args, "--state", filepath.Join(dir, "s.json"))
		}
		code, stdout, stderr := runCLI(t, append(slices.Clone(args), "--quiet")...)
		if code != 0 || stdout != "" || stderr != "" {
			t.Errorf("%s --quiet: exit %d, stdout %q, stderr %q; want nothing", cmd, code, stdout, stderr)
		}
		if code, _, stderr := runCLI(t, args...); code != 0 || !strings.Contains(stderr, "on engine cpu") {
			t.Errorf("%s: exit %d, stderr %q; want the engine and throughput line", cmd, code, stderr)
		}
	}
}

func TestReweightNeedsAdvantages(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.arrow")
	if err := testinput.WriteFile(in, testinput.Spec{V: 17, Steps: testinput.StepRows(8, 0, 1), NoAdvantage: true}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.arrow")
	code, _, stderr := runCLI(t, "reweight", in, "-o", out, "--state", filepath.Join(dir, "s.json"), "--device", "cpu")
	if code != 1 || !strings.Contains(stderr, in+": the input has no advantage column") {
		t.Errorf("reweight without advantages: exit %d, stderr %s", code, stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("reweight without advantages wrote an output")
	}
	if code, _, stderr := runCLI(t, "analyze", in, "-o", out, "--device", "cpu", "--quiet"); code != 0 {
		t.Errorf("analyze without advantages: exit %d: %s", code, stderr)
	}
}

// The run state locks the clip range and the natural-gradient choice, wherever they come from
// (flags or the file's metadata), and refuses a run that changes one; τ and η it records with
// each step.
func TestStateRecordsSignalParameters(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.arrow")
	spec := testinput.Spec{V: 17, Steps: testinput.StepRows(8, 0, 1), Meta: map[string]string{papoio.MetaClipHigh: "0.28"}}
	if err := testinput.WriteFile(in, spec); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "s.json")
	base := []string{"reweight", in, "-o", filepath.Join(dir, "out.arrow"), "--state", state, "--device", "cpu", "--quiet"}
	if code, _, stderr := runCLI(t, base...); code != 0 {
		t.Fatalf("first run: %s", stderr)
	}
	tests := []struct {
		flags []string
		want  string
	}{
		{[]string{"--clip-high", "none"}, "clip_high = 0.28 in the state, none now"},
		{[]string{"--clip-low", "0"}, "clip_low = none in the state, 0 now"},
		{[]string{"--natural-gradient"}, "natural_gradient = false in the state, true now"},
		{[]string{"--method", "steer"}, "method = papo in the state, steer now"},
	}
	for _, tc := range tests {
		code, _, stderr := runCLI(t, append(slices.Clone(base), tc.flags...)...)
		if code != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--reset-state") {
			t.Errorf("%v against the state: exit %d, stderr %s; want %q", tc.flags, code, stderr, tc.want)
		}
	}
	// The same values spelled as flags are the same run.
	if code, _, stderr := runCLI(t, append(slices.Clone(base), "--clip-high", "0.28", "--temperature", "1")...); code != 0 {
		t.Errorf("the recorded values as flags: exit %d: %s", code, stderr)
	}
	// τ and η are the step's, recorded with it, never locked: a trainer's schedules change them.
	for _, flags := range [][]string{{"--lr", "1e-6"}, {"--temperature", "0.7"}} {
		if code, _, stderr := runCLI(t, append(slices.Clone(base), flags...)...); code != 0 {
			t.Errorf("%v: exit %d: %s; want a new η or τ accepted", flags, code, stderr)
		}
	}
	if data, err := os.ReadFile(state); err != nil || !strings.Contains(string(data), `"temperature": 0.7`) {
		t.Errorf("state after --temperature 0.7: %v; want each step's τ recorded:\n%s", err, data)
	}
	if code, _, stderr := runCLI(t, append(slices.Clone(base), "--clip-low", "-1")...); code != 2 || !strings.Contains(stderr, "clip-low") {
		t.Errorf("--clip-low -1: exit %d: %s", code, stderr)
	}
}
