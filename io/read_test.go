package papoio

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

var roundTripMeta = map[string]string{
	MetaTemperature: "0.7",
	MetaLR:          "1e-6",
	MetaClipLow:     "0.2",
	MetaClipHigh:    "none",
	MetaRunID:       "run-42",
}

// checkBatch compares a read batch with the rows testColumns makes, bit for bit.
func checkBatch(t *testing.T, b *Batch, dtype polarity.Dtype, v int) {
	t.Helper()
	in := &b.Input
	n := in.Rows()
	want := testColumns(dtype, v, n, int(b.FirstRow))
	w := &want.Batch
	if in.Logits.Dtype != dtype || in.Logits.V != v || in.Logits.Rows() != n {
		t.Fatalf("batch %d: logits %s V=%d rows=%d; want %s V=%d rows=%d", b.Index,
			in.Logits.Dtype, in.Logits.V, in.Logits.Rows(), dtype, v, n)
	}
	if dtype == polarity.Float32 {
		for k := range w.Logits.F32 {
			if got, want := math.Float32bits(in.Logits.F32[k]), math.Float32bits(w.Logits.F32[k]); got != want {
				t.Fatalf("batch %d: logits[%d] bits %08x; want %08x", b.Index, k, got, want)
			}
		}
	} else {
		for k := range w.Logits.Bits {
			if in.Logits.Bits[k] != w.Logits.Bits[k] {
				t.Fatalf("batch %d: logits[%d] bits %04x; want %04x", b.Index, k, in.Logits.Bits[k], w.Logits.Bits[k])
			}
		}
	}
	for i := 0; i < n; i++ {
		if in.TokenID[i] != w.TokenID[i] {
			t.Fatalf("batch %d row %d: token_id %d; want %d", b.Index, i, in.TokenID[i], w.TokenID[i])
		}
		if in.HasAdvantage(i) != w.AdvantageValid[i] || (w.AdvantageValid[i] && in.Advantage[i] != w.Advantage[i]) {
			t.Fatalf("batch %d row %d: advantage %v (present %v); want %v (present %v)", b.Index, i,
				in.Advantage[i], in.HasAdvantage(i), w.Advantage[i], w.AdvantageValid[i])
		}
		if in.HasOldLogprob(i) != w.OldLogprobValid[i] || (w.OldLogprobValid[i] && in.OldLogprob[i] != w.OldLogprob[i]) {
			t.Fatalf("batch %d row %d: old_logprob %v (present %v); want %v (present %v)", b.Index, i,
				in.OldLogprob[i], in.HasOldLogprob(i), w.OldLogprob[i], w.OldLogprobValid[i])
		}
		if in.Trained(i) != w.Mask[i] {
			t.Fatalf("batch %d row %d: trained %v; want %v", b.Index, i, in.Trained(i), w.Mask[i])
		}
		if b.Step[i] != want.Step[i] {
			t.Fatalf("batch %d row %d: step %d; want %d", b.Index, i, b.Step[i], want.Step[i])
		}
	}
}

// altTypes stores the optional columns in their other accepted types, so that the conversions
// are tested too.
func altTypes(s *arrow.Schema) *arrow.Schema {
	s = withFieldType(s, ColTokenID, arrow.PrimitiveTypes.Int64)
	s = withFieldType(s, ColAdvantage, arrow.PrimitiveTypes.Float32)
	s = withFieldType(s, ColOldLogprob, arrow.PrimitiveTypes.Float64)
	return withFieldType(s, ColStep, arrow.PrimitiveTypes.Int32)
}

