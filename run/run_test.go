package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
	"github.com/entropy-polarity/papo/polarity"
)

// recorder is a Sink that keeps everything it is given.
type recorder struct {
	pieces  []piece
	reports []StepReport
}

// piece is one Rows call, copied.
type piece struct {
	step       int64
	rows       []int64 // testinput.RowColumn of each row
	entropy    []float32
	polarity   []float32
	weight     []float32
	reweighted []float64
}

func (r *recorder) Rows(rows *Rows) error {
	idx := rows.Passthrough.Schema().FieldIndices(testinput.RowColumn)
	col := rows.Passthrough.Column(idx[0]).(*array.Int64)
	r.pieces = append(r.pieces, piece{
		step: rows.Step, rows: slices.Clone(col.Int64Values()),
		entropy: slices.Clone(rows.Result.Entropy), polarity: slices.Clone(rows.Result.Polarity),
		weight: slices.Clone(rows.Weight), reweighted: slices.Clone(rows.Reweighted),
	})
	return nil
}

func (r *recorder) Step(s *StepReport) error {
	r.reports = append(r.reports, *s)
	return nil
}

// papoConfig is PAPO in target mode with a target far from the data, so that φ ≠ 0 from the
// first step and the weights depend on which rows form a step.
func papoConfig() papo.Config {
	c := papo.DefaultConfig()
	c.Phase.Mode, c.Phase.TargetEntropy = papo.PhaseTarget, 8
	c.G = papo.GTanh
	return c
}

// runSpec feeds spec's batches through a Pipeline with a fresh reweighter and returns what the
// sink got, or the first error.
func runSpec(t *testing.T, spec testinput.Spec, c papo.Config, requireAdvantage bool) (*recorder, error) {
	t.Helper()
	data, err := testinput.Stream(spec)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := papo.NewReweighter(c)
	if err != nil {
		t.Fatal(err)
	}
	return feed(t, data, rw, requireAdvantage, nil)
}

