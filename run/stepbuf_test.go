package run

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/papo"
)

// TestBuffersReused runs inputs of different shapes one after another on one Buffers, the way
// a server's requests follow each other: each run's rows, results and weights must equal those
// of the same input on a fresh pipeline (a column left over from the previous run, a validity
// or a length, would show), and the second run of a size must not grow the kept buffer.
func TestBuffersReused(t *testing.T) {
	noOld := func(c *papoio.InputColumns) { c.Batch.OldLogprob, c.Batch.OldLogprobValid = nil, nil }
	allValid := func(c *papoio.InputColumns) {
		for i := range c.Batch.AdvantageValid {
			c.Batch.AdvantageValid[i], c.Batch.Mask[i] = true, true
		}
	}
	specs := []struct {
		name string
		spec testinput.Spec
		adv  bool
	}{
		{"every column, steps across batches", testinput.Spec{V: 29, Steps: testinput.StepRows(40, 0, 1, 2), Seed: 3}, true},
		{"no advantage", testinput.Spec{V: 29, Steps: testinput.StepRows(30, 0, 1), Seed: 4, NoAdvantage: true}, false},
		{"no old log-probability", testinput.Spec{V: 29, Steps: testinput.StepRows(50, 7), Seed: 5, Edit: noOld}, true},
		{"no nulls", testinput.Spec{V: 29, Steps: testinput.StepRows(25, 0, 1, 2, 3), Seed: 6, Edit: allValid}, true},
		{"every column again", testinput.Spec{V: 29, Steps: testinput.StepRows(40, 0, 1, 2), Seed: 3}, true},
	}
	bufs := NewBuffers(1)
	for _, tc := range specs {
		data, err := testinput.Stream(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		run := func(b *Buffers) *recorder {
			rw, err := papo.NewReweighter(papoConfig())
			if err != nil {
				t.Fatal(err)
			}
			rec, err := feed(t, data, rw, tc.adv, b)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			return rec
		}
		want, got := run(nil), run(bufs)
		if !reflect.DeepEqual(got.pieces, want.pieces) {
			t.Errorf("%s: with a reused step buffer the rows differ from a fresh pipeline's", tc.name)
		}
		if len(got.reports) != len(want.reports) {
			t.Errorf("%s: %d reports, want %d", tc.name, len(got.reports), len(want.reports))
		}
		if bufs.bytes() == 0 {
			t.Fatalf("%s: no step buffer kept after the run", tc.name)
		}
	}
	// A run that fails in a batch computed in place (a NaN logit in row 37, the second batch of
	// its step) leaves the kept buffer as good as new for the next run.
	runOn := func(data []byte, adv bool, b *Buffers) (*recorder, error) {
		rw, err := papo.NewReweighter(papoConfig())
		if err != nil {
			t.Fatal(err)
		}
		return feed(t, data, rw, adv, b)
	}
	nan := func(c *papoio.InputColumns) { c.Batch.Logits.F32[37*29+3] = float32(math.NaN()) }
	bad, err := testinput.Stream(testinput.Spec{V: 29, Steps: testinput.StepRows(80, 4), Seed: 8, Edit: nan})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runOn(bad, true, bufs); err == nil || !strings.Contains(err.Error(), "row 37") {
		t.Fatalf("a NaN logit in row 37: error %v", err)
	}
	again, err := testinput.Stream(specs[1].spec)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err1 := runOn(again, false, nil)
	reused, err2 := runOn(again, false, bufs)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(reused.pieces, fresh.pieces) {
		t.Error("after a failed run the reused step buffer gives other rows than a fresh pipeline")
	}

	// The same input again: the kept buffer is large enough, so it does not grow.
	before := bufs.bytes()
	data, err := testinput.Stream(specs[0].spec)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := papo.NewReweighter(papoConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := feed(t, data, rw, true, bufs); err != nil {
		t.Fatal(err)
	}
	if after := bufs.bytes(); after != before {
		t.Errorf("the kept step buffer went from %d to %d bytes on an input it has held before", before, after)
	}
}

// TestRowsReservation: with Config.Rows (an IPC file's row count) the step buffer reserves its
// room before the first batch; the rows, results and reports are those of a pipeline without
// it, for one step and several, with optional columns and without, and with a count far over.
func TestRowsReservation(t *testing.T) {
	noOld := func(c *papoio.InputColumns) { c.Batch.OldLogprob, c.Batch.OldLogprobValid = nil, nil }
	for _, tc := range []struct {
		name string
		spec testinput.Spec
		adv  bool
	}{
		{"one step, every column", testinput.Spec{V: 29, Steps: testinput.StepRows(100, 3), Seed: 21}, true},
		{"three steps", testinput.Spec{V: 29, Steps: testinput.StepRows(45, 0, 1, 2), Seed: 22}, true},
		{"no advantage", testinput.Spec{V: 29, Steps: testinput.StepRows(70, 0, 1), Seed: 23, NoAdvantage: true}, false},
		{"no old log-probability", testinput.Spec{V: 29, Steps: testinput.StepRows(90, 5), Seed: 24, Edit: noOld}, true},
	} {
		data, err := testinput.Stream(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		rows := int64(len(tc.spec.Steps))
		runWith := func(n int64) *recorder {
			rw, err := papo.NewReweighter(papoConfig())
			if err != nil {
				t.Fatal(err)
			}
			rec, err := feed(t, data, rw, tc.adv, nil, func(c *Config) { c.Rows = n })
			if err != nil {
				t.Fatalf("%s, Rows %d: %v", tc.name, n, err)
			}
			return rec
		}
		want := runWith(0)
		for _, n := range []int64{rows, 10 * rows, 1} {
			got := runWith(n)
			if !reflect.DeepEqual(got.pieces, want.pieces) || !reflect.DeepEqual(got.reports, want.reports) {
				t.Errorf("%s: with Rows %d the output differs from a pipeline without it", tc.name, n)
			}
		}
	}
}