func TestRoundTrip(t *testing.T) {
	const v = 7
	sizes := []int{5, 0, 3, 6} // the empty batch is counted but not yielded
	for _, dtype := range []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16} {
		for _, kind := range []listKind{fixedSizeList, varList, largeList} {
			for _, stream := range []bool{false, true} {
				for _, alt := range []bool{false, true} {
					if alt && kind == varList {
						continue // alt types with fixed_size_list and large_list are enough
					}
					ext := map[bool]string{false: ".arrow", true: ".arrows"}[stream]
					name := fmt.Sprintf("%s %s%s", dtype, kind, ext)
					if alt {
						name += " int64 ids, float32 advantage, float64 old_logprob, int32 step"
					}
					t.Run(name, func(t *testing.T) {
						mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
						defer mem.AssertSize(t, 0)
						cols := testColumns(dtype, v, 1, 0)
						cols.Extra = noteColumn(mem)(0, 1)
						schema := withLogitsKind(InputSchema(v, dtype, cols, roundTripMeta), kind)
						cols.Extra["note"].Release()
						if alt {
							schema = altTypes(schema)
						}
						recs := buildBatches(t, mem, schema, dtype, v, sizes, noteColumn(mem))
						path := writeTemp(t, "in"+ext, encodeIPC(t, stream, schema, recs...))
						releaseRecords(recs)

						r, err := Open(path, mem)
						if err != nil {
							t.Fatal(err)
						}
						defer r.Close()
						meta := r.Meta()
						wantV := v
						if kind != fixedSizeList {
							wantV = 0 // known after the first row
						}
						if meta.V != wantV || meta.Dtype != dtype || meta.RunID != "run-42" ||
							!meta.HasAdvantage || !meta.HasOldLogprob || !meta.HasMask || !meta.HasStep {
							t.Fatalf("meta before the first batch: %+v", meta)
						}
						p := meta.Params
						if p.Temperature != 0.7 || p.LR != 1e-6 || p.ClipLow != 0.2 || !math.IsInf(p.ClipHigh, 1) {
							t.Fatalf("params %+v; want τ=0.7 η=1e-6 clip (0.2, +Inf)", p)
						}
						var indices []int
						var rows int64
						for r.Next() {
							b := r.Batch()
							indices = append(indices, b.Index)
							if b.FirstRow != rows {
								t.Fatalf("batch %d FirstRow %d; want %d", b.Index, b.FirstRow, rows)
							}
							checkBatch(t, b, dtype, v)
							checkPassthrough(t, b, mem)
							rows += int64(b.Input.Rows())
						}
						if err := r.Err(); err != nil {
							t.Fatal(err)
						}
						if fmt.Sprint(indices) != "[0 2 3]" || rows != 14 {
							t.Fatalf("batches %v with %d rows; want [0 2 3] with 14", indices, rows)
						}
						if r.Meta().V != v {
							t.Fatalf("V after reading: %d; want %d", r.Meta().V, v)
						}
						if err := r.Close(); err != nil {
							t.Fatal(err)
						}
					})
				}
			}
		}
	}
}

// checkPassthrough checks that Passthrough drops logits and keeps every other column, the
// unknown "note" included, with the schema metadata.
func checkPassthrough(t *testing.T, b *Batch, mem memory.Allocator) {
	t.Helper()
	p := b.Passthrough(mem)
	defer p.Release()
	if p.NumCols() != b.Record.NumCols()-1 || p.NumRows() != b.Record.NumRows() {
		t.Fatalf("passthrough %d cols %d rows; want %d cols %d rows", p.NumCols(), p.NumRows(),
			b.Record.NumCols()-1, b.Record.NumRows())
	}
	if idx := p.Schema().FieldIndices(ColLogits); len(idx) != 0 {
		t.Fatal("passthrough keeps logits")
	}
	if v, _ := p.Schema().Metadata().GetValue(MetaRunID); v != "run-42" {
		t.Fatalf("passthrough schema metadata lost: %v", p.Schema().Metadata())
	}
	idx := p.Schema().FieldIndices("note")
	if len(idx) != 1 {
		t.Fatalf("passthrough has no note column: %v", p.Schema())
	}
	note := p.Column(idx[0]).(*array.String)
	for i := 0; i < note.Len(); i++ {
		r := int(b.FirstRow) + i
		if r%4 == 0 {
			if !note.IsNull(i) {
				t.Fatalf("note row %d: %q; want null", i, note.Value(i))
			}
		} else if note.Value(i) != noteText(r) {
			t.Fatalf("note row %d: %q; want %q", i, note.Value(i), noteText(r))
		}
	}
}

// opaqueReader hides every method but Read, as a pipe does.
type opaqueReader struct{ r io.Reader }