func feed(t *testing.T, data []byte, rw *papo.Reweighter, requireAdvantage bool, bufs *Buffers, edit ...func(*Config)) (*recorder, error) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	r, err := papoio.NewReader(bytes.NewReader(data), "in.arrows", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rec := &recorder{}
	cfg := Config{Name: "in.arrows", Engine: polarity.NewCPU(2), Params: polarity.DefaultParams(),
		Reweighter: rw, RequireAdvantage: requireAdvantage, Mem: mem, Buffers: bufs}
	for _, e := range edit {
		e(&cfg)
	}
	p, err := New(cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Abort()
	ctx := context.Background()
	for r.Next() {
		if err := p.Add(ctx, r.Batch()); err != nil {
			return rec, err
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return rec, p.Close(ctx)
}

// reference computes, independently of the Pipeline, what each step must give: the step's
// rows as one batch through the engine, then the reweighter on the step's tokens.
func reference(t *testing.T, spec testinput.Spec, c papo.Config) (steps []int64, want map[int64]piece, tokens map[int64]int64) {
	t.Helper()
	cols := testinput.Columns(spec)
	stepOf := func(i int) int64 {
		if spec.NoStep {
			return 0
		}
		return spec.Steps[i]
	}
	rw, err := papo.NewReweighter(c)
	if err != nil {
		t.Fatal(err)
	}
	want, tokens = map[int64]piece{}, map[int64]int64{}
	all := cols.Batch
	v := all.Logits.V
	for lo := 0; lo < len(spec.Steps); {
		hi := lo
		for hi < len(spec.Steps) && stepOf(hi) == stepOf(lo) {
			hi++
		}
		step := stepOf(lo)
		b := polarity.Batch{Logits: polarity.Logits{Dtype: polarity.Float32, V: v, F32: all.Logits.F32[lo*v : hi*v]},
			TokenID: all.TokenID[lo:hi], Advantage: all.Advantage[lo:hi], AdvantageValid: all.AdvantageValid[lo:hi],
			OldLogprob: all.OldLogprob[lo:hi], OldLogprobValid: all.OldLogprobValid[lo:hi], Mask: all.Mask[lo:hi]}
		var res polarity.Result
		if err := polarity.NewCPU(1).Compute(context.Background(), &b, polarity.DefaultParams(), &res); err != nil {
			t.Fatal(err)
		}
		tok := &papo.StepTokens{Step: step, Advantage: b.Advantage, HasAdvantage: b.AdvantageValid, Trained: b.Mask,
			Entropy: res.Entropy, Logprob: res.Logprob, Polarity: res.Polarity, PredictedDeltaH: res.PredictedDeltaH,
			OldLogprob: b.OldLogprob, HasOldLogprob: b.OldLogprobValid}
		w := make([]float32, hi-lo)
		at := make([]float64, hi-lo)
		if _, err := rw.Step(tok, w, at); err != nil {
			t.Fatal(err)
		}
		var rows []int64
		for i := lo; i < hi; i++ {
			rows = append(rows, int64(i))
			if b.Mask[i-lo] {
				tokens[step]++
			}
		}
		want[step] = piece{step: step, rows: rows, entropy: res.Entropy, polarity: res.Polarity, weight: w, reweighted: at}
		steps = append(steps, step)
		lo = hi
	}
	return steps, want, tokens
}

func TestStepsAcrossBatches(t *testing.T) {
	ones := func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	tests := []struct {
		name    string
		steps   []int64
		batches []int
		noStep  bool
	}{
		{"batches of 32 span steps of 40", testinput.StepRows(40, 0, 1, 2, 3), nil, false},
		{"steps of 100 split across batches of 30", testinput.StepRows(100, 0, 1), []int{30, 30, 30, 30, 30, 30, 20}, false},
		{"one row per batch", testinput.StepRows(3, 0, 1, 2), ones(9), false},
		{"three steps in one batch", testinput.StepRows(5, 4, 5, 6), []int{15}, false},
		{"a step ends where a batch ends", testinput.StepRows(16, 0, 1, 2, 3), []int{16, 32, 16}, false},
		{"gaps between steps", testinput.StepRows(7, 0, 5, 9, 100), []int{10, 8, 10}, false},
		{"no step column: one step", testinput.StepRows(50, 0), []int{20, 20, 10}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := testinput.Spec{V: 37, Steps: tc.steps, Batches: tc.batches, Seed: 5, NoStep: tc.noStep}
			got, err := runSpec(t, spec, papoConfig(), true)
			if err != nil {
				t.Fatal(err)
			}
			steps, want, tokens := reference(t, spec, papoConfig())
			// Rows reach the sink in input order, each piece within one step.
			var order []int64
			for _, p := range got.pieces {
				order = append(order, p.rows...)
				for _, r := range p.rows {
					if s := want[p.step]; !slices.Contains(s.rows, r) {
						t.Fatalf("row %d was handed over as step %d", r, p.step)
					}
				}
			}
			if len(order) != len(tc.steps) || !slices.IsSorted(order) || order[0] != 0 {
				t.Fatalf("rows reached the sink in the order %v", order)
			}
			// One report per step, in order, after its rows, with the step's trained tokens.
			if len(got.reports) != len(steps) {
				t.Fatalf("%d step reports, want %d (steps %v)", len(got.reports), len(steps), steps)
			}
			for i, r := range got.reports {
				if r.Summary.Step != steps[i] || r.Summary.Tokens != tokens[steps[i]] {
					t.Errorf("report %d: step %d with %d tokens, want step %d with %d", i, r.Summary.Step, r.Summary.Tokens, steps[i], tokens[steps[i]])
				}
			}
			// Every row's results and weights are those of its step computed as a whole.
			merged := map[int64]*piece{}
			for _, p := range got.pieces {
				m := merged[p.step]
				if m == nil {
					m = &piece{step: p.step}
					merged[p.step] = m
				}
				m.rows = append(m.rows, p.rows...)
				m.entropy = append(m.entropy, p.entropy...)
				m.polarity = append(m.polarity, p.polarity...)
				m.weight = append(m.weight, p.weight...)
				m.reweighted = append(m.reweighted, p.reweighted...)
			}
			for _, s := range steps {
				g, w := merged[s], want[s]
				if g == nil {
					t.Fatalf("step %d: no rows", s)
				}
				if !slices.Equal(g.rows, w.rows) || !slices.Equal(g.entropy, w.entropy) || !slices.Equal(g.polarity, w.polarity) ||
					!slices.Equal(g.weight, w.weight) || !equalNaN(g.reweighted, w.reweighted) {
					t.Errorf("step %d: rows, results or weights differ from the step computed as one batch", s)
				}
			}
		})
	}
}

func equalNaN(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) })
}

