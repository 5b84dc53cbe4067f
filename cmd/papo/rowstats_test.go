package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

// oracleRow is the test's own float64 computation of one row from its logits, by the textbook
// definitions (H = −Σ π log π, S_a = π_a (log π_a + H), C = Σ π_j² (log π_j + H)), and of the
// row statistics a trainer would send. It shares no code with papo.
type oracleRow struct {
	h, logpi, sampled, correction float64
	cScale                        float64    // Σ π_j² (|log π_j| + H): the size of C's terms
	stats                         [6]float64 // m, s0−1, s1, s2, s3, u_a
}

func oracle(z []float32, a int, tau float64) oracleRow {
	m, arg := math.Inf(-1), -1
	for j, x := range z {
		if u := float64(x) / tau; u > m {
			m, arg = u, j
		}
	}
	var rest, s1, s2, s3 float64
	for j, x := range z {
		u := float64(x) / tau
		if j == arg || math.IsInf(u, -1) {
			continue
		}
		v := u - m
		e := math.Exp(v)
		rest += e
		s1 += e * v
		s2 += e * e
		s3 += e * e * v
	}
	s2++ // the maximum's own e^{2·0}
	// log π_j = (u_j − m) − log(1 + rest): m cancels before the subtraction, so that the
	// dominant token of a peaked row keeps its log-probability of about −rest.
	logS := math.Log1p(rest)
	var h float64
	lps := make([]float64, len(z))
	pis := make([]float64, len(z))
	for j, x := range z {
		u := float64(x) / tau
		if math.IsInf(u, -1) {
			continue
		}
		lps[j] = (u - m) - logS
		pis[j] = math.Exp(lps[j])
		h -= pis[j] * lps[j]
	}
	var c, cScale float64
	for j := range z {
		if pis[j] > 0 {
			c += pis[j] * pis[j] * (lps[j] + h)
			cScale += pis[j] * pis[j] * (math.Abs(lps[j]) + h)
		}
	}
	ua := float64(z[a]) / tau
	o := oracleRow{h: h, logpi: (ua - m) - logS, correction: c, cScale: cScale, stats: [6]float64{m, rest, s1, s2, s3, ua}}
	if !math.IsInf(ua, -1) {
		o.sampled = math.Exp(o.logpi) * (o.logpi + h)
	}
	return o
}

// statsRel is the tolerance of the float64 finishing step from float64 statistics: the float32
// output's rounding (6e-8) with room for the oracle's own sums (worst seen 5.7e-8).
const statsRel = 2e-7