func (o opaqueReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// withSpoolMemory lowers the size up to which an IPC file from a pipe is held in memory.
func withSpoolMemory(n int) Option { return func(o *options) { o.spoolMemory = n } }

func TestNonSeekableSources(t *testing.T) {
	const v = 5
	for _, tc := range []struct {
		name   string
		stream bool
		spool  int    // withSpoolMemory; 0: the default
		dir    string // WithTempDir: "" a fresh directory, "missing" one that does not exist
		err    string // expected error, "" none
	}{
		{name: "IPC file through a pipe, held in memory", dir: "missing"},
		{name: "IPC file through a pipe, spooled to disk", spool: 64},
		{name: "IPC file through a pipe, spool directory missing", spool: 64, dir: "missing",
			err: "spooling an IPC file from a pipe"},
		{name: "IPC stream through a pipe", stream: true, spool: 64, dir: "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			schema := InputSchema(v, polarity.BFloat16, testColumns(polarity.BFloat16, v, 1, 0), nil)
			recs := buildBatches(t, mem, schema, polarity.BFloat16, v, []int{4, 4}, nil)
			data := encodeIPC(t, tc.stream, schema, recs...)
			releaseRecords(recs)
			tmp := t.TempDir()
			opts := []Option{WithTempDir(tmp)}
			if tc.dir == "missing" {
				opts = []Option{WithTempDir(filepath.Join(tmp, "missing"))}
			}
			if tc.spool > 0 {
				opts = append(opts, withSpoolMemory(tc.spool))
			}
			r, err := NewReader(opaqueReader{bytes.NewReader(data)}, "pipe", mem, opts...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rows := 0
			for r.Next() {
				checkBatch(t, r.Batch(), polarity.BFloat16, v)
				rows += r.Batch().Input.Rows()
			}
			if err := r.Err(); err != nil || rows != 8 {
				t.Fatalf("read %d rows, err %v; want 8 rows", rows, err)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Fatalf("spool files left behind: %v", left)
			}
		})
	}
	t.Run("stdin", func(t *testing.T) {
		schema := InputSchema(v, polarity.Float32, testColumns(polarity.Float32, v, 1, 0), nil)
		recs := buildBatches(t, memory.DefaultAllocator, schema, polarity.Float32, v, []int{3}, nil)
		data := encodeIPC(t, true, schema, recs...)
		releaseRecords(recs)
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		go func() { pw.Write(data); pw.Close() }()
		saved := os.Stdin
		os.Stdin = pr
		defer func() { os.Stdin = saved; pr.Close() }()
		r, err := Open("-", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if !r.Next() || r.Batch().Input.Rows() != 3 {
			t.Fatalf("no batch of 3 rows from stdin: %v", r.Err())
		}
		checkBatch(t, r.Batch(), polarity.Float32, v)
	})
}

func TestEmptyInputs(t *testing.T) {
	const v = 4
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := InputSchema(v, polarity.Float16, testColumns(polarity.Float16, v, 1, 0), nil)
	empty := buildBatches(t, mem, schema, polarity.Float16, v, []int{0, 0}, nil)
	defer releaseRecords(empty)
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"IPC file with a schema and no batches", encodeIPC(t, false, schema)},
		{"IPC stream with a schema and no batches", encodeIPC(t, true, schema)},
		{"IPC file with zero-row batches", encodeIPC(t, false, schema, empty...)},
		{"IPC stream with zero-row batches", encodeIPC(t, true, schema, empty...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(c.data), "empty", mem)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Next() {
				t.Fatalf("yielded a batch of %d rows", r.Batch().Input.Rows())
			}
			if r.Err() != nil {
				t.Fatalf("err %v; want a clean end", r.Err())
			}
			if r.Meta().V != v {
				t.Fatalf("V %d; want %d", r.Meta().V, v)
			}
		})
	}
}

