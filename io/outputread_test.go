package papoio

import (
	"bytes"
	"encoding/csv"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// writeRecords writes recs with schema to path (any output format, Parquet with io/parquet).
func writeRecords(t *testing.T, path string, schema *arrow.Schema, mem memory.Allocator, recs ...arrow.Record) {
	t.Helper()
	w, err := Create(path, schema, mem, tables)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestOutputReadBack reads papo's per-token output back in every output format: the token ids,
// the mask, the steps, the advantages and the computed columns come back as written, nulls as
// nulls (reweighted_advantage as NaN).
func TestOutputReadBack(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	recs, schema, want := outputFixture(t, mem)
	defer releaseRecords(recs)
	for _, ext := range allExtensions {
		t.Run(ext, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out"+ext)
			writeRecords(t, path, schema, mem, recs...)
			r, err := OpenOutput(path, mem, tables)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			f32 := func(x float32) any { return f32s(x) }
			row := 0
			for r.Next() {
				b := r.Batch()
				for i := range b.Input.Rows() {
					w := want[row]
					got := map[string]any{
						ColTokenID:         strconv.Itoa(int(b.Input.TokenID[i])),
						ColMask:            strconv.FormatBool(b.Input.Trained(i)),
						ColStep:            strconv.FormatInt(b.Step[i], 10),
						ColEntropy:         f32(b.Result.Entropy[i]),
						ColLogprob:         f32(b.Result.Logprob[i]),
						ColPolarityFactor:  f32(b.Result.PolarityFactor[i]),
						ColPredictedDeltaH: f32(b.Result.PredictedDeltaH[i]),
						ColWeight:          f32(b.Weight[i]),
					}
					got[ColAdvantage], got[ColPolarity], got[ColReweightedAdvantage] = nil, nil, nil
					if b.Input.HasAdvantage(i) {
						got[ColAdvantage] = strconv.FormatFloat(b.Input.Advantage[i], 'g', -1, 64)
					}
					if b.Result.PolarityValid[i] {
						got[ColPolarity] = f32(b.Result.Polarity[i])
					}
					if !math.IsNaN(b.Reweighted[i]) {
						got[ColReweightedAdvantage] = f32(float32(b.Reweighted[i]))
					}
					for name, g := range got {
						if g != w[name] {
							t.Fatalf("row %d: %s = %v; want %v", row, name, g, w[name])
						}
					}
					row++
				}
			}
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			if row != len(want) {
				t.Fatalf("read %d rows; want %d", row, len(want))
			}
		})
	}
}

// TestOutputRefusals: an input is not an output (ErrNotOutput), and an output without one of
// its required columns, or with a text where a number belongs, is refused naming the column.
func TestOutputRefusals(t *testing.T) {
	mem := memory.DefaultAllocator
	dir := t.TempDir()
	cols := testColumns(polarity.Float32, 5, 4, 0)
	inSchema := InputSchema(5, polarity.Float32, cols, nil)
	rec, err := BuildInput(mem, inSchema, &cols)
	if err != nil {
		t.Fatal(err)
	}
	inPath := filepath.Join(dir, "in.arrow")
	writeRecords(t, inPath, inSchema, mem, rec)
	rec.Release()
	if _, err := OpenOutput(inPath, mem); !errors.Is(err, ErrNotOutput) {
		t.Errorf("OpenOutput(input) = %v; want ErrNotOutput", err)
	}
	// Row statistics are an input; with the computed columns beside them, papo's output of one.
	stats := RowStatsSchema(inSchema, 1)
	for _, tc := range []struct {
		name  string
		s     *arrow.Schema
		input bool
	}{{"logits", inSchema, true}, {"row statistics", stats, true}, {"output of logits", OutputSchema(inSchema), false},
		{"output of row statistics", OutputSchema(stats), false}} {
		if got := isInputSchema(tc.s); got != tc.input {
			t.Errorf("%s: taken for an input: %v; want %v", tc.name, got, tc.input)
		}
	}

	recs, schema, _ := outputFixture(t, mem)
	defer releaseRecords(recs)
	for _, drop := range []string{ColPolarity, ColWeight, ColTokenID} {
		idx := schema.FieldIndices(drop)[0]
		fields := append(append([]arrow.Field(nil), schema.Fields()[:idx]...), schema.Fields()[idx+1:]...)
		md := schema.Metadata()
		less := arrow.NewSchema(fields, &md)
		var cut []arrow.Record
		for _, rec := range recs {
			cols := append(append([]arrow.Array(nil), rec.Columns()[:idx]...), rec.Columns()[idx+1:]...)
			cut = append(cut, array.NewRecord(less, cols, rec.NumRows()))
		}
		path := filepath.Join(dir, "no-"+drop+".arrow")
		writeRecords(t, path, less, mem, cut...)
		releaseRecords(cut)
		_, err := OpenOutput(path, mem)
		if err == nil || !strings.Contains(err.Error(), "missing column "+drop) {
			t.Errorf("output without %s: %v; want an error naming the column", drop, err)
		}
	}

	// A CSV whose entropy is not a number.
	path := filepath.Join(dir, "bad.csv")
	writeRecords(t, path, schema, mem, recs...)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	table, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range table[0] {
		if h == ColEntropy {
			table[1][i] = "high"
		}
	}
	var buf bytes.Buffer
	cw := csv.NewWriter(&buf)
	if err := cw.WriteAll(table); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := OpenOutput(path, mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for r.Next() {
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), `row 0 (input row 0): entropy is "high"; want a number`) {
		t.Errorf("CSV with a text entropy: %v; want an error naming row 0 and the column", err)
	}
}

// TestOutputTruncated: an IPC output file cut short, in its footer or in its last record batch,
// is an error when read back, as it is for an input; the rows before the cut are not taken for
// the whole file.
func TestOutputTruncated(t *testing.T) {
	mem := memory.DefaultAllocator
	recs, schema, _ := outputFixture(t, mem)
	defer releaseRecords(recs)
	path := filepath.Join(t.TempDir(), "out.arrow")
	writeRecords(t, path, schema, mem, recs...)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{10, len(data) / 3} {
		short := filepath.Join(t.TempDir(), "short.arrow")
		if err := os.WriteFile(short, data[:len(data)-cut], 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := OpenOutput(short, mem)
		if err != nil {
			continue // refused when opened: as good
		}
		rows := 0
		for r.Next() {
			rows += r.Batch().Input.Rows()
		}
		if err := r.Err(); err == nil || !strings.Contains(err.Error(), "footer") {
			t.Errorf("cut by %d bytes: read %d rows, error %v; want an error about the footer", cut, rows, err)
		}
		r.Close()
	}
}