// TestRowStatisticsInput: an input of row statistics (computed here in float64 from logits, not
// by papo's engine) gives the reference numbers through `papo analyze`, and so does the logits
// input they came from, on random rows, a peaked row (+40), rows with −Inf entries and rows of
// ±1e4 magnitudes.
func TestRowStatisticsInput(t *testing.T) {
	const v, rows, tau = 3001, 24, 0.8
	rng := rand.New(rand.NewPCG(77, 1))
	logits := make([]float32, rows*v)
	ids := make([]int32, rows)
	adv := make([]float64, rows)
	steps := make([]int64, rows)
	for i := range rows {
		z := logits[i*v : (i+1)*v]
		for j := range z {
			z[j] = float32(rng.NormFloat64() * 2)
		}
		switch i % 6 {
		case 1: // peaked
			z[rng.IntN(v)] = 40
		case 2: // −Inf entries (a banned-token mask)
			for j := 0; j < v; j += 3 {
				z[j] = float32(math.Inf(-1))
			}
		case 3: // huge magnitudes
			for j := range z {
				z[j] = float32(rng.NormFloat64() * 1e4)
			}
		}
		ids[i] = int32(rng.IntN(v))
		if i%6 == 2 && ids[i]%3 == 0 {
			ids[i]++ // the sampled token is not masked
		}
		if i == 5 {
			ids[i] = 0
			z[0] = float32(math.Inf(-1)) // probability 0: log π_a = −Inf
		}
		adv[i] = rng.NormFloat64()
		steps[i] = int64(i / 8)
	}
	md := map[string]string{papoio.MetaTemperature: "0.8"}
	dir := t.TempDir()

	// The logits input.
	cols := &papoio.InputColumns{Batch: polarity.Batch{Logits: polarity.Logits{Dtype: polarity.Float32, V: v, F32: logits},
		TokenID: ids, Advantage: adv}, Step: steps}
	schema := papoio.InputSchema(v, polarity.Float32, *cols, md)
	rec, err := papoio.BuildInput(memory.DefaultAllocator, schema, cols)
	if err != nil {
		t.Fatal(err)
	}
	logitsPath := filepath.Join(dir, "logits.arrows")
	writeIPCStream(t, logitsPath, schema, rec)

	// The row-statistics input: float64 columns, no logits.
	want := make([]oracleRow, rows)
	statCols := make([][]float64, 6)
	for i := range rows {
		want[i] = oracle(logits[i*v:(i+1)*v], int(ids[i]), tau)
		for k := range 6 {
			statCols[k] = append(statCols[k], want[i].stats[k])
		}
	}
	fields := []arrow.Field{{Name: "token_id", Type: arrow.PrimitiveTypes.Int32}, {Name: "advantage", Type: arrow.PrimitiveTypes.Float64},
		{Name: "step", Type: arrow.PrimitiveTypes.Int64}}
	mem := memory.DefaultAllocator
	ib := array.NewInt32Builder(mem)
	ib.AppendValues(ids, nil)
	ab := array.NewFloat64Builder(mem)
	ab.AppendValues(adv, nil)
	sb := array.NewInt64Builder(mem)
	sb.AppendValues(steps, nil)
	arrs := []arrow.Array{ib.NewArray(), ab.NewArray(), sb.NewArray()}
	for k, name := range papoio.StatsColumnNames {
		fields = append(fields, arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Float64})
		b := array.NewFloat64Builder(mem)
		b.AppendValues(statCols[k], nil)
		arrs = append(arrs, b.NewArray())
	}
	meta := arrow.MetadataFrom(md)
	sschema := arrow.NewSchema(fields, &meta)
	statsPath := filepath.Join(dir, "stats.arrows")
	writeIPCStream(t, statsPath, sschema, array.NewRecord(sschema, arrs, rows))

	// --row-stats: the engine's own statistics of the logits input, against the test's.
	rsPath := filepath.Join(dir, "rowstats.arrow")
	mustRun(t, "analyze", logitsPath, "--row-stats", rsPath, "--device", "cpu", "--quiet")
	rsSchema, rsRecs := readIPCFile(t, rsPath)
	if tau, _ := rsSchema.Metadata().GetValue(papoio.MetaTemperature); tau != "0.8" {
		t.Fatalf("--row-stats file has papo.temperature %q; want 0.8", tau)
	}
	checkStats(t, "--row-stats", rsRecs, want, 1e-300)

	for _, tc := range []struct {
		in  string
		rel float64 // tolerance relative to each quantity's scale
	}{{statsPath, statsRel}, {logitsPath, polaritytest.CPURel}, {rsPath, polaritytest.CPURel}} {
		checkAnalyze(t, tc.in, want, tc.rel, 1e-300)
	}
	// The statistics stand for the logits: the output of either input has the same columns.
	names := func(in string) string {
		s, _ := readStream(t, in+"-out.arrows")
		var n []string
		for _, f := range s.Fields() {
			n = append(n, f.Name)
		}
		return strings.Join(n, ",")
	}
	for _, in := range []string{statsPath, rsPath} {
		if got, want := names(in), names(logitsPath); got != want {
			t.Errorf("output of %s has columns %s; want those of the logits input's output, %s", filepath.Base(in), got, want)
		}
	}
	// Row-statistics tables as Parquet, CSV and JSONL (what a trainer may write): --row-stats
	// writes them, analyze reads them back. CSV and JSONL have no metadata: τ comes as a flag.
	for _, ext := range []string{"parquet", "csv", "jsonl"} {
		path := filepath.Join(dir, "rowstats."+ext)
		mustRun(t, "analyze", logitsPath, "--row-stats", path, "--device", "cpu", "--quiet")
		var flags []string
		if ext != "parquet" {
			flags = []string{"--temperature", "0.8"}
		}
		checkAnalyze(t, path, want, polaritytest.CPURel, 1e-300, flags...)
	}

	// Impossible statistics are data errors naming row and column.
	bad := append([]float64(nil), statCols[2]...)
	bad[7] = 0.5 // s1 > 0
	arrs[3+2] = func() arrow.Array { b := array.NewFloat64Builder(mem); b.AppendValues(bad, nil); return b.NewArray() }()
	badPath := filepath.Join(dir, "bad.arrows")
	writeIPCStream(t, badPath, sschema, array.NewRecord(sschema, arrs, rows))
	var stdout, stderr strings.Builder
	if code := execute([]string{"analyze", badPath, "--device", "cpu", "--quiet"}, nil, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "row 7") || !strings.Contains(stderr.String(), "sum_exp_v") {
		t.Fatalf("s1 > 0 in row 7: exit %d, %q", code, stderr.String())
	}
}