// TestFixedShapeTensor reads logits stored as the arrow.fixed_shape_tensor extension, which
// arrow-go v18 does not register: the field arrives as its fixed_size_list storage with the
// extension's field metadata.
func TestFixedShapeTensor(t *testing.T) {
	const v = 6
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	cols := testColumns(polarity.Float32, v, 4, 0)
	schema := InputSchema(v, polarity.Float32, cols, nil)
	fields := schema.Fields()
	fields[0].Metadata = arrow.NewMetadata(
		[]string{"ARROW:extension:name", "ARROW:extension:metadata"},
		[]string{"arrow.fixed_shape_tensor", `{"shape":[6]}`})
	schema = arrow.NewSchema(fields, nil)
	rec, err := BuildInput(mem, schema, &cols)
	if err != nil {
		t.Fatal(err)
	}
	data := encodeIPC(t, false, schema, rec)
	rec.Release()
	r, err := NewReader(bytes.NewReader(data), "tensor.arrow", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Next() {
		t.Fatal(r.Err())
	}
	checkBatch(t, r.Batch(), polarity.Float32, v)
}

func TestWrapError(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := InputSchema(3, polarity.Float32, testColumns(polarity.Float32, 3, 1, 0), nil)
	recs := buildBatches(t, mem, schema, polarity.Float32, 3, []int{2, 4}, nil)
	data := encodeIPC(t, true, schema, recs...)
	releaseRecords(recs)
	r, err := NewReader(bytes.NewReader(data), "logits.arrows", mem)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Next()
	r.Next()
	b := r.Batch()
	err = b.WrapError(&polarity.RowError{Row: 3, Column: "logits", Msg: "no finite logit"})
	want := "logits.arrows: batch 1, row 3 (input row 5): logits: no finite logit"
	if err.Error() != want {
		t.Fatalf("%q; want %q", err, want)
	}
	var ie *InputError
	if !errors.As(err, &ie) || ie.Row != 3 || ie.Global != 5 || ie.Column != "logits" {
		t.Fatalf("%#v", ie)
	}
	plain := b.WrapError(errors.New("device lost"))
	if plain.Error() != "logits.arrows: batch 1: device lost" {
		t.Fatalf("%q", plain)
	}
	if b.WrapError(nil) != nil {
		t.Fatal("WrapError(nil) != nil")
	}
}

func TestParams(t *testing.T) {
	for _, c := range []struct {
		md   map[string]string
		want string // error substring, "" for success
	}{
		{map[string]string{}, ""},
		{map[string]string{MetaTemperature: " 2 ", MetaClipLow: "inf"}, ""},
		{map[string]string{MetaTemperature: "abc"}, `papo.temperature="abc": want a finite number > 0`},
		{map[string]string{MetaTemperature: "0"}, "papo.temperature"},
		{map[string]string{MetaTemperature: "NaN"}, "papo.temperature"},
		{map[string]string{MetaLR: "inf"}, `papo.lr="inf": want a finite number`},
		{map[string]string{MetaClipLow: "-0.1"}, `papo.clip_low="-0.1"`},
		{map[string]string{MetaClipHigh: "x"}, "papo.clip_high"},
	} {
		p, err := ParamsFromMetadata(arrow.MetadataFrom(c.md))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.md, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: error %v; want it to contain %q", c.md, err, c.want)
		case c.want == "" && c.md[MetaTemperature] == " 2 " && (p.Temperature != 2 || !math.IsInf(p.ClipLow, 1)):
			t.Errorf("%v: %+v", c.md, p)
		}
	}
}

