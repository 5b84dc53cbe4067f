package papoio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// jsRead is what testdata/jsgen/read.mjs prints for one file.
type jsRead struct {
	Format   string            `json:"format"`
	Metadata map[string]string `json:"metadata"`
	Fields   []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		Nullable bool   `json:"nullable"`
	} `json:"fields"`
	Batches []struct {
		Rows    int         `json:"rows"`
		Columns [][]*string `json:"columns"`
	} `json:"batches"`
}

// jsTypeName is the name the JavaScript apache-arrow package gives an Arrow type (String(type)).
var jsTypeName = map[arrow.Type]string{
	arrow.INT32: "Int32", arrow.INT64: "Int64", arrow.FLOAT32: "Float32", arrow.FLOAT64: "Float64",
	arrow.BOOL: "Bool", arrow.STRING: "Utf8",
}

// Cells as read.mjs prints them: the exact bits of floats, integers in decimal.
func f32Cell(x float32) *string { s := fmt.Sprintf("%08x", math.Float32bits(x)); return &s }
func f64Cell(x float64) *string { s := fmt.Sprintf("%016x", math.Float64bits(x)); return &s }
func intCell(x int64) *string   { s := strconv.FormatInt(x, 10); return &s }
func boolCell(x bool) *string   { s := strconv.FormatBool(x); return &s }
func strCell(x string) *string  { return &x }

// showCell makes a cell readable in a failure message (the float behind the bits).
func showCell(c *string, typ string) string {
	if c == nil {
		return "null"
	}
	switch typ {
	case "Float32":
		if b, err := strconv.ParseUint(*c, 16, 32); err == nil {
			return fmt.Sprintf("%s (%v)", *c, math.Float32frombits(uint32(b)))
		}
	case "Float64":
		if b, err := strconv.ParseUint(*c, 16, 64); err == nil {
			return fmt.Sprintf("%s (%v)", *c, math.Float64frombits(b))
		}
	}
	return strconv.Quote(*c)
}

// rtScore is an unknown float32 column of values a lossy float printer would change.
var rtScore = []uint32{
	0x80000000, // -0
	0x00000001, // smallest subnormal
	0x7f7fffff, // largest finite
	0xff800000, // -Inf
	0x7f800000, // +Inf
	0x3eaaaaab, // 1/3 rounded
	0x33d6bf95, // 1e-7
}