// torchPython is a python3 that can import torch, or a skip (a failure with
// PAPO_REQUIRE_TORCH=1, as CI sets it). Debian's python3-torch belongs to /usr/bin/python3,
// which need not be the python3 on PATH.
func torchPython(t *testing.T) string {
	t.Helper()
	for _, cand := range []string{os.Getenv("PAPO_PYTHON"), "../../python/.venv/bin/python"} {
		if cand != "" && exec.Command(cand, "-c", "import torch, papo_client.stats").Run() == nil {
			return cand
		}
	}
	if os.Getenv("PAPO_REQUIRE_TORCH") == "1" {
		t.Fatal("no python with torch and papo_client (PAPO_REQUIRE_TORCH=1; make the venv as .ci/run does, or set PAPO_PYTHON)")
	}
	t.Skip("no python with torch and papo_client (python/.venv as .ci/run makes it, or PAPO_PYTHON)")
	return ""
}

// readIPCFile reads every record of an Arrow IPC file.
func readIPCFile(t *testing.T, path string) (*arrow.Schema, []arrow.Record) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ipc.NewFileReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer r.Close()
	var recs []arrow.Record
	for k := 0; k < r.NumRecords(); k++ {
		rec, err := r.Record(k)
		if err != nil {
			t.Fatal(err)
		}
		rec.Retain()
		recs = append(recs, rec)
	}
	return r.Schema(), recs
}

// checkStats compares row statistics columns with the oracle's: polaritytest.CPURel (2e-6, the
// CPU engine's stated accuracy) of each one's scale (s3
// against the scale it has in C: on a peaked row its e^{2v} ≈ 1e-35 terms are far below
// float32's precision, harmlessly).
//
// abs is an absolute floor: a float32 statistic cannot hold the 1e-100 of a row of ±1e4 logits.
func checkStats(t *testing.T, what string, recs []arrow.Record, want []oracleRow, abs float64) {
	t.Helper()
	i := 0
	for _, r := range recs {
		for k := 0; k < int(r.NumRows()); k, i = k+1, i+1 {
			for c, name := range papoio.StatsColumnNames {
				var got float64
				switch col := r.Column(r.Schema().FieldIndices(name)[0]).(type) {
				case *array.Float64:
					got = col.Value(k)
				case *array.Float32:
					got = float64(col.Value(k))
				}
				st := want[i].stats
				w, scale := st[c], math.Abs(st[c])
				if name == papoio.ColSumExp2V {
					scale += math.Abs(st[2]) * st[3] / (1 + st[1])
				}
				if math.IsInf(w, -1) && math.IsInf(got, -1) {
					continue
				}
				if d := math.Abs(got - w); !(d <= polaritytest.CPURel*scale+abs) {
					t.Errorf("%s row %d %s: got %.9g, want %.9g", what, i, name, got, w)
				}
			}
		}
	}
	if i != len(want) {
		t.Fatalf("%s: %d rows; want %d", what, i, len(want))
	}
}

// checkAnalyze runs papo analyze on in and compares H, log π_a, S_a and C with the oracle's,
// within rel of each quantity's scale.
func checkAnalyze(t *testing.T, in string, want []oracleRow, rel, abs float64, flags ...string) {
	t.Helper()
	worst := 0.0 // the largest |d| / scale seen
	defer func() { t.Logf("%s: worst error %.2g of scale (tolerance %.2g)", filepath.Base(in), worst, rel) }()
	out := in + "-out.arrows"
	mustRun(t, append([]string{"analyze", in, "-o", out, "--device", "cpu", "--quiet"}, flags...)...)
	_, recs := readStream(t, out)
	i := 0
	for _, r := range recs {
		col := func(name string) *array.Float32 { return r.Column(r.Schema().FieldIndices(name)[0]).(*array.Float32) }
		h, lp, sa, c := col("entropy"), col("logprob"), col("sampled_term"), col("correction")
		for k := 0; k < int(r.NumRows()); k, i = k+1, i+1 {
			w := want[i]
			pa := math.Max(math.Exp(w.logpi), 1e-300)
			for _, q := range []struct {
				name      string
				got, want float64
				scale     float64
			}{
				{"entropy", float64(h.Value(k)), w.h, w.h},
				{"logprob", float64(lp.Value(k)), w.logpi, math.Max(1, math.Abs(w.logpi))},
				{"sampled_term", float64(sa.Value(k)), w.sampled, pa * (math.Abs(w.logpi) + w.h)},
				{"correction", float64(c.Value(k)), w.correction, w.cScale},
			} {
				if math.IsInf(q.want, -1) && math.IsInf(q.got, -1) {
					continue
				}
				d := math.Abs(q.got - q.want)
				if q.scale > 0 && d > abs {
					worst = math.Max(worst, d/q.scale)
				}
				if !(d <= rel*q.scale+abs) {
					t.Errorf("%s row %d %s: got %.9g, want %.9g (|d| %.3g, tolerance %.3g)", filepath.Base(in), i, q.name,
						q.got, q.want, d, rel*q.scale)
				}
			}
		}
	}
	if i != len(want) {
		t.Fatalf("%s: %d rows in the output; want %d", out, i, len(want))
	}
}