// TestServerOptions: WithStreamOnly refuses an IPC file; WithContract(false) reads a
// metadata-only stream of any schema and refuses one with a record batch; two requests back to
// back on one bufio.Reader are read one after the other.
func TestServerOptions(t *testing.T) {
	const v = 4
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	schema := InputSchema(v, polarity.Float32, testColumns(polarity.Float32, v, 1, 0), nil)
	recs := buildBatches(t, mem, schema, polarity.Float32, v, []int{3}, nil)
	defer releaseRecords(recs)
	md := arrow.NewMetadata([]string{"papo.request"}, []string{"rollback"})
	bare := arrow.NewSchema(nil, &md)
	noContract := WithContract(func(s *arrow.Schema) bool {
		r, _ := s.Metadata().GetValue("papo.request")
		return r != "rollback"
	})
	for _, tc := range []struct {
		name string
		data []byte
		err  string // from NewReader or the iteration; "" none
		rows int
	}{
		{name: "IPC file refused", data: encodeIPC(t, false, schema, recs...), err: "this is an Arrow IPC file"},
		{name: "stream", data: encodeIPC(t, true, schema, recs...), rows: 3},
		{name: "metadata only", data: encodeIPC(t, true, bare)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.data), "req", mem, WithStreamOnly(), noContract)
			if err == nil {
				for r.Next() {
					tc.rows -= r.Batch().Input.Rows()
				}
				err = r.Err()
				r.Close()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || tc.rows != 0 {
				t.Fatalf("err %v, %d rows unaccounted", err, tc.rows)
			}
		})
	}
	t.Run("rollback request with a batch", func(t *testing.T) {
		rb := arrow.NewSchema(schema.Fields(), &md)
		rec := array.NewRecord(rb, recs[0].Columns(), recs[0].NumRows())
		defer rec.Release()
		r, err := NewReader(bytes.NewReader(encodeIPC(t, true, rb, rec)), "req", mem, noContract)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if r.Next() || r.Err() == nil || !strings.Contains(r.Err().Error(), "metadata only") {
			t.Fatalf("Next read a batch of a metadata-only request (err %v)", r.Err())
		}
	})
	t.Run("two requests on one connection", func(t *testing.T) {
		conn := bufio.NewReaderSize(bytes.NewReader(append(encodeIPC(t, true, schema, recs...),
			encodeIPC(t, true, bare)...)), 1<<16)
		for i, want := range []int{3, 0} {
			r, err := NewReader(conn, "req", mem, WithStreamOnly(), noContract)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			rows := 0
			for r.Next() {
				rows += r.Batch().Input.Rows()
			}
			if r.Err() != nil || rows != want {
				t.Fatalf("request %d: %d rows, err %v; want %d", i, rows, r.Err(), want)
			}
			r.Close()
		}
		if _, err := conn.ReadByte(); err != io.EOF {
			t.Fatalf("bytes left after the two requests (err %v)", err)
		}
	})
}

// statsRecord builds a row-statistics input of n rows: token_id, then the six statistics in
// dtype, with the columns named in drop left out and a null in row nullRow of logit_max (−1:
// none); extra adds a logits column.
func statsRecord(t testing.TB, n int, dtype arrow.DataType, drop string, nullRow int, extra bool) arrow.Record {
	t.Helper()
	mem := memory.DefaultAllocator
	ib := array.NewInt32Builder(mem)
	for i := range n {
		ib.Append(int32(i))
	}
	fields := []arrow.Field{{Name: ColTokenID, Type: arrow.PrimitiveTypes.Int32}}
	arrs := []arrow.Array{ib.NewArray()}
	vals := []float64{1.5, 0.25, -0.5, 1.1, -0.2, 1.0} // m, s0−1, s1, s2, s3, u_a
	for k, name := range StatsColumnNames {
		if name == drop {
			continue
		}
		fields = append(fields, arrow.Field{Name: name, Type: dtype, Nullable: true})
		var a arrow.Array
		switch dtype.ID() {
		case arrow.INT64:
			b := array.NewInt64Builder(mem)
			for range n {
				b.Append(int64(vals[k]))
			}
			a = b.NewArray()
		case arrow.FLOAT32:
			b := array.NewFloat32Builder(mem)
			for i := range n {
				if k == 0 && i == nullRow {
					b.AppendNull()
				} else {
					b.Append(float32(vals[k]))
				}
			}
			a = b.NewArray()
		default:
			b := array.NewFloat64Builder(mem)
			for i := range n {
				if k == 0 && i == nullRow {
					b.AppendNull()
				} else {
					b.Append(vals[k])
				}
			}
			a = b.NewArray()
		}
		arrs = append(arrs, a)
	}
	if extra {
		lb := array.NewFixedSizeListBuilder(mem, 2, arrow.PrimitiveTypes.Float32)
		vb := lb.ValueBuilder().(*array.Float32Builder)
		for range n {
			lb.Append(true)
			vb.AppendValues([]float32{0, 1}, nil)
		}
		fields = append(fields, arrow.Field{Name: ColLogits, Type: arrow.FixedSizeListOf(2, arrow.PrimitiveTypes.Float32)})
		arrs = append(arrs, lb.NewArray())
	}
	return array.NewRecord(arrow.NewSchema(fields, nil), arrs, int64(n))
}