func TestStepErrors(t *testing.T) {
	nan := func(row int) func(c *papoio.InputColumns) {
		return func(c *papoio.InputColumns) { c.Batch.Logits.F32[row*c.Batch.Logits.V+3] = float32(math.NaN()) }
	}
	tests := []struct {
		name    string
		spec    testinput.Spec
		want    []string
		reports int // steps handed over before the error
	}{
		{"a step goes back within a batch", testinput.Spec{Steps: []int64{0, 0, 1, 1, 0, 0}, Batches: []int{6}},
			[]string{"in.arrows: batch 0, row 4 (row 4 of the input): step: step 0 comes after step 1", "steps must increase"}, 1},
		{"a step goes back across batches", testinput.Spec{Steps: testinput.StepRows(20, 3, 4, 2), Batches: []int{32, 28}},
			[]string{"batch 1, row 8 (row 40 of the input): step: step 2 comes after step 4"}, 1},
		{"a step comes back after another", testinput.Spec{Steps: append(testinput.StepRows(10, 0, 1), testinput.StepRows(10, 0)...), Batches: []int{10, 10, 10}},
			[]string{"batch 2, row 0 (row 20 of the input): step: step 0 comes after step 1"}, 1},
		{"a NaN logit in a later step", testinput.Spec{Steps: testinput.StepRows(40, 0, 1, 2, 3, 4, 5), Edit: nan(170)},
			[]string{"batch 5, row 10 (row 170 of the input): logits", "NaN"}, 3},
		{"no advantage column", testinput.Spec{Steps: testinput.StepRows(10, 0), NoAdvantage: true},
			[]string{"in.arrows: the input has no advantage column"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.V, tc.spec.Seed = 11, 3
			got, err := runSpec(t, tc.spec, papoConfig(), true)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got %v, want an error containing %q", err, w)
				}
			}
			if len(got.reports) != tc.reports {
				t.Errorf("%d steps were handed over before the error, want %d", len(got.reports), tc.reports)
			}
		})
	}
	// Without RequireAdvantage an input without advantages is analyzed.
	spec := testinput.Spec{V: 11, Steps: testinput.StepRows(10, 0), NoAdvantage: true}
	c := papo.DefaultConfig()
	c.Method = papo.MethodNone
	if _, err := runSpec(t, spec, c, false); err != nil {
		t.Errorf("analysis without advantages: %v", err)
	}
}

