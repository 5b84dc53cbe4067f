package papoio

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

const badV = 7

// baseRecord is a valid float32 input record of n rows starting at global row first.
func baseRecord(t testing.TB, mem memory.Allocator, n, first int, edit func(*InputColumns)) arrow.Record {
	t.Helper()
	cols := testColumns(polarity.Float32, badV, n, first)
	if edit != nil {
		edit(&cols)
	}
	schema := InputSchema(badV, polarity.Float32, cols, map[string]string{MetaRunID: "bad"})
	rec, err := BuildInput(mem, schema, &cols)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// replaced returns rec with column name replaced by arr (field f), or dropped when arr is nil,
// or appended when rec has no such column.
func replaced(rec arrow.Record, f arrow.Field, arr arrow.Array) arrow.Record {
	var fields []arrow.Field
	var cols []arrow.Array
	found := false
	for i, old := range rec.Schema().Fields() {
		if old.Name != f.Name {
			fields, cols = append(fields, old), append(cols, rec.Column(i))
			continue
		}
		found = true
		if arr != nil {
			fields, cols = append(fields, f), append(cols, arr)
		}
	}
	if !found && arr != nil {
		fields, cols = append(fields, f), append(cols, arr)
	}
	md := rec.Schema().Metadata()
	return array.NewRecord(arrow.NewSchema(fields, &md), cols, rec.NumRows())
}

// streamBoundaries encodes recs as an IPC stream and returns the bytes and the offset after
// each record's message (the schema is written with the first).
func streamBoundaries(t testing.TB, recs []arrow.Record) ([]byte, []int) {
	t.Helper()
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(recs[0].Schema()))
	var ends []int
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, buf.Len())
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), ends
}

func float32Array(mem memory.Allocator, vals []float32, valid []bool) arrow.Array {
	b := array.NewFloat32Builder(mem)
	defer b.Release()
	b.AppendValues(vals, valid)
	return b.NewArray()
}

func TestBadInput(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	three := func(edit func(*InputColumns)) []arrow.Record {
		var recs []arrow.Record
		for i := 0; i < 3; i++ {
			var e func(*InputColumns)
			if i == 1 {
				e = edit
			}
			recs = append(recs, baseRecord(t, mem, 4, 4*i, e))
		}
		return recs
	}
	// encode writes recs (released afterwards) as a stream, or a file.
	encode := func(stream bool, recs ...arrow.Record) []byte {
		defer releaseRecords(recs)
		return encodeIPC(t, stream, recs[0].Schema(), recs...)
	}
	// with edits one column of a single 4-row record.
	with := func(f arrow.Field, arr arrow.Array) []byte {
		base := baseRecord(t, mem, 4, 0, nil)
		defer base.Release()
		if arr != nil {
			defer arr.Release()
		}
		return encode(true, replaced(base, f, arr))
	}
	big := []arrow.Record{baseRecord(t, mem, 20, 0, nil), baseRecord(t, mem, 20, 20, nil), baseRecord(t, mem, 20, 40, nil)}
	bigStream, ends := streamBoundaries(t, big)
	bigFile := encodeIPC(t, false, big[0].Schema(), big...)
	releaseRecords(big)
	listSchema := func(v int) *arrow.Schema {
		return withLogitsKind(InputSchema(v, polarity.Float32, testColumns(polarity.Float32, v, 1, 0), nil), varList)
	}
	listOf := func(v, n, first int) arrow.Record {
		cols := testColumns(polarity.Float32, v, n, first)
		rec, err := BuildInput(mem, listSchema(badV), &cols)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	// logitsList builds a list<float32> logits column with the given row lengths and nulls.
	logitsList := func(lengths []int, nullRow, nullValue int) arrow.Array {
		b := array.NewListBuilder(mem, arrow.PrimitiveTypes.Float32)
		defer b.Release()
		vb := b.ValueBuilder().(*array.Float32Builder)
		k := 0
		for i, l := range lengths {
			if i == nullRow {
				b.AppendNull()
				continue
			}
			b.Append(true)
			for j := 0; j < l; j++ {
				if k == nullValue {
					vb.AppendNull()
				} else {
					vb.Append(float32(j))
				}
				k++
			}
		}
		return b.NewArray()
	}
	logitsField := arrow.Field{Name: ColLogits, Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)}
	i32 := func(vals []int32, valid []bool) arrow.Array {
		b := array.NewInt32Builder(mem)
		defer b.Release()
		b.AppendValues(vals, valid)
		return b.NewArray()
	}
	i64 := func(vals []int64, valid []bool) arrow.Array {
		b := array.NewInt64Builder(mem)
		defer b.Release()
		b.AppendValues(vals, valid)
		return b.NewArray()
	}
	f64 := func(vals []float64, valid []bool) arrow.Array {
		b := array.NewFloat64Builder(mem)
		defer b.Release()
		b.AppendValues(vals, valid)
		return b.NewArray()
	}
	fsl := func(elem arrow.DataType, md arrow.Metadata) (arrow.Field, arrow.Array) {
		b := array.NewFixedSizeListBuilder(mem, badV, elem)
		defer b.Release()
		for i := 0; i < 4; i++ {
			b.Append(true)
			for j := 0; j < badV; j++ {
				switch vb := b.ValueBuilder().(type) {
				case *array.Int32Builder:
					vb.Append(int32(j))
				case *array.Uint16Builder:
					vb.Append(uint16(j))
				case *array.Float32Builder:
					vb.Append(float32(j))
				}
			}
		}
		return arrow.Field{Name: ColLogits, Type: arrow.FixedSizeListOf(badV, elem), Metadata: md}, b.NewArray()
	}
	utf8 := func(n int) arrow.Array {
		b := array.NewStringBuilder(mem)
		defer b.Release()
		for i := 0; i < n; i++ {
			b.Append("x")
		}
		return b.NewArray()
	}

	cases := []struct {
		name string
		data []byte
		want []string // substrings of the error, besides the input name
	}{
		{"empty file", nil, []string{"empty input (0 bytes)"}},
		{"garbage", []byte("hello, this is not arrow at all\n"), []string{"not an Arrow IPC file or stream", "68 65 6c 6c"}},
		{"parquet", []byte("PAR1\x15\x04\x15\x10"), []string{"Parquet file", "Arrow IPC"}},
		{"stream cut inside the schema", bigStream[:12], []string{"reading the schema", "truncated"}},
		{"stream cut inside batch 2's body", bigStream[:ends[1]+(ends[2]-ends[1])/2], []string{"batch 2", "truncated message body"}},
		{"stream cut after batch 2's length prefix", bigStream[:ends[1]+8], []string{"batch 2", "truncated message metadata (0 of"}},
		{"stream cut inside batch 2's prefix", bigStream[:ends[1]+2], []string{"batch 2", "truncated message prefix (2 of 4 bytes)"}},
		{"IPC file cut inside batch 1", bigFile[:len(bigFile)/2], []string{"batch 1", "no valid footer", "truncated"}},
		{"IPC file cut inside its footer", bigFile[:len(bigFile)-20], []string{"batch 3", "footer"}},
		{"IPC file of 10 bytes", bigFile[:10], []string{"Arrow IPC file"}},
		{"missing logits", with(arrow.Field{Name: ColLogits}, nil),
			[]string{"missing required column logits", "present: token_id int32, advantage float64"}},
		{"missing token_id", with(arrow.Field{Name: ColTokenID}, nil), []string{"missing required column token_id", "present: logits"}},
		{"token_id float32", with(arrow.Field{Name: ColTokenID, Type: arrow.PrimitiveTypes.Float32},
			float32Array(mem, make([]float32, 4), nil)), []string{"column token_id has type float32; want int32 or int64"}},
		{"advantage utf8", with(arrow.Field{Name: ColAdvantage, Type: arrow.BinaryTypes.String}, utf8(4)),
			[]string{"column advantage has type utf8; want float32 or float64"}},
		{"mask int32", with(arrow.Field{Name: ColMask, Type: arrow.PrimitiveTypes.Int32}, i32(make([]int32, 4), nil)),
			[]string{"column mask has type int32; want bool"}},
		{"step float64", with(arrow.Field{Name: ColStep, Type: arrow.PrimitiveTypes.Float64}, f64(make([]float64, 4), nil)),
			[]string{"column step has type float64; want int64 or int32"}},
		{"sequence_id utf8", with(arrow.Field{Name: ColSequenceID, Type: arrow.BinaryTypes.String}, utf8(4)),
			[]string{"column sequence_id has type utf8; want int64 or int32"}},
		{"logits of int32", with(fsl(arrow.PrimitiveTypes.Int32, arrow.Metadata{})),
			[]string{"logits elements have type int32; want fixed_size_list<float32>[V]"}},
		{"logits not a list", with(arrow.Field{Name: ColLogits, Type: arrow.PrimitiveTypes.Float32},
			float32Array(mem, make([]float32, 4), nil)), []string{"logits has type float32; want fixed_size_list"}},
		{"uint16 logits without papo.dtype", with(fsl(arrow.PrimitiveTypes.Uint16, arrow.Metadata{})),
			[]string{"uint16 without field metadata papo.dtype", "add papo.dtype=bfloat16"}},
		{"papo.dtype=bfloat16 on float32 logits", with(fsl(arrow.PrimitiveTypes.Float32,
			arrow.NewMetadata([]string{MetaDtype}, []string{"bfloat16"}))),
			[]string{`logits elements are float32 but logits field says papo.dtype="bfloat16"`}},
		{"papo.dtype=fp8", with(fsl(arrow.PrimitiveTypes.Uint16, arrow.NewMetadata([]string{MetaDtype}, []string{"fp8"}))),
			[]string{`papo.dtype="fp8"`, "unknown dtype"}},
		{"duplicate token_id", func() []byte {
			base := baseRecord(t, mem, 4, 0, nil)
			defer base.Release()
			fields := append(base.Schema().Fields(), arrow.Field{Name: ColTokenID, Type: arrow.PrimitiveTypes.Int32})
			cols := append(base.Columns(), base.Column(1))
			return encode(true, array.NewRecord(arrow.NewSchema(fields, nil), cols, 4))
		}(), []string{"column token_id appears 2 times"}},
		{"V changes between batches (list)", encode(true, listOf(badV, 4, 0), func() arrow.Record {
			cols := testColumns(polarity.Float32, 5, 3, 4)
			rec, err := BuildInput(mem, listSchema(5), &cols)
			if err != nil {
				t.Fatal(err)
			}
			return rec
		}()), []string{"batch 1, row 0 (input row 4)", "logits row has 5 values; want V=7"}},
		{"V changes within a batch (list)", with(logitsField, logitsList([]int{7, 7, 6, 7}, -1, -1)),
			[]string{"batch 0, row 2 (input row 2)", "logits row has 6 values; want V=7"}},
		{"first list row empty", with(logitsField, logitsList([]int{0, 0, 0, 0}, -1, -1)),
			[]string{"batch 0, row 0", "first logits row has 0 values"}},
		{"null logits row (list)", with(logitsField, logitsList([]int{7, 7, 7, 7}, 1, -1)),
			[]string{"batch 0, row 1 (input row 1)", "logits is null"}},
		{"null value inside a logits row", with(logitsField, logitsList([]int{7, 7, 7, 7}, -1, 17)),
			[]string{"batch 0, row 2 (input row 2)", "logits value 3 of the row is null"}},
		{"token_id out of range", encode(false, three(func(c *InputColumns) { c.Batch.TokenID[2] = badV })...),
			[]string{"batch 1, row 2 (input row 6): token_id 7 is outside [0, 7)"}},
		{"negative int64 token_id", with(arrow.Field{Name: ColTokenID, Type: arrow.PrimitiveTypes.Int64},
			i64([]int64{0, 1, -1, 2}, nil)), []string{"row 2 (input row 2): token_id -1 is outside [0, 7)"}},
		{"huge int64 token_id", with(arrow.Field{Name: ColTokenID, Type: arrow.PrimitiveTypes.Int64},
			i64([]int64{0, 1 << 40, 1, 2}, nil)), []string{"row 1 (input row 1): token_id 1099511627776 is outside"}},
		{"null token_id", with(arrow.Field{Name: ColTokenID, Type: arrow.PrimitiveTypes.Int32},
			i32([]int32{0, 1, 2, 3}, []bool{true, false, true, true})), []string{"row 1 (input row 1): token_id is null"}},
		{"NaN advantage", encode(true, three(func(c *InputColumns) { c.Batch.Advantage[1] = math.NaN() })...),
			[]string{"batch 1, row 1 (input row 5): advantage is NaN; want a finite number"}},
		{"+Inf advantage (float32 column)", with(arrow.Field{Name: ColAdvantage, Type: arrow.PrimitiveTypes.Float32},
			float32Array(mem, []float32{0, 1, float32(math.Inf(1)), 2}, nil)), []string{"row 2 (input row 2): advantage is +Inf"}},
		{"+Inf old_logprob", with(arrow.Field{Name: ColOldLogprob, Type: arrow.PrimitiveTypes.Float32},
			float32Array(mem, []float32{0, float32(math.Inf(1)), -1, -2}, nil)), []string{"row 1 (input row 1): old_logprob is +Inf"}},
		{"NaN old_logprob (float64 column)", with(arrow.Field{Name: ColOldLogprob, Type: arrow.PrimitiveTypes.Float64},
			f64([]float64{0, -1, -1, math.NaN()}, nil)), []string{"row 3 (input row 3): old_logprob is NaN"}},
		// A NaN or ±Inf under a null is no value: the error names the first one present.
		{"+Inf advantage after a null NaN", with(arrow.Field{Name: ColAdvantage, Type: arrow.PrimitiveTypes.Float32},
			float32Array(mem, []float32{float32(math.NaN()), 1, float32(math.Inf(-1)), 2}, []bool{false, true, true, true})),
			[]string{"row 2 (input row 2): advantage is -Inf"}},
		{"NaN old_logprob after a null +Inf", with(arrow.Field{Name: ColOldLogprob, Type: arrow.PrimitiveTypes.Float32},
			float32Array(mem, []float32{float32(math.Inf(1)), -1, float32(math.NaN()), -2}, []bool{false, true, true, true})),
			[]string{"row 2 (input row 2): old_logprob is NaN"}},
		{"+Inf old_logprob (float64 column) after a null NaN", with(arrow.Field{Name: ColOldLogprob, Type: arrow.PrimitiveTypes.Float64},
			f64([]float64{math.NaN(), -1, math.Inf(1), -2}, []bool{false, true, true, true})),
			[]string{"row 2 (input row 2): old_logprob is +Inf"}},
		{"null step", with(arrow.Field{Name: ColStep, Type: arrow.PrimitiveTypes.Int64},
			i64([]int64{1, 1, 1, 1}, []bool{true, true, true, false})), []string{"row 3 (input row 3): step is null"}},
		{"bad papo.temperature", func() []byte {
			rec := baseRecord(t, mem, 2, 0, nil)
			defer rec.Release()
			md := arrow.NewMetadata([]string{MetaTemperature}, []string{"hot"})
			s := arrow.NewSchema(rec.Schema().Fields(), &md)
			return encode(true, array.NewRecord(s, rec.Columns(), rec.NumRows()))
		}(), []string{`schema metadata papo.temperature="hot": want a finite number > 0`}},
		{"negative papo.clip_low", func() []byte {
			rec := baseRecord(t, mem, 2, 0, nil)
			defer rec.Release()
			md := arrow.NewMetadata([]string{MetaClipLow}, []string{"-0.2"})
			s := arrow.NewSchema(rec.Schema().Fields(), &md)
			return encode(false, array.NewRecord(s, rec.Columns(), rec.NumRows()))
		}(), []string{`papo.clip_low="-0.2": want a number ≥ 0`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := "bad.arrows"
			var r *Reader
			var err error
			if c.data == nil {
				path := writeTemp(t, name, nil)
				name = path
				r, err = Open(path, mem)
			} else {
				r, err = NewReader(bytes.NewReader(c.data), name, mem)
			}
			rows := 0
			if err == nil {
				for r.Next() {
					rows += r.Batch().Input.Rows()
				}
				err = r.Err()
				if cerr := r.Close(); cerr != nil {
					t.Errorf("close: %v", cerr)
				}
			}
			if err == nil {
				t.Fatalf("no error after %d rows; want one containing %q", rows, c.want)
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{name + ": "}, c.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestStreamEndMarker (issue 21 item 2): a stream is whole only when it ends with its
// end-of-stream marker (8 bytes, or the 4 zero bytes of writers before Arrow 0.15). Bytes that
// end between two messages without it are a stream whose writer died or whose copy was cut: an
// error naming the batch, never a shorter input read as complete.
func TestStreamEndMarker(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	recs := []arrow.Record{baseRecord(t, mem, 3, 0, nil), baseRecord(t, mem, 3, 3, nil)}
	data, ends := streamBoundaries(t, recs)
	releaseRecords(recs)
	cut := data[:ends[0]]
	for _, tc := range []struct {
		name    string
		data    []byte
		batches int
		err     string
	}{
		{"whole", data, 2, ""},
		{"8-byte marker after batch 1", append(bytes.Clone(cut), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0), 1, ""},
		{"4-byte marker after batch 1", append(bytes.Clone(cut), 0, 0, 0, 0), 1, ""},
		{"cut after batch 1", cut, 1, "batch 1: after 1 complete record batches: the stream ends between two messages without its end-of-stream marker"},
		{"cut after the schema", data[:ends[0]-(ends[1]-ends[0])], 0, "batch 0: after 0 complete record batches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tc.data), "cut.arrows", mem)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			n := 0
			for r.Next() {
				n++
			}
			if n != tc.batches {
				t.Errorf("%d batches; want %d", n, tc.batches)
			}
			switch {
			case tc.err == "" && r.Err() != nil:
				t.Errorf("error %v; want a clean end", r.Err())
			case tc.err != "" && (r.Err() == nil || !strings.Contains(r.Err().Error(), tc.err) || !strings.Contains(r.Err().Error(), "cut.arrows")):
				t.Errorf("error %v; want one naming cut.arrows and saying %q", r.Err(), tc.err)
			}
		})
	}
}

func TestBufferLimit(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := baseRecord(t, mem, 64, 0, nil) // 64×7 float32 logits: a body well over 1 KiB
	data := map[string][]byte{"stream": encodeIPC(t, true, rec.Schema(), rec), "file": encodeIPC(t, false, rec.Schema(), rec)}
	rec.Release()
	for name, d := range data {
		t.Run(name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(d), "big", mem, WithMaxBufferBytes(1024))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Next() {
				t.Fatal("read a batch over the limit")
			}
			if err := r.Err(); err == nil || !errors.Is(err, ErrBufferLimit) || !strings.Contains(err.Error(), " 1024 bytes") ||
				!strings.Contains(err.Error(), "batch 0") {
				t.Fatalf("err %v; want the buffer limit named, in batch 0", err)
			}
		})
	}
}
