package polaritytest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

// recorder is a testing.TB that records failures instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }
func (r *recorder) Failed() bool                      { return len(r.errors) > 0 }
func (r *recorder) Logf(string, ...any)               {}

// skewed is an engine that corrupts one output of the CPU engine.
type skewed struct {
	polarity.Engine
	name    string
	corrupt func(b *polarity.Batch, r *polarity.Result)
}

func (s skewed) Name() string { return s.name }

func (s skewed) Compute(ctx context.Context, b *polarity.Batch, p polarity.Params, out *polarity.Result) error {
	err := s.Engine.Compute(ctx, b, p, out)
	if err == nil {
		s.corrupt(b, out)
	}
	return err
}

// compareSmall runs e on the table's cases with V ≤ 1000 (the whole table runs in polarity's
// own tests) and compares them as CheckEngine does.
func compareSmall(tb testing.TB, e polarity.Engine, cases []polaritytest.Case) {
	for _, c := range cases {
		if c.Batch.Logits.V > 1000 {
			continue
		}
		var r polarity.Result
		if err := e.Compute(context.Background(), c.Batch, c.Params, &r); err != nil {
			tb.Errorf("%s: %v", c.Name, err)
			continue
		}
		polaritytest.Compare(tb, e.Name()+": "+c.Name, c.Kind, c.Batch, c.Params, &r, polaritytest.Rel, nil)
	}
}

// TestCompareCatchesErrors: the comparison accepts the CPU engine and rejects engines that are
// slightly wrong in one output, or report validity or no-gradient zeros wrongly, with a message
// naming the case and column; ErrorCase.Check rejects an engine that misses data errors.
func TestCompareCatchesErrors(t *testing.T) {
	seed := polaritytest.Seed(t)
	cpu := polarity.NewCPU(0)
	cases := polaritytest.Cases(polaritytest.Rand(seed))
	ok := &recorder{TB: t}
	compareSmall(ok, cpu, cases)
	if ok.Failed() {
		t.Fatalf("the CPU engine fails the comparison: %v", ok.errors[:min(3, len(ok.errors))])
	}
	for _, c := range []struct {
		name, want string
		corrupt    func(b *polarity.Batch, r *polarity.Result)
	}{
		{"H off by 1e-4 relative", "entropy", func(_ *polarity.Batch, r *polarity.Result) {
			for i := range r.Entropy {
				r.Entropy[i] *= 1 + 1e-4
			}
		}},
		{"C off by 1e-3 of |C|", "correction", func(_ *polarity.Batch, r *polarity.Result) {
			for i := range r.Correction {
				r.Correction[i] *= 1 + 1e-3
			}
		}},
		{"log π_a shifted by 1e-4", "logprob", func(_ *polarity.Batch, r *polarity.Result) {
			for i := range r.Logprob {
				r.Logprob[i] -= 1e-4
			}
		}},
		{"ΔH of masked tokens not 0", "want exactly 0", func(b *polarity.Batch, r *polarity.Result) {
			for i := range r.PredictedDeltaH {
				if !b.Trained(i) {
					r.PredictedDeltaH[i] = r.Polarity[i]
				}
			}
		}},
		{"polarity valid without advantage", "polarity valid", func(b *polarity.Batch, r *polarity.Result) {
			for i := range r.PolarityValid {
				r.PolarityValid[i] = true
			}
		}},
	} {
		rec := &recorder{TB: t}
		compareSmall(rec, skewed{cpu, "skewed", c.corrupt}, cases)
		if !rec.Failed() || !strings.Contains(strings.Join(rec.errors, "\n"), c.want) {
			t.Errorf("%s: CheckEngine did not report it (%d errors)", c.name, len(rec.errors))
		}
	}
	// An engine that ignores NaN logits fails the error cases.
	rec := &recorder{TB: t}
	for _, c := range polaritytest.ErrorCases(polaritytest.Rand(seed)) {
		c.Check(rec, "none", nil)
	}
	if len(rec.errors) != len(polaritytest.ErrorCases(polaritytest.Rand(seed))) {
		t.Errorf("ErrorCase.Check accepted a nil error in %d cases", len(polaritytest.ErrorCases(polaritytest.Rand(seed)))-len(rec.errors))
	}
}