// TestRoundTripJS writes papo output the way the CLI does (OutputSchema, BuildOutput, Create)
// as an IPC file and an IPC stream, has the JavaScript apache-arrow package read both back
// (testdata/jsgen/read.mjs), and checks the column names, types, nullability and order, the
// schema metadata, the batch sizes and every cell, null or the exact bits of its value, against
// what was written. It needs node and the package, like TestInteropJS.
func TestRoundTripJS(t *testing.T) {
	node := nodeWithArrow(t)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	// The input: three batches (one of a single row), passthrough columns of every type read.mjs
	// knows, an input "entropy" (renamed input_entropy), nulls in advantage (so in polarity and
	// reweighted_advantage), old_logprob, note and score, and masked rows.
	const v = 7
	sizes := []int{5, 1, 6}
	extra := func(first, n int) map[string]arrow.Array {
		m := noteColumn(mem)(first, n)
		ent := array.NewFloat64Builder(mem)
		defer ent.Release()
		score := array.NewFloat32Builder(mem)
		defer score.Release()
		for r := first; r < first+n; r++ {
			ent.Append(float64(r) / 3)
			if r%5 == 4 {
				score.AppendNull()
			} else {
				score.Append(math.Float32frombits(rtScore[r%len(rtScore)]))
			}
		}
		m[ColEntropy] = ent.NewArray()
		m["score"] = score.NewArray()
		return m
	}
	var src []InputColumns // per batch, what the input holds
	var recs []arrow.Record
	var schema *arrow.Schema
	first := 0
	for _, n := range sizes {
		cols := testColumns(polarity.Float32, v, n, first)
		for k := range cols.Batch.Logits.F32 { // finite logits: testColumns' specials are not computable
			cols.Batch.Logits.F32[k] = logitValue(first+k/v, k%v)
		}
		cols.Extra = extra(first, n)
		if schema == nil {
			schema = InputSchema(v, polarity.Float32, cols, map[string]string{MetaRunID: "rt", MetaTemperature: "0.5"})
		}
		rec, err := BuildInput(mem, schema, &cols)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
		src = append(src, cols)
		first += n
	}
	data := encodeIPC(t, false, schema, recs...)
	releaseRecords(recs)
	for _, c := range src {
		for _, a := range c.Extra {
			a.Release()
		}
	}

	r, err := NewReader(bytes.NewReader(data), "in.arrow", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := OutputSchema(r.Schema())
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "out.arrow"), filepath.Join(dir, "out.arrows")}
	var writers []*Writer
	for _, p := range paths {
		w, err := Create(p, out, mem)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		writers = append(writers, w)
	}
	engine := polarity.NewCPU(1)
	defer engine.Close()

	// want[row][column]: the cells every reader must see, from the input columns and the results
	// handed to BuildOutput.
	var want [][]*string
	nullPolarity := 0
	for r.Next() {
		b := r.Batch()
		in := &b.Input
		n := in.Rows()
		var res polarity.Result
		if err := engine.Compute(context.Background(), in, r.Meta().Params, &res); err != nil {
			t.Fatal(err)
		}
		var weight []float32
		var reweighted []float64
		switch b.Index {
		case 1:
			weight = []float32{1.25}
		case 2:
			weight = make([]float32, n)
			reweighted = make([]float64, n)
			for i := range weight {
				weight[i] = 1 + float32(i)/10
				reweighted[i] = float64(weight[i]) * in.Advantage[i] * 0.5
			}
		}
		pass := b.Passthrough(mem)
		rec, err := BuildOutput(mem, out, pass, in, &res, weight, reweighted)
		pass.Release()
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range writers {
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
		}
		rec.Release()

		c := src[b.Index]
		sb := &c.Batch
		for i := 0; i < n; i++ {
			row := int(b.FirstRow) + i
			w := float32(1)
			if weight != nil {
				w = weight[i]
			}
			var adv, oldLP, note, score, pol, rw *string
			if sb.AdvantageValid[i] {
				adv = f64Cell(sb.Advantage[i])
				pol = f32Cell(res.Polarity[i])
				if reweighted != nil {
					rw = f32Cell(float32(reweighted[i]))
				} else {
					rw = f32Cell(float32(float64(w) * sb.Advantage[i]))
				}
			} else {
				nullPolarity++
			}
			if sb.OldLogprobValid[i] {
				oldLP = f32Cell(sb.OldLogprob[i])
			}
			if row%4 != 0 {
				note = strCell(noteText(row))
			}
			if row%5 != 4 {
				score = f32Cell(math.Float32frombits(rtScore[row%len(rtScore)]))
			}
			want = append(want, []*string{
				intCell(int64(sb.TokenID[i])), adv, intCell(c.SequenceID[i]), intCell(int64(c.Position[i])),
				intCell(c.Step[i]), boolCell(sb.Mask[i]), oldLP, f64Cell(float64(row) / 3), note, score,
				f32Cell(res.Entropy[i]), f32Cell(res.Logprob[i]), f32Cell(res.SampledTerm[i]),
				f32Cell(res.Correction[i]), f32Cell(res.PolarityFactor[i]), pol,
				f32Cell(res.PredictedDeltaH[i]), f32Cell(w), rw,
			})
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	for _, w := range writers {
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if nullPolarity == 0 || len(want) != 12 {
		t.Fatalf("fixture: %d rows, %d without an advantage; want 12 rows and some nulls", len(want), nullPolarity)
	}
	names := []string{
		ColTokenID, ColAdvantage, ColSequenceID, ColPosition, ColStep, ColMask, ColOldLogprob,
		CollisionPrefix + ColEntropy, "note", "score",
		ColEntropy, ColLogprob, ColSampledTerm, ColCorrection, ColPolarityFactor, ColPolarity,
		ColPredictedDeltaH, ColWeight, ColReweightedAdvantage,
	}
	if out.NumFields() != len(names) {
		t.Fatalf("output schema has %d columns; the test expects %d: %s", out.NumFields(), len(names), out)
	}

	cmd := exec.Command(node, append([]string{"read.mjs"}, paths...)...)
	cmd.Dir = jsgenDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("node read.mjs: %v\n%s", err, stderr.Bytes())
	}
	var got map[string]jsRead
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("node read.mjs printed no JSON: %v\n%s", err, stdout)
	}

	for _, p := range paths {
		t.Run(filepath.Ext(p), func(t *testing.T) {
			js, ok := got[p]
			if !ok {
				t.Fatalf("read.mjs printed nothing for %s", p)
			}
			if wantFormat := map[string]string{".arrow": "file", ".arrows": "stream"}[filepath.Ext(p)]; js.Format != wantFormat {
				t.Errorf("apache-arrow reads %s as an IPC %s; want %s", p, js.Format, wantFormat)
			}
			md := out.Metadata()
			if len(js.Metadata) != md.Len() {
				t.Errorf("schema metadata %v; papo wrote %v", js.Metadata, md)
			}
			for i, k := range md.Keys() {
				if js.Metadata[k] != md.Values()[i] {
					t.Errorf("schema metadata %s = %q; papo wrote %q", k, js.Metadata[k], md.Values()[i])
				}
			}
			if len(js.Fields) != len(names) {
				t.Fatalf("%d columns %+v; want %d", len(js.Fields), js.Fields, len(names))
			}
			types := make([]string, len(names))
			for i, f := range out.Fields() {
				types[i] = jsTypeName[f.Type.ID()]
				if g := js.Fields[i]; g.Name != names[i] || f.Name != names[i] || g.Type != types[i] || g.Nullable != f.Nullable {
					t.Errorf("column %d: apache-arrow reads %q %s nullable=%v; papo wrote %q %s nullable=%v (want name %q)",
						i, g.Name, g.Type, g.Nullable, f.Name, f.Type, f.Nullable, names[i])
				}
			}
			var rows []int
			for _, b := range js.Batches {
				rows = append(rows, b.Rows)
			}
			if fmt.Sprint(rows) != fmt.Sprint(sizes) {
				t.Fatalf("batches of %v rows; papo wrote %v", rows, sizes)
			}
			row := 0
			for bi, b := range js.Batches {
				if len(b.Columns) != len(names) {
					t.Fatalf("batch %d: %d columns; want %d", bi, len(b.Columns), len(names))
				}
				for i := 0; i < b.Rows; i++ {
					for c, name := range names {
						if len(b.Columns[c]) != b.Rows {
							t.Fatalf("batch %d, column %s: %d cells for %d rows", bi, name, len(b.Columns[c]), b.Rows)
						}
						g, w := b.Columns[c][i], want[row][c]
						if (g == nil) != (w == nil) || (g != nil && *g != *w) {
							t.Errorf("batch %d, row %d, %s: apache-arrow reads %s; papo wrote %s",
								bi, row, name, showCell(g, types[c]), showCell(w, types[c]))
						}
					}
					row++
				}
			}
		})
	}
}