func TestSpoiledAndEmpty(t *testing.T) {
	rw, _ := papo.NewReweighter(papoConfig())
	p, err := New(Config{Name: "x", Engine: polarity.NewCPU(1), Params: polarity.DefaultParams(), Reweighter: rw}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(context.Background()); err == nil || !strings.Contains(err.Error(), "x: the input has no token rows") {
		t.Errorf("Close without rows: %v", err)
	}

	data, err := testinput.Stream(testinput.Spec{V: 11, Steps: testinput.StepRows(40, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := papoio.NewReader(bytes.NewReader(data), "in", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rw, _ = papo.NewReweighter(papoConfig())
	rec := &recorder{}
	p, _ = New(Config{Name: "in", Engine: polarity.NewCPU(1), Params: polarity.DefaultParams(), Reweighter: rw}, rec)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.Next()
	if err := p.Add(ctx, r.Batch()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add with a cancelled context: %v", err)
	}
	r.Next()
	if err := p.Add(context.Background(), r.Batch()); !errors.Is(err, context.Canceled) {
		t.Errorf("Add after an error: %v, want the same error", err)
	}
	if err := p.Close(context.Background()); !errors.Is(err, context.Canceled) {
		t.Errorf("Close after an error: %v, want the same error", err)
	}
	p.Abort()
	if len(rec.pieces) != 0 || len(rec.reports) != 0 {
		t.Errorf("a spoiled run handed over %d pieces and %d reports", len(rec.pieces), len(rec.reports))
	}
}

// A second run over the same steps with the same Reweighter (the same input twice, or a trainer
// that resumed from a checkpoint) reports the rollback and gives the first run's weights.
func TestRollbackReported(t *testing.T) {
	data, err := testinput.Stream(testinput.Spec{V: 13, Steps: testinput.StepRows(24, 0, 1, 2), Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	rw, _ := papo.NewReweighter(papoConfig())
	first, err := feed(t, data, rw, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := feed(t, data, rw, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range second.reports {
		rb := r.Reweight.Rollback
		if i == 0 && (rb == nil || rb.Step != 0 || rb.LastStep != 2 || rb.Forgotten != 3) {
			t.Errorf("step 0 again: rollback %+v, want step 0, last step 2, 3 forgotten", rb)
		}
		if i > 0 && rb != nil {
			t.Errorf("report %d: unexpected rollback %+v", i, rb)
		}
	}
	if fmt.Sprint(first.pieces) != fmt.Sprint(second.pieces) {
		t.Error("the second run's rows differ from the first's")
	}
}

// plainEngine hides the CPU engine's ComputeWithStats, as the CUDA engine has none.
type plainEngine struct{ polarity.Engine }

// statsRecorder keeps the row statistics of every Rows call, in order.
type statsRecorder struct {
	recorder
	stats polarity.StatsColumns
}

func (r *statsRecorder) Rows(rows *Rows) error {
	if rows.Stats == nil {
		return errors.New("no row statistics")
	}
	r.stats.Append(rows.Stats)
	return r.recorder.Rows(rows)
}

// TestRowStats: with Config.RowStats, every row's statistics reach the Sink with its results,
// the same from the CPU engine's own pass and from the second pass that an engine without
// ComputeWithStats gets; they reproduce the engine's entropy through ComputeStats.
func TestRowStats(t *testing.T) {
	data, err := testinput.Stream(testinput.Spec{V: 777, Steps: testinput.StepRows(9, 0, 1, 2), Batches: []int{10, 10, 7}, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	run := func(engine polarity.Engine) *statsRecorder {
		r, err := papoio.NewReader(bytes.NewReader(data), "in", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rw, err := papo.NewReweighter(papoConfig(), papo.WithSignal(polarity.DefaultParams()))
		if err != nil {
			t.Fatal(err)
		}
		defer rw.Close()
		rec := &statsRecorder{}
		p, err := New(Config{Name: "in", Engine: engine, Params: polarity.DefaultParams(), Reweighter: rw, RowStats: true}, rec)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			if err := p.Add(context.Background(), r.Batch()); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	own, second := run(polarity.NewCPU(2)), run(plainEngine{polarity.NewCPU(1)})
	if len(own.stats.Max) != 27 || !reflect.DeepEqual(own.stats, second.stats) {
		t.Fatalf("row statistics: %d rows; the second pass's equal the engine's own: %v", len(own.stats.Max),
			reflect.DeepEqual(own.stats, second.stats))
	}
	b := polarity.Batch{TokenID: make([]int32, 27), Stats: &own.stats}
	var res polarity.Result
	if err := polarity.ComputeStats(context.Background(), &b, polarity.DefaultParams(), &res); err != nil {
		t.Fatal(err)
	}
	i := 0
	for _, pc := range own.pieces {
		for _, h := range pc.entropy {
			if math.Abs(float64(h-res.Entropy[i])) > 1e-6*float64(h) {
				t.Fatalf("row %d: entropy %g from the logits, %g from its statistics", i, h, res.Entropy[i])
			}
			i++
		}
	}
}