func writeIPCStream(t *testing.T, path string, schema *arrow.Schema, rec arrow.Record) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := ipc.NewWriter(f, ipc.WithSchema(schema))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// readStream reads every record of an Arrow IPC stream file.
func readStream(t *testing.T, path string) (*arrow.Schema, []arrow.Record) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := ipc.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer r.Release()
	var recs []arrow.Record
	for r.Next() {
		rec := r.RecordBatch()
		rec.Retain()
		recs = append(recs, rec)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return r.Schema(), recs
}

func mustRun(t *testing.T, args ...string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := execute(args, nil, &out, &errb); code != 0 {
		t.Fatalf("papo %v: exit %d\n%s", args, code, errb.String())
	}
}

// TestTorchRowStats: the package's papo_client.stats (python/.venv, pinned torch) on the CPU, in
// one process and in two Gloo processes on loopback that each hold half of the vocabulary,
// gives the statistics of the test's own float64 computation, and papo analyze on them the
// reference numbers. Skipped where torch is missing (failed with PAPO_REQUIRE_TORCH=1, as CI
// sets it).
func TestTorchRowStats(t *testing.T) {
	python := torchPython(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	for _, mode := range [][]string{{"single"}, {"gloo", port}} {
		t.Run(mode[0], func(t *testing.T) {
			cmd := exec.Command(python, append([]string{"-B", "testdata/torchstats.py"}, mode...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("torchstats.py %v: %v\n%s", mode, err, stderr.String())
			}
			var got struct {
				V, T   int
				Tau    float64
				Logits []string
				IDs    []int32
				Stats  map[string][]string
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			parse := func(hex []string) []float64 {
				vals := make([]float64, len(hex))
				for i, h := range hex {
					if vals[i], err = strconv.ParseFloat(h, 64); err != nil {
						t.Fatalf("%q: %v", h, err)
					}
				}
				return vals
			}
			z := parse(got.Logits)
			want := make([]oracleRow, got.T)
			for i := range want {
				row := make([]float32, got.V)
				for j := range row {
					row[j] = float32(z[i*got.V+j])
				}
				want[i] = oracle(row, int(got.IDs[i]), got.Tau)
			}
			// The torch statistics as a float32 row-statistics input.
			mem := memory.DefaultAllocator
			ib := array.NewInt32Builder(mem)
			ib.AppendValues(got.IDs, nil)
			fields := []arrow.Field{{Name: "token_id", Type: arrow.PrimitiveTypes.Int32}}
			arrs := []arrow.Array{ib.NewArray()}
			for _, name := range papoio.StatsColumnNames {
				b := array.NewFloat32Builder(mem)
				for _, x := range parse(got.Stats[name]) {
					b.Append(float32(x))
				}
				fields = append(fields, arrow.Field{Name: name, Type: arrow.PrimitiveTypes.Float32})
				arrs = append(arrs, b.NewArray())
			}
			md := arrow.MetadataFrom(map[string]string{papoio.MetaTemperature: strconv.FormatFloat(got.Tau, 'g', -1, 64)})
			schema := arrow.NewSchema(fields, &md)
			rec := array.NewRecord(schema, arrs, int64(got.T))
			// float32 statistics, accumulated in float32: below float32's smallest normal
			// (1.2e-38) a value may be lost.
			const f32Floor = 2e-38
			checkStats(t, "torch "+mode[0], []arrow.Record{rec}, want, f32Floor)
			path := filepath.Join(t.TempDir(), "torch-stats.arrows")
			writeIPCStream(t, path, schema, rec)
			checkAnalyze(t, path, want, polaritytest.CPURel, f32Floor)
		})
	}
}
