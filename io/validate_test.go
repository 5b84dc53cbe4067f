package papoio

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

func i32buf(v ...int32) *memory.Buffer {
	return memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(v))
}
func i64buf(v ...int64) *memory.Buffer {
	return memory.NewBufferBytes(arrow.Int64Traits.CastToBytes(v))
}
func rawbuf(b ...byte) *memory.Buffer { return memory.NewBufferBytes(b) }

// view encodes one string-view slot: inline when len(s) ≤ 12, else a reference to (buffer, offset).
func view(size int32, s string, buffer, offset int32) []byte {
	v := make([]byte, 16)
	binary.LittleEndian.PutUint32(v, uint32(size))
	if size <= 12 {
		copy(v[4:], s)
		return v
	}
	copy(v[4:8], s)
	binary.LittleEndian.PutUint32(v[8:], uint32(buffer))
	binary.LittleEndian.PutUint32(v[12:], uint32(offset))
	return v
}

func TestValidateData(t *testing.T) {
	i32 := arrow.PrimitiveTypes.Int32
	ints := func(n int, vals ...int32) arrow.ArrayData {
		return array.NewData(i32, n, []*memory.Buffer{nil, i32buf(vals...)}, nil, 0, 0)
	}
	strs := array.NewData(arrow.BinaryTypes.String, 2, []*memory.Buffer{nil, i32buf(0, 1, 2), rawbuf('a', 'b')}, nil, 0, 0)
	dictType := &arrow.DictionaryType{IndexType: arrow.PrimitiveTypes.Int8, ValueType: arrow.BinaryTypes.String}
	dict := func(valid *memory.Buffer, nulls int, idx ...byte) arrow.ArrayData {
		return array.NewDataWithDictionary(dictType, len(idx), []*memory.Buffer{valid, rawbuf(idx...)}, nulls, 0, strs)
	}
	long := "0123456789abcdefghij" // 20 bytes: stored out of line
	views := func(slots ...[]byte) arrow.ArrayData {
		var b []byte
		for _, s := range slots {
			b = append(b, s...)
		}
		return array.NewData(arrow.BinaryTypes.StringView, len(slots), []*memory.Buffer{nil, rawbuf(b...), rawbuf([]byte(long)...)}, nil, 0, 0)
	}
	union := arrow.DenseUnionOf([]arrow.Field{{Name: "i", Type: i32}, {Name: "s", Type: arrow.BinaryTypes.String}}, []arrow.UnionTypeCode{0, 1})
	dense := func(codes []byte, offsets ...int32) arrow.ArrayData {
		return array.NewData(union, len(codes), []*memory.Buffer{nil, rawbuf(codes...), i32buf(offsets...)},
			[]arrow.ArrayData{ints(2, 5, 6), strs}, 0, 0)
	}
	sparseType := arrow.SparseUnionOf([]arrow.Field{{Name: "i", Type: i32}}, []arrow.UnionTypeCode{3})
	ree := func(n int, ends ...int32) arrow.ArrayData {
		typ := arrow.RunEndEncodedOf(i32, arrow.PrimitiveTypes.Int64)
		vals := make([]int64, len(ends))
		return array.NewData(typ, n, []*memory.Buffer{nil}, []arrow.ArrayData{ints(len(ends), ends...),
			array.NewData(arrow.PrimitiveTypes.Int64, len(ends), []*memory.Buffer{nil, i64buf(vals...)}, nil, 0, 0)}, 0, 0)
	}
	listView := func(offsets, sizes []int32) arrow.ArrayData {
		return array.NewData(arrow.ListViewOf(i32), len(offsets), []*memory.Buffer{nil, i32buf(offsets...), i32buf(sizes...)},
			[]arrow.ArrayData{ints(5, 1, 2, 3, 4, 5)}, 0, 0)
	}

	for _, c := range []struct {
		name string
		data arrow.ArrayData
		want string // error substring; "" for valid data
	}{
		{"int32", ints(3, 1, 2, 3), ""},
		{"int32 with a short value buffer", ints(4, 1, 2, 3), "value buffer of 12 bytes is too short for 4 int32 values"},
		{"unknown null count without a bitmap", array.NewData(i32, 3, []*memory.Buffer{nil, i32buf(1, 2, 3)}, nil, -1, 0),
			"null count -1 without a validity bitmap"},
		{"short bitmap", array.NewData(i32, 9, []*memory.Buffer{rawbuf(0xff), i32buf(make([]int32, 9)...)}, nil, 1, 0),
			"validity bitmap of 1 bytes is too short for 9 rows"},
		{"null count over the length", array.NewData(i32, 3, []*memory.Buffer{rawbuf(0), i32buf(1, 2, 3)}, nil, 5, 0),
			"null count 5 exceeds the 3 rows"},
		{"bool with a short buffer", array.NewData(arrow.FixedWidthTypes.Boolean, 9, []*memory.Buffer{nil, rawbuf(1)}, nil, 0, 0),
			"value buffer of 1 bytes is too short"},
		{"string", strs, ""},
		{"string offset past the data", array.NewData(arrow.BinaryTypes.String, 2, []*memory.Buffer{nil, i32buf(0, 2, 9), rawbuf('a', 'b')}, nil, 0, 0),
			"offsets 2 then 9 at row 1"},
		{"string offsets decreasing", array.NewData(arrow.BinaryTypes.String, 2, []*memory.Buffer{nil, i32buf(0, 2, 1), rawbuf('a', 'b')}, nil, 0, 0),
			"want non-decreasing offsets"},
		{"string offsets buffer short", array.NewData(arrow.BinaryTypes.String, 3, []*memory.Buffer{nil, i32buf(0, 1), rawbuf('a')}, nil, 0, 0),
			"offsets buffer of 8 bytes is too short for 3 rows"},
		{"list past its child", array.NewData(arrow.ListOf(i32), 2, []*memory.Buffer{nil, i32buf(0, 3, 5)}, []arrow.ArrayData{ints(4, 1, 2, 3, 4)}, 0, 0),
			"within the child [0, 4]"},
		{"large list", array.NewData(arrow.LargeListOf(i32), 2, []*memory.Buffer{nil, i64buf(0, 3, 4)}, []arrow.ArrayData{ints(4, 1, 2, 3, 4)}, 0, 0), ""},
		{"fixed_size_list short child", array.NewData(arrow.FixedSizeListOf(3, i32), 2, []*memory.Buffer{nil}, []arrow.ArrayData{ints(5, 1, 2, 3, 4, 5)}, 0, 0),
			"need 6 child values; found 5"},
		{"struct short child", array.NewData(arrow.StructOf(arrow.Field{Name: "a", Type: i32}), 3, []*memory.Buffer{nil}, []arrow.ArrayData{ints(2, 1, 2)}, 0, 0),
			"struct field a has 2 values; want at least 3"},
		{"dictionary", dict(nil, 0, 0, 1, 1), ""},
		{"dictionary index out of range", dict(nil, 0, 0, 2), "row 1: dictionary index 2 is outside the dictionary's 2 values"},
		{"dictionary negative index", dict(nil, 0, 0xff), "dictionary index -1"},
		{"dictionary bad index under a null", dict(rawbuf(0b01), 1, 0, 7), ""},
		{"string view", views(view(2, "hi", 0, 0), view(20, long, 0, 0)), ""},
		{"string view past its data", views(view(20, long, 0, 5)), "row 0: view of 20 bytes at buffer 0, offset 5"},
		{"string view in a missing buffer", views(view(2, "hi", 0, 0), view(13, long, 1, 0)), "row 1: view of 13 bytes at buffer 1"},
		{"string view of negative length", views(view(-3, "", 0, 0)), "negative length -3"},
		{"list view", listView([]int32{0, 3}, []int32{3, 2}), ""},
		{"list view past its child", listView([]int32{0, 3}, []int32{2, 3}), "row 1: list view [3, +3) is outside the child's 5 values"},
		{"dense union", dense([]byte{0, 1, 1}, 1, 0, 1), ""},
		{"dense union unknown type code", dense([]byte{0, 5}, 0, 0), "row 1: union type code 5 is not one of"},
		{"dense union offset past its child", dense([]byte{0, 1}, 2, 0), "row 0: union offset 2 is outside child 0's 2 values"},
		{"sparse union short child", array.NewData(sparseType, 3, []*memory.Buffer{nil, rawbuf(3, 3, 3)}, []arrow.ArrayData{ints(2, 1, 2)}, 0, 0),
			"sparse union child 0 has 2 values; want at least 3"},
		{"run-end encoded", ree(5, 2, 5), ""},
		{"run ends not increasing", ree(5, 3, 3), "run end 3 after 3"},
		{"runs too short", ree(5, 2, 4), "the runs cover 4 rows; want 5"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := validateData(c.data, 0)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("valid data rejected: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("corrupt data accepted; want an error containing %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if err != nil {
				return
			}
			// What validateData accepts, arrow-go's accessors and the writers must handle.
			arr := array.MakeFromData(c.data)
			defer arr.Release()
			for i := 0; i < arr.Len(); i++ {
				arr.ValueStr(i)
				if _, err := appendJSONValue(nil, arr, i); err != nil {
					t.Fatalf("row %d: %v", i, err)
				}
			}
		})
	}
}
