package main

import (
	"bytes"
	"fmt"
	"math"
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

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/files"
)

// splitRanks writes the input as two data-parallel ranks, each holding half of every step's
// GRPO groups: the rows of a group go to rank group_id % 2.
func splitRanks(t *testing.T, data []byte, paths [2]string) {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	var parts [2][]arrow.Record
	for r.Next() {
		rec := r.RecordBatch()
		steps := rec.Column(rec.Schema().FieldIndices(papoio.ColStep)[0]).(*array.Int64).Int64Values()
		groups := rec.Column(rec.Schema().FieldIndices(papoio.ColGroupID)[0]).(*array.Int64).Int64Values()
		for lo := 0; lo < len(steps); {
			hi := lo + 1
			for hi < len(steps) && steps[hi] == steps[lo] && groups[hi] == groups[lo] {
				hi++
			}
			k := groups[lo] % 2
			parts[k] = append(parts[k], rec.NewSlice(int64(lo), int64(hi)))
			lo = hi
		}
	}
	for k, path := range paths {
		var buf bytes.Buffer
		w := ipc.NewWriter(&buf, ipc.WithSchema(r.Schema()))
		for _, rec := range parts[k] {
			if rec.NumRows() > 0 {
				if err := w.Write(rec); err != nil {
					t.Fatal(err)
				}
			}
		}
		w.Close()
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// byRow maps the input row index to (weight, reweighted advantage) of an output stream file.
func byRow(t *testing.T, paths ...string) map[int64][2]float64 {
	t.Helper()
	out := map[int64][2]float64{}
	for _, p := range paths {
		_, recs := readStream(t, p)
		for _, r := range recs {
			col := func(name string) arrow.Array { return r.Column(r.Schema().FieldIndices(name)[0]) }
			rows := col(testinput.RowColumn).(*array.Int64)
			w, ra := col(papoio.ColWeight).(*array.Float32), col(papoio.ColReweightedAdvantage).(*array.Float32)
			for i := 0; i < int(r.NumRows()); i++ {
				out[rows.Value(i)] = [2]float64{float64(w.Value(i)), float64(ra.Value(i))}
			}
		}
	}
	return out
}

// TestDataParallelExact: two ranks that each run `papo stats`, sum their tables, and reweight
// their own tokens with --global-stats give, concatenated, the weights of one process that saw
// every token: PAPO with g = sign and tanh, with renormalization, and entropy shaping. Renormalized
// tanh weights cannot be had in one round and are refused with a message.
func TestDataParallelExact(t *testing.T) {
	dir := t.TempDir()
	// 5 steps of 64 rows, GRPO groups of 32 rows: each rank gets one group of every step.
	data, err := testinput.Stream(testinput.Spec{V: 900, Steps: testinput.StepRows(64, 0, 1, 2, 3, 4), Seed: 12})
	if err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full.arrows")
	if err := os.WriteFile(full, data, 0o644); err != nil {
		t.Fatal(err)
	}
	ranks := [2]string{filepath.Join(dir, "rank0.arrows"), filepath.Join(dir, "rank1.arrows")}
	splitRanks(t, data, ranks)
	cpu := []string{"--device", "cpu", "--quiet"}
	target := append([]string{"--phase-mode", "target", "--target-entropy", "4"}, cpu...)
	for _, tc := range []struct {
		name  string
		flags []string
	}{
		{"default schedule", append([]string{"--phase-window", "2"}, cpu...)},
		{"papo sign", nil},
		{"papo tanh", []string{"--weight-fn", "tanh"}},
		{"papo sign renormalized", []string{"--renormalize"}},
		{"entropy shaping", []string{"--method", "entropy-shaping"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags := append(append([]string(nil), target...), tc.flags...)
			if tc.name == "default schedule" {
				flags = tc.flags
			}
			ref := filepath.Join(dir, "ref.arrows")
			mustRun(t, append([]string{"reweight", full, "-o", ref}, flags...)...)
			var sum []papoio.StepPartials
			for k, rank := range ranks {
				part := filepath.Join(dir, "part"+string(rune('0'+k))+".arrow")
				mustRun(t, append([]string{"stats", rank, "-o", part}, flags...)...)
				rows, err := files.ReadPartials(part)
				if err != nil {
					t.Fatal(err)
				}
				if k == 0 {
					sum = rows
					continue
				}
				for i := range rows { // the all-reduce SUM, every column but step
					s := &sum[i]
					s.EntropyTokens += rows[i].EntropyTokens
					s.EntropySum += rows[i].EntropySum
					s.WeightedTokens += rows[i].WeightedTokens
					s.PolaritySum += rows[i].PolaritySum
					s.PolaritySum2 += rows[i].PolaritySum2
					s.AbsAdvantage += rows[i].AbsAdvantage
					s.AbsAdvantageSign += rows[i].AbsAdvantageSign
				}
			}
			global := filepath.Join(dir, "global.csv") // a trainer may well sum them with pandas
			f, err := files.FinishPartials(global, sum, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Commit(); err != nil {
				t.Fatal(err)
			}
			var outs []string
			for k, rank := range ranks {
				out := filepath.Join(dir, "out"+string(rune('0'+k))+".arrows")
				mustRun(t, append([]string{"reweight", rank, "-o", out, "--global-stats", global}, flags...)...)
				outs = append(outs, out)
			}
			want, got := byRow(t, ref), byRow(t, outs...)
			if len(got) != len(want) || len(want) != 320 {
				t.Fatalf("%d rows from the ranks, %d from one process", len(got), len(want))
			}
			changed := 0
			for row, w := range want {
				g := got[row]
				for k, name := range []string{"weight", "reweighted_advantage"} {
					if d := math.Abs(g[k] - w[k]); d > 1e-6*math.Max(1, math.Abs(w[k])) {
						t.Fatalf("row %d %s: ranks %.9g, one process %.9g", row, name, g[k], w[k])
					}
				}
				if w[0] != 1 {
					changed++
				}
			}
			if changed == 0 {
				t.Fatal("no weight differs from 1: the test would not see a wrong phase")
			}
		})
	}
	// Phase 1.5 by examples/python/ddp_global_stats.py (papo_client.ddp): two Gloo processes all-reduce their CSV
	// partials; the global table equals the sum, and reweighting with it is exact.
	t.Run("ddp_global_stats.py", func(t *testing.T) {
		python := torchPython(t)
		flags := append(append([]string(nil), target...), "--renormalize")
		var parts [2][]papoio.StepPartials
		for k, rank := range ranks {
			part := filepath.Join(dir, fmt.Sprintf("ddp-part%d.csv", k))
			mustRun(t, append([]string{"stats", rank, "-o", part}, flags...)...)
			var err error
			if parts[k], err = files.ReadPartials(part); err != nil {
				t.Fatal(err)
			}
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		l.Close()
		var cmds [2]*exec.Cmd
		var logs [2]bytes.Buffer
		for k := range 2 {
			cmds[k] = exec.Command(python, "-B", "../../examples/python/ddp_global_stats.py", strconv.Itoa(k), "2", port,
				filepath.Join(dir, fmt.Sprintf("ddp-part%d.csv", k)), filepath.Join(dir, fmt.Sprintf("ddp-global%d.csv", k)))
			cmds[k].Stdout, cmds[k].Stderr = &logs[k], &logs[k]
			if err := cmds[k].Start(); err != nil {
				t.Fatal(err)
			}
		}
		for k := range 2 {
			if err := cmds[k].Wait(); err != nil {
				t.Fatalf("ddp_global_stats.py rank %d: %v\n%s", k, err, logs[k].String())
			}
		}
		global := filepath.Join(dir, "ddp-global0.csv")
		got, err := files.ReadPartials(global)
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			a, b := parts[0][i], parts[1][i]
			want := papoio.StepPartials{Step: a.Step, EntropyTokens: a.EntropyTokens + b.EntropyTokens, EntropySum: a.EntropySum + b.EntropySum,
				WeightedTokens: a.WeightedTokens + b.WeightedTokens, PolaritySum: a.PolaritySum + b.PolaritySum,
				PolaritySum2: a.PolaritySum2 + b.PolaritySum2, AbsAdvantage: a.AbsAdvantage + b.AbsAdvantage,
				AbsAdvantageSign: a.AbsAdvantageSign + b.AbsAdvantageSign}
			if got[i] != want {
				t.Fatalf("step %d: ddp_global_stats.py gave %+v, the sum is %+v", a.Step, got[i], want)
			}
		}
		if len(got) != 5 {
			t.Fatalf("%d steps in the global table", len(got))
		}
		ref := filepath.Join(dir, "ddp-ref.arrows")
		mustRun(t, append([]string{"reweight", full, "-o", ref}, flags...)...)
		out := filepath.Join(dir, "ddp-out0.arrows")
		mustRun(t, append([]string{"reweight", ranks[0], "-o", out, "--global-stats", global}, flags...)...)
		want, mine := byRow(t, ref), byRow(t, out)
		for row, g := range mine {
			if d := math.Abs(g[0] - want[row][0]); d > 1e-6 {
				t.Fatalf("row %d: weight %.9g with ddp_global_stats.py's table, %.9g in one process", row, g[0], want[row][0])
			}
		}
	})
	t.Run("renormalized tanh", func(t *testing.T) {
		flags := append(append([]string(nil), target...), "--weight-fn", "tanh", "--renormalize")
		part := filepath.Join(dir, "part-tanh.arrow")
		mustRun(t, append([]string{"stats", ranks[0], "-o", part}, flags...)...)
		var stdout, stderr strings.Builder
		code := execute(append([]string{"reweight", ranks[0], "-o", filepath.Join(dir, "x.arrows"), "--global-stats", part}, flags...),
			nil, &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), "one round") {
			t.Fatalf("exit %d, %q", code, stderr.String())
		}
	})
}
