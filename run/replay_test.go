package run

import (
	"bytes"
	"context"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/files"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
)

// tee is a Sink that hands everything to two.
type tee struct{ a, b Sink }

func (t tee) Rows(r *Rows) error {
	if err := t.a.Rows(r); err != nil {
		return err
	}
	return t.b.Rows(r)
}

func (t tee) Step(s *StepReport) error {
	if err := t.a.Step(s); err != nil {
		return err
	}
	return t.b.Step(s)
}

// writeOutput runs spec through a Pipeline into a per-token output file at path and returns
// what the sink was given.
func writeOutput(t *testing.T, spec testinput.Spec, c papo.Config, path string) *recorder {
	t.Helper()
	data, err := testinput.Stream(spec)
	if err != nil {
		t.Fatal(err)
	}
	mem := memory.DefaultAllocator
	r, err := papoio.NewReader(bytes.NewReader(data), "in.arrows", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	schema := papoio.OutputSchema(r.Schema())
	w, err := files.Create(path, schema, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	rw, err := papo.NewReweighter(c)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	p, err := New(Config{Name: "in.arrows", Engine: polarity.NewCPU(2), Params: polarity.DefaultParams(), Reweighter: rw},
		tee{NewOutput(w, schema, mem, nil), rec})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	for r.Next() {
		if err := p.Add(context.Background(), r.Batch()); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return rec
}

// replayFile replays a per-token output with a fresh reweighter of c.
func replayFile(t *testing.T, path string, c papo.Config) (*recorder, error) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	r, err := files.OpenOutput(path, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rw, err := papo.NewReweighter(c)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	p, err := NewReplay(path, rw, rec)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		if err := p.Add(r.Batch()); err != nil {
			return rec, err
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return rec, p.Close()
}

// TestReplay: an output replayed gives the rows and the step reports of the run that wrote it
// (the phase detector fed again with the same parameters), in every layout of steps and
// batches, and in three of the output formats.
func TestReplay(t *testing.T) {
	tanh := papoConfig()
	none := papo.DefaultConfig()
	none.Method = papo.MethodNone
	tests := []struct {
		name    string
		steps   []int64
		batches []int
		cfg     papo.Config
		ext     string
	}{
		{"PAPO, steps of 40 across batches of 32", testinput.StepRows(40, 0, 1, 2, 3), nil, tanh, ".arrow"},
		{"PAPO, IPC stream, gaps between steps", testinput.StepRows(7, 0, 5, 9, 100), []int{10, 8, 10}, tanh, ".arrows"},
		{"analyze (method none), three steps in one batch", testinput.StepRows(5, 4, 5, 6), []int{15}, none, ".parquet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out"+tc.ext)
			spec := testinput.Spec{V: 37, Steps: tc.steps, Batches: tc.batches, Seed: 9}
			want := writeOutput(t, spec, tc.cfg, path)
			got, err := replayFile(t, path, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			flat := func(r *recorder) (rows []int64, entropy, weight []float32) {
				for _, p := range r.pieces {
					rows, entropy, weight = append(rows, p.rows...), append(entropy, p.entropy...), append(weight, p.weight...)
				}
				return
			}
			gr, ge, gw := flat(got)
			wr, we, ww := flat(want)
			if !slices.Equal(gr, wr) || !slices.Equal(ge, we) || !slices.Equal(gw, ww) {
				t.Fatalf("replayed rows differ from the run's")
			}
			if len(got.reports) != len(want.reports) {
				t.Fatalf("%d step reports; want %d", len(got.reports), len(want.reports))
			}
			for i, g := range got.reports {
				w := want.reports[i]
				gs, ws := g.Summary, w.Summary
				// Everything but the weight columns is summed from the same float32 values in the
				// same order: equal. The weights are float32 in the file, float64 in the run.
				exact := gs.Step == ws.Step && gs.Tokens == ws.Tokens && gs.MeanEntropy == ws.MeanEntropy &&
					gs.EMAEntropy == ws.EMAEntropy && gs.Phase == ws.Phase && gs.ExpandingFraction == ws.ExpandingFraction &&
					gs.SumPositivePolarity == ws.SumPositivePolarity && gs.SumNegativePolarity == ws.SumNegativePolarity &&
					gs.PredictedDeltaH == ws.PredictedDeltaH && g.Reweight.Weighted == w.Reweight.Weighted &&
					g.Reweight.Changed == w.Reweight.Changed
				if !exact {
					t.Errorf("step %d: replayed summary %+v (weighted %d, changed %d)\nwant %+v (weighted %d, changed %d)", ws.Step,
						gs, g.Reweight.Weighted, g.Reweight.Changed, ws, w.Reweight.Weighted, w.Reweight.Changed)
				}
				// float32 weights: 2^-24 relative each; sums of ~40 terms of mixed sign, 1e-5 absolute.
				for k, pair := range [][2]float64{{gs.WeightMin, ws.WeightMin}, {gs.WeightMean, ws.WeightMean},
					{gs.WeightMax, ws.WeightMax}, {gs.ReweightedPredictedDeltaH, ws.ReweightedPredictedDeltaH}} {
					if math.Abs(pair[0]-pair[1]) > 1e-5 {
						t.Errorf("step %d: weight figure %d is %v; want %v", ws.Step, k, pair[0], pair[1])
					}
				}
			}
		})
	}
}

// TestReplayErrors: steps that go back are an error naming the row; a file without rows has
// no step to report and is no error.
func TestReplayErrors(t *testing.T) {
	dir := t.TempDir()
	back := filepath.Join(dir, "back.arrow")
	writeOutput(t, testinput.Spec{V: 11, Steps: testinput.StepRows(4, 3), Seed: 1}, papoConfig(), back)
	two := filepath.Join(dir, "two.arrow")
	writeOutput(t, testinput.Spec{V: 11, Steps: testinput.StepRows(4, 1), Seed: 1}, papoConfig(), two)
	rw, _ := papo.NewReweighter(papoConfig())
	rec := &recorder{}
	p, _ := NewReplay("both", rw, rec)
	for _, path := range []string{back, two} {
		r, err := files.OpenOutput(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			err = p.Add(r.Batch())
		}
		r.Close()
	}
	if err := p.Close(); err == nil || !strings.Contains(err.Error(), "step 1 comes after step 3") {
		t.Errorf("steps going back: %v; want an error naming both steps", err)
	}
	empty, _ := NewReplay("empty", rw, rec)
	if err := empty.Close(); err != nil || empty.Steps() != 0 {
		t.Errorf("Close without rows: %v, %d steps; want nil and none", err, empty.Steps())
	}
}