// TestRowStatisticsColumns: an input of row statistics instead of logits is read in float32
// and float64 (the batch carries Stats, no logits, token ids unbounded above); partial
// statistics, statistics beside logits, a wrong type and a null are errors naming the column.
func TestRowStatisticsColumns(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rec    arrow.Record
		err    string // "" none
		errCol string
	}{
		{name: "float64", rec: statsRecord(t, 5, arrow.PrimitiveTypes.Float64, "", -1, false)},
		{name: "float32", rec: statsRecord(t, 5, arrow.PrimitiveTypes.Float32, "", -1, false)},
		{name: "one missing", rec: statsRecord(t, 5, arrow.PrimitiveTypes.Float64, ColSumExp2V, -1, false),
			err: "missing sum_exp2_v", errCol: ColSumExp2V},
		{name: "beside logits", rec: statsRecord(t, 5, arrow.PrimitiveTypes.Float64, "", -1, true),
			err: "both logits and row statistics", errCol: ColLogits},
		{name: "integer statistics", rec: statsRecord(t, 5, arrow.PrimitiveTypes.Int64, "", -1, false),
			err: "want float32 or float64", errCol: ColLogitMax},
		{name: "null", rec: statsRecord(t, 5, arrow.PrimitiveTypes.Float64, "", 3, false),
			err: "logit_max is null", errCol: ColLogitMax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.rec.Release()
			r, err := NewReader(bytes.NewReader(encodeIPC(t, true, tc.rec.Schema(), tc.rec)), "stats", nil)
			var batches []*Batch
			if err == nil {
				for r.Next() {
					batches = append(batches, r.Batch())
					st := r.Batch().Input.Stats
					if st == nil || len(st.Max) != 5 || st.SumExpV[2] != -0.5 || st.Sampled[4] != 1 || r.Batch().Input.Logits.V != 0 ||
						r.Batch().Input.TokenID[4] != 4 || !r.Meta().RowStats {
						t.Fatalf("batch: %+v, meta %+v", st, r.Meta())
					}
				}
				err = r.Err()
				r.Close()
			}
			if tc.err == "" {
				if err != nil || len(batches) != 1 {
					t.Fatalf("%d batches, err %v", len(batches), err)
				}
				return
			}
			var ie *InputError
			if !errors.As(err, &ie) || ie.Column != tc.errCol || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v (column %q); want one saying %q in column %s", err, func() string {
					if ie != nil {
						return ie.Column
					}
					return ""
				}(), tc.err, tc.errCol)
			}
		})
	}
}

// TestTables: row-statistics tables as CSV and JSONL are read with types from the column
// names; bad values and missing columns are errors naming the input.
func TestTables(t *testing.T) {
	header := "token_id,step,logit_max,sum_exp_rest,sum_exp_v,sum_exp2,sum_exp2_v,sampled_logit,note\n"
	row := "3,0,1.5,0.25,-0.5,1.1,-0.2,1,hello\n"
	jrow := `{"token_id":3,"step":0,"logit_max":1.5,"sum_exp_rest":0.25,"sum_exp_v":-0.5,"sum_exp2":1.1,"sum_exp2_v":-0.2,"sampled_logit":"-Infinity","note":"x"}` + "\n"
	for _, tc := range []struct {
		name, ext, body, err string
		rows                 int
	}{
		{"csv", "csv", header + row + row, "", 2},
		{"csv with an empty advantage", "csv", "advantage," + header + "," + row, "", 1},
		{"csv bad number", "csv", header + "3,0,x,0.25,-0.5,1.1,-0.2,1,hello\n", "logit_max", 0},
		{"csv without statistics", "csv", "token_id,step\n1,0\n", "missing required column logits", 0},
		{"jsonl", "jsonl", jrow + "\n" + jrow, "", 2},
		{"jsonl bad line", "jsonl", jrow + "{nope\n", "line 2", 0},
		{"jsonl wrong type", "jsonl", strings.Replace(jrow, `"token_id":3`, `"token_id":"three"`, 1), "token_id", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in."+tc.ext)
			if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path, nil)
			rows := 0
			if err == nil {
				for r.Next() {
					rows += r.Batch().Input.Rows()
					if r.Batch().Input.Stats == nil {
						t.Fatal("no row statistics in the batch")
					}
				}
				err = r.Err()
				r.Close()
			}
			if tc.err == "" {
				if err != nil || rows != tc.rows {
					t.Fatalf("%d rows, err %v; want %d", rows, err, tc.rows)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %v; want one naming %s and saying %q", err, path, tc.err)
			}
		})
	}
}
