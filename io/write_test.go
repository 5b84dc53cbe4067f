package papoio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/entropy-polarity/papo/polarity"
)

var allExtensions = []string{".arrow", ".arrows", ".parquet", ".csv", ".jsonl"}

// canonical renders one Arrow value as text (nil for null), the way the checks compare cells.
func canonical(col arrow.Array, i int) any {
	if col.IsNull(i) {
		return nil
	}
	switch a := col.(type) {
	case *array.Float32:
		return strconv.FormatFloat(float64(a.Value(i)), 'g', -1, 32)
	case *array.Float64:
		return strconv.FormatFloat(a.Value(i), 'g', -1, 64)
	case *array.Int64:
		return strconv.FormatInt(a.Value(i), 10)
	case *array.Int32:
		return strconv.FormatInt(int64(a.Value(i)), 10)
	case *array.Boolean:
		return strconv.FormatBool(a.Value(i))
	case *array.String:
		return a.Value(i)
	}
	panic(fmt.Sprintf("canonical: unexpected %T", col))
}

func f32s(x float32) string { return strconv.FormatFloat(float64(x), 'g', -1, 32) }

// outputFixture reads a two-batch input with an unknown "note" column and an "entropy" column
// of its own, and builds the output records from a made-up Result. It returns the records, the
// schema and the expected cells (column → canonical text) of every row.
func outputFixture(t *testing.T, mem memory.Allocator) ([]arrow.Record, *arrow.Schema, []map[string]any) {
	t.Helper()
	const v = 5
	entropyIn := func(first, n int) map[string]arrow.Array {
		m := noteColumn(mem)(first, n)
		vals := make([]float64, n)
		for i := range vals {
			vals[i] = float64(first+i) / 3
		}
		m[ColEntropy] = newPrimitive(mem, arrow.PrimitiveTypes.Float64, vals, nil)
		return m
	}
	cols := testColumns(polarity.Float32, v, 1, 0)
	cols.Extra = entropyIn(0, 1)
	schema := InputSchema(v, polarity.Float32, cols, map[string]string{MetaRunID: "out"})
	releaseAll([]arrow.Array{cols.Extra["note"], cols.Extra[ColEntropy]})
	recs := buildBatches(t, mem, schema, polarity.Float32, v, []int{4, 3}, entropyIn)
	data := encodeIPC(t, true, schema, recs...)
	releaseRecords(recs)

	r, err := NewReader(bytes.NewReader(data), "in.arrows", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := OutputSchema(r.Schema())
	var outs []arrow.Record
	var want []map[string]any
	for r.Next() {
		b := r.Batch()
		in := &b.Input
		n := in.Rows()
		var res polarity.Result
		res.Resize(n)
		var weight []float32
		if b.Index == 1 {
			weight = make([]float32, n)
		}
		for i := 0; i < n; i++ {
			g := float32(b.FirstRow) + float32(i)
			res.Entropy[i] = 0.5 + g/7
			res.Logprob[i] = -g / 3
			res.SampledTerm[i] = g / 11
			res.Correction[i] = g / 13
			res.PolarityFactor[i] = res.Correction[i] - res.SampledTerm[i]
			res.PolarityValid[i] = in.HasAdvantage(i)
			if res.PolarityValid[i] {
				res.Polarity[i] = float32(in.Advantage[i]) * res.PolarityFactor[i]
			}
			res.PredictedDeltaH[i] = -g / 17
			if weight != nil {
				weight[i] = 1 + g/10
			}
		}
		pass := b.Passthrough(mem)
		rec, err := BuildOutput(mem, out, pass, in, &res, weight, nil)
		pass.Release()
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, rec)
		for i := 0; i < n; i++ {
			row := int(b.FirstRow) + i
			w := float32(1)
			if weight != nil {
				w = weight[i]
			}
			cells := map[string]any{
				ColTokenID:                   strconv.Itoa(int(in.TokenID[i])),
				ColMask:                      strconv.FormatBool(in.Trained(i)),
				CollisionPrefix + ColEntropy: strconv.FormatFloat(float64(row)/3, 'g', -1, 64),
				ColEntropy:                   f32s(res.Entropy[i]),
				ColPolarityFactor:            f32s(res.PolarityFactor[i]),
				ColPredictedDeltaH:           f32s(res.PredictedDeltaH[i]),
				ColWeight:                    f32s(w),
				"note":                       nil,
				ColPolarity:                  nil,
				ColReweightedAdvantage:       nil,
				ColAdvantage:                 nil,
				ColStep:                      strconv.Itoa(100 + row/4),
				ColLogprob:                   f32s(res.Logprob[i]),
			}
			if row%4 != 0 {
				cells["note"] = noteText(row)
			}
			if in.HasAdvantage(i) {
				cells[ColAdvantage] = strconv.FormatFloat(in.Advantage[i], 'g', -1, 64)
				cells[ColPolarity] = f32s(res.Polarity[i])
				cells[ColReweightedAdvantage] = f32s(float32(float64(w) * in.Advantage[i]))
			}
			want = append(want, cells)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return outs, out, want
}

// readBack returns the rows of an output file as column → canonical text.
func readBack(t *testing.T, path string, mem memory.Allocator) (*arrow.Schema, []map[string]any) {
	t.Helper()
	var rows []map[string]any
	addRecord := func(rec arrow.Record) {
		for i := 0; i < int(rec.NumRows()); i++ {
			row := map[string]any{}
			for j, col := range rec.Columns() {
				row[rec.ColumnName(j)] = canonical(col, i)
			}
			rows = append(rows, row)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	switch filepath.Ext(path) {
	case ".arrow":
		r, err := ipc.NewFileReader(f, ipc.WithAllocator(mem))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for i := 0; i < r.NumRecords(); i++ {
			rec, err := r.Record(i)
			if err != nil {
				t.Fatal(err)
			}
			addRecord(rec)
		}
		return r.Schema(), rows
	case ".arrows":
		r, err := ipc.NewReader(f, ipc.WithAllocator(mem))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Release()
		for r.Next() {
			addRecord(r.Record())
		}
		if r.Err() != nil {
			t.Fatal(r.Err())
		}
		return r.Schema(), rows
	case ".parquet":
		tbl, err := pqarrow.ReadTable(context.Background(), f, nil, pqarrow.ArrowReadProperties{}, mem)
		if err != nil {
			t.Fatal(err)
		}
		defer tbl.Release()
		tr := array.NewTableReader(tbl, 0)
		defer tr.Release()
		for tr.Next() {
			addRecord(tr.Record())
		}
		return tbl.Schema(), rows
	case ".csv":
		lines, err := csv.NewReader(f).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range lines[1:] {
			row := map[string]any{}
			for j, cell := range line {
				if cell == "" {
					row[lines[0][j]] = nil
				} else {
					row[lines[0][j]] = cell
				}
			}
			rows = append(rows, row)
		}
		fields := make([]arrow.Field, len(lines[0]))
		for j, name := range lines[0] {
			fields[j] = arrow.Field{Name: name, Type: arrow.Null}
		}
		return arrow.NewSchema(fields, nil), rows
	case ".jsonl":
		data, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for k, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			dec := json.NewDecoder(strings.NewReader(line))
			dec.UseNumber()
			var obj map[string]any
			if err := dec.Decode(&obj); err != nil {
				t.Fatalf("line %d: %v: %s", k+1, err, line)
			}
			row := map[string]any{}
			for key, val := range obj {
				switch x := val.(type) {
				case json.Number:
					row[key] = string(x)
				case bool:
					row[key] = strconv.FormatBool(x)
				default:
					row[key] = x
				}
			}
			rows = append(rows, row)
			if k == 0 {
				// Key order is the schema's: read it from the first line.
				dec := json.NewDecoder(strings.NewReader(line))
				dec.Token()
				for dec.More() {
					tok, _ := dec.Token()
					names = append(names, tok.(string))
					var skip json.RawMessage
					dec.Decode(&skip)
				}
			}
		}
		fields := make([]arrow.Field, len(names))
		for j, name := range names {
			fields[j] = arrow.Field{Name: name, Type: arrow.Null}
		}
		return arrow.NewSchema(fields, nil), rows
	}
	t.Fatalf("readBack: %s", path)
	return nil, nil
}

func TestOutputFormats(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	recs, schema, want := outputFixture(t, mem)
	defer releaseRecords(recs)

	var names []string
	for _, f := range schema.Fields() {
		names = append(names, f.Name)
	}
	wantNames := "token_id advantage sequence_id position step mask old_logprob input_entropy note " +
		"entropy logprob sampled_term correction polarity_factor polarity predicted_dH weight reweighted_advantage"
	if strings.Join(names, " ") != wantNames {
		t.Fatalf("output columns\n%s\nwant\n%s", strings.Join(names, " "), wantNames)
	}
	if v, _ := schema.Metadata().GetValue(MetaRunID); v != "out" {
		t.Fatal("output schema lost the input's schema metadata")
	}

	dir := t.TempDir()
	for _, ext := range allExtensions {
		t.Run(ext, func(t *testing.T) {
			path := filepath.Join(dir, "out"+ext)
			writeRecords(t, path, schema, mem, recs...)
			got, rows := readBack(t, path, mem)
			if len(rows) != len(want) {
				t.Fatalf("%d rows; want %d", len(rows), len(want))
			}
			var gotNames []string
			for _, f := range got.Fields() {
				gotNames = append(gotNames, f.Name)
			}
			if strings.Join(gotNames, " ") != wantNames {
				t.Fatalf("columns %v", gotNames)
			}
			if ext == ".arrow" || ext == ".arrows" || ext == ".parquet" {
				for i, f := range got.Fields() {
					if !arrow.TypeEqual(f.Type, schema.Field(i).Type) {
						t.Fatalf("column %s reads back as %s; want %s", f.Name, f.Type, schema.Field(i).Type)
					}
				}
			}
			for i, cells := range want {
				for col, wantCell := range cells {
					if gotCell := rows[i][col]; gotCell != wantCell {
						t.Fatalf("row %d column %s: %#v; want %#v", i, col, gotCell, wantCell)
					}
				}
			}
		})
	}
}

func TestJSONLNonFinite(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := arrow.NewSchema([]arrow.Field{{Name: "x", Type: arrow.PrimitiveTypes.Float64, Nullable: true}}, nil)
	vals := []float64{math.NaN(), 0, math.Inf(1), math.Inf(-1), 1.5}
	col := newPrimitive(mem, arrow.PrimitiveTypes.Float64, vals, []bool{true, false, true, true, true})
	rec := array.NewRecord(schema, []arrow.Array{col}, 5)
	col.Release()
	defer rec.Release()
	path := filepath.Join(t.TempDir(), "x.jsonl")
	w, err := Create(path, schema, mem)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	want := "{\"x\":NaN}\n{\"x\":null}\n{\"x\":Infinity}\n{\"x\":-Infinity}\n{\"x\":1.5}\n"
	if string(data) != want {
		t.Fatalf("%q; want %q", data, want)
	}
}

func TestAtomicWrites(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rows := []StepSummary{{Step: 1, Tokens: 10, MeanEntropy: 0.5}}
	rec := SummaryRecord(mem, rows)
	defer rec.Release()
	other := arrow.NewSchema([]arrow.Field{{Name: "y", Type: arrow.PrimitiveTypes.Int64}}, nil)
	for _, ext := range allExtensions {
		t.Run(ext, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out"+ext)
			const old = "previous content"
			if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
				t.Fatal(err)
			}
			unchanged := func(when string) {
				t.Helper()
				if data, _ := os.ReadFile(path); string(data) != old {
					t.Fatalf("%s: destination holds %q; want the previous content", when, data)
				}
			}
			entries := func() int {
				list, _ := os.ReadDir(dir)
				return len(list)
			}

			// Abort after writing: nothing changes, no temporary file is left.
			w, err := Create(path, SummarySchema(), mem, tables)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
			unchanged("during the write")
			if entries() != 2 {
				t.Fatalf("%d directory entries during the write; want the destination and one temporary file", entries())
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
			unchanged("after Abort")
			if entries() != 1 {
				t.Fatalf("%d directory entries after Abort; want 1", entries())
			}

			// A failed write makes Close fail and leaves the destination alone.
			w, err = Create(path, SummarySchema(), mem, tables)
			if err != nil {
				t.Fatal(err)
			}
			bad := array.NewRecord(other, []arrow.Array{rec.Column(0)}, rec.NumRows())
			if err := w.Write(bad); err == nil || !strings.Contains(err.Error(), "does not match") {
				t.Fatalf("write with another schema: %v", err)
			}
			bad.Release()
			if err := w.Close(); err == nil {
				t.Fatal("Close after a failed write succeeded")
			}
			unchanged("after a failed write")
			if entries() != 1 {
				t.Fatalf("%d directory entries after a failed write; want 1", entries())
			}

			// Close replaces the destination; Abort after Close is a no-op.
			w, err = Create(path, SummarySchema(), mem, tables)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Write(rec); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(rec); err == nil {
				t.Fatal("Write after Close succeeded")
			}
			_, got := readBack(t, path, mem)
			if len(got) != 1 || got[0]["tokens"] != "10" || got[0]["mean_entropy"] != "0.5" {
				t.Fatalf("read back %v", got)
			}
			if entries() != 1 {
				t.Fatalf("%d directory entries after Close; want 1", entries())
			}
		})
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ path, want string }{
		{filepath.Join(dir, "out.txt"), `unknown output extension ".txt"; want .arrow (Arrow IPC file), .arrows (Arrow IPC stream), .parquet, .csv, .jsonl`},
		{filepath.Join(dir, "out"), "no file extension"},
		{filepath.Join(dir, "missing", "out.arrow"), "missing"},
	} {
		_, err := Create(c.path, SummarySchema(), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Create(%s): %v; want an error containing %q", c.path, err, c.want)
		}
	}
	if err := WriteSummary(filepath.Join(dir, "s.xlsx"), nil, nil); err == nil || !strings.Contains(err.Error(), ".jsonl") {
		t.Errorf("WriteSummary to .xlsx: %v", err)
	}
}

func TestWriteSummary(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rows := []StepSummary{
		{Step: 3, Tokens: 100, MeanEntropy: 1.25, EMAEntropy: 1.5, Phase: -0.5, ExpandingFraction: 0.25,
			SumPositivePolarity: 2, SumNegativePolarity: -3, PredictedDeltaH: -1e-7, WeightMin: 0.5, WeightMean: 1, WeightMax: 2},
		{Step: 4, Tokens: 7},
	}
	wantHeader := "step tokens mean_entropy ema_entropy phase expanding_fraction sum_positive_polarity " +
		"sum_negative_polarity predicted_dH reweighted_predicted_dH weight_min weight_mean weight_max"
	dir := t.TempDir()
	for _, ext := range allExtensions {
		t.Run(ext, func(t *testing.T) {
			path := filepath.Join(dir, "summary"+ext)
			if err := WriteSummary(path, rows, mem, tables); err != nil {
				t.Fatal(err)
			}
			schema, got := readBack(t, path, mem)
			var names []string
			for _, f := range schema.Fields() {
				names = append(names, f.Name)
			}
			if strings.Join(names, " ") != wantHeader {
				t.Fatalf("columns %v", names)
			}
			if len(got) != 2 || got[0]["step"] != "3" || got[0]["predicted_dH"] != "-1e-07" ||
				got[0]["phase"] != "-0.5" || got[1]["tokens"] != "7" || got[1]["weight_max"] != "0" {
				t.Fatalf("rows %v", got)
			}
		})
	}
}

func TestStdoutStream(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = pw
	done := make(chan []byte)
	go func() {
		data, _ := io.ReadAll(pr)
		done <- data
	}()
	err = WriteSummary("-", []StepSummary{{Step: 9, Tokens: 1}}, mem)
	os.Stdout = saved
	pw.Close()
	data := <-done
	pr.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := ipc.NewReader(bytes.NewReader(data), ipc.WithAllocator(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if !r.Next() || r.Record().Column(0).(*array.Int64).Value(0) != 9 {
		t.Fatalf("stdout did not carry the summary stream: %v", r.Err())
	}
}

// TestLargeWrites: small writes are buffered, large ones (largeWrite, or the buffer's size when
// that is smaller: a socket writer's) go straight through after what the buffer holds, so the
// bytes arrive in order; a failing large write is the Write's error.
func TestLargeWrites(t *testing.T) {
	for _, size := range []int{1 << 20, 8 << 10} {
		var out bytes.Buffer
		counting := &countWrites{w: &out}
		buf := bufio.NewWriterSize(counting, size)
		l := &largeWrites{buf: buf, w: counting}
		large := min(largeWrite, size)
		var want []byte
		for k, n := range []int{10, large, 7, 3 * large, large - 1, 1} {
			p := bytes.Repeat([]byte{byte('a' + k)}, n)
			want = append(want, p...)
			if m, err := l.Write(p); m != n || err != nil {
				t.Fatalf("buffer %d: write %d of %d bytes: %d, %v", size, k, n, m, err)
			}
		}
		if err := buf.Flush(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("buffer %d: the bytes arrived out of order", size)
		}
		// 10 buffered, then flushed before the large write; 7 flushed before the next; the last
		// two small ones at the end: 5 calls, each large write one call of its own.
		if counting.calls != 5 {
			t.Errorf("buffer %d: %d writes reached the file; want 5", size, counting.calls)
		}
	}
	failing := &largeWrites{buf: bufio.NewWriter(errWriter{}), w: errWriter{}}
	if _, err := failing.Write(make([]byte, largeWrite)); err == nil {
		t.Error("a failing large write returned no error")
	}
}

type countWrites struct {
	w     io.Writer
	calls int
}

func (c *countWrites) Write(p []byte) (int, error) {
	c.calls++
	return c.w.Write(p)
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }
