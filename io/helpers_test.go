package papoio

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/io/parquet"
	"github.com/entropy-polarity/papo/polarity"
)

// tables gives the tests Parquet: io/parquet's codec, which does not import papoio.
var tables = WithTables(parquet.Codec{})

// logitValue is the test logit of global row r, vocabulary entry j: a multiple of 1/16 in
// [-8, 8), exact in float32, float16 and bfloat16 alike.
func logitValue(r, j int) float32 {
	return float32((r*131+j*71)%257-128) / 16
}

func bf16Bits(v float32) uint16 { return uint16(math.Float32bits(v) >> 16) }

// specialF32 are float32 bit patterns that a careless conversion would change: io must pass
// them through bit for bit (it does not check logits for NaN: the engine does).
var specialF32 = []uint32{0x80000000, 0x00000001, 0x7f7fffff, 0x7fc00001, 0xff800000}

// testColumns makes n rows of test input starting at global row first.
func testColumns(dtype polarity.Dtype, v, n, first int) InputColumns {
	var c InputColumns
	b := &c.Batch
	b.Logits = polarity.Logits{Dtype: dtype, V: v}
	for i := 0; i < n; i++ {
		r := first + i
		for j := 0; j < v; j++ {
			x := logitValue(r, j)
			switch dtype {
			case polarity.Float32:
				if k := (r + j) % 13; k < len(specialF32) && j == 0 {
					x = math.Float32frombits(specialF32[k])
				}
				b.Logits.F32 = append(b.Logits.F32, x)
			case polarity.Float16:
				b.Logits.Bits = append(b.Logits.Bits, float16.New(x).Uint16())
			case polarity.BFloat16:
				b.Logits.Bits = append(b.Logits.Bits, bf16Bits(x))
			}
		}
		b.TokenID = append(b.TokenID, int32((r*37)%v))
		b.Advantage = append(b.Advantage, float64(r%7-3)/4)
		b.AdvantageValid = append(b.AdvantageValid, r%5 != 3)
		b.OldLogprob = append(b.OldLogprob, -float32(r%9)/8)
		b.OldLogprobValid = append(b.OldLogprobValid, r%4 != 2)
		b.Mask = append(b.Mask, r%6 != 1)
		c.Step = append(c.Step, int64(100+r/4))
		c.SequenceID = append(c.SequenceID, int64(r/3))
		c.Position = append(c.Position, int32(r%3))
	}
	return c
}

// withLogitsKind returns s with its logits field stored as kind (same element field).
func withLogitsKind(s *arrow.Schema, kind listKind) *arrow.Schema {
	fields := s.Fields()
	for i, f := range fields {
		if f.Name != ColLogits {
			continue
		}
		elem := f.Type.(*arrow.FixedSizeListType).ElemField()
		switch kind {
		case varList:
			fields[i].Type = arrow.ListOfField(elem)
		case largeList:
			fields[i].Type = arrow.LargeListOfField(elem)
		}
	}
	md := s.Metadata()
	return arrow.NewSchema(fields, &md)
}

// withFieldType returns s with the type of column name replaced.
func withFieldType(s *arrow.Schema, name string, dt arrow.DataType) *arrow.Schema {
	fields := s.Fields()
	for i := range fields {
		if fields[i].Name == name {
			fields[i].Type = dt
		}
	}
	md := s.Metadata()
	return arrow.NewSchema(fields, &md)
}

// encodeIPC writes recs as an IPC file or stream and returns the bytes.
func encodeIPC(t testing.TB, stream bool, schema *arrow.Schema, recs ...arrow.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w interface {
		Write(arrow.Record) error
		Close() error
	}
	if stream {
		w = ipc.NewWriter(&buf, ipc.WithSchema(schema))
	} else {
		fw, err := ipc.NewFileWriter(&positionWriter{w: &buf}, ipc.WithSchema(schema))
		if err != nil {
			t.Fatal(err)
		}
		w = fw
	}
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// buildBatches builds one record per entry of sizes, rows numbered globally.
func buildBatches(t testing.TB, mem memory.Allocator, schema *arrow.Schema, dtype polarity.Dtype, v int,
	sizes []int, extra func(first, n int) map[string]arrow.Array) []arrow.Record {
	t.Helper()
	var recs []arrow.Record
	first := 0
	for _, n := range sizes {
		cols := testColumns(dtype, v, n, first)
		if extra != nil {
			cols.Extra = extra(first, n)
		}
		rec, err := BuildInput(mem, schema, &cols)
		for _, a := range cols.Extra {
			a.Release()
		}
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
		first += n
	}
	return recs
}

func releaseRecords(recs []arrow.Record) {
	for _, r := range recs {
		r.Release()
	}
}

// noteColumn is an unknown string column that must reach the output.
func noteColumn(mem memory.Allocator) func(first, n int) map[string]arrow.Array {
	return func(first, n int) map[string]arrow.Array {
		b := array.NewStringBuilder(mem)
		defer b.Release()
		for i := 0; i < n; i++ {
			if (first+i)%4 == 0 {
				b.AppendNull()
			} else {
				b.Append(noteText(first + i))
			}
		}
		return map[string]arrow.Array{"note": b.NewArray()}
	}
}

func noteText(r int) string { return "tok,\"" + string(rune('a'+r%26)) + "\"" }
