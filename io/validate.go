package papoio

import (
	"fmt"

	"github.com/apache/arrow/go/v17/arrow"
	"github.com/apache/arrow/go/v17/arrow/array"
	"github.com/apache/arrow/go/v17/arrow/memory"
)

// maxNesting bounds the recursion of validateData (arrow-go's IPC reader stops at 64 too).
const maxNesting = 64

// validateData checks that an array's buffers are long enough for its length and offset, and that
// the offsets of variable-length layouts stay inside their data. arrow-go v17 reads IPC buffers
// without these checks, and the accessors index the buffers without bounds checks of their own,
// so a corrupt input would panic far from where it was read. Covered: fixed-width types,
// booleans, binary and string (and their large forms), list, large_list, map, fixed_size_list,
// struct and extension types over those. Other layouts (dictionary, union, run-end encoded, view
// types) are checked at the top level only.
func validateData(d arrow.ArrayData, depth int) error {
	if depth > maxNesting {
		return fmt.Errorf("nested deeper than %d levels", maxNesting)
	}
	n, off := d.Len(), d.Offset()
	if n < 0 || off < 0 {
		return fmt.Errorf("length %d and offset %d: want both ≥ 0", n, off)
	}
	end := int64(off) + int64(n)
	bufs := d.Buffers()
	buf := func(i int) []byte {
		if i < len(bufs) && bufs[i] != nil {
			return bufs[i].Bytes()
		}
		return nil
	}
	dt := d.DataType()
	switch dt.ID() {
	case arrow.NULL, arrow.SPARSE_UNION, arrow.DENSE_UNION, arrow.RUN_END_ENCODED:
	default:
		// A null count that is unknown (-1) or positive makes arrow-go read the bitmap, which
		// must then be there and cover every row.
		nulls := d.NullN()
		if nulls > n {
			return fmt.Errorf("null count %d exceeds the %d rows", nulls, n)
		}
		if len(bufs) > 0 && bufs[0] != nil {
			if int64(bufs[0].Len())*8 < end {
				return fmt.Errorf("validity bitmap of %d bytes is too short for %d rows at offset %d", bufs[0].Len(), n, off)
			}
		} else if nulls != 0 && n > 0 {
			return fmt.Errorf("null count %d without a validity bitmap", nulls)
		}
	}
	children := d.Children()
	child := func(i int) (arrow.ArrayData, error) {
		if i >= len(children) || children[i] == nil {
			return nil, fmt.Errorf("%s has no child array %d", dt, i)
		}
		return children[i], nil
	}
	switch t := dt.(type) {
	case arrow.ExtensionType:
		storage := array.NewData(t.StorageType(), n, bufs, children, d.NullN(), off)
		defer storage.Release()
		return validateData(storage, depth+1)
	case *arrow.DictionaryType:
		return nil
	case *arrow.StringType, *arrow.BinaryType:
		return checkOffsets32(buf(1), off, n, int64(len(buf(2))), "data")
	case *arrow.LargeStringType, *arrow.LargeBinaryType:
		return checkOffsets64(buf(1), off, n, int64(len(buf(2))), "data")
	case *arrow.ListType, *arrow.MapType:
		c, err := child(0)
		if err != nil {
			return err
		}
		if err := checkOffsets32(buf(1), off, n, int64(c.Len()), "child"); err != nil {
			return err
		}
		return validateData(c, depth+1)
	case *arrow.LargeListType:
		c, err := child(0)
		if err != nil {
			return err
		}
		if err := checkOffsets64(buf(1), off, n, int64(c.Len()), "child"); err != nil {
			return err
		}
		return validateData(c, depth+1)
	case *arrow.FixedSizeListType:
		if t.Len() < 0 {
			return fmt.Errorf("%s has a negative list size", dt)
		}
		c, err := child(0)
		if err != nil {
			return err
		}
		if need := end * int64(t.Len()); int64(c.Len()) < need {
			return fmt.Errorf("%d rows of %d values at offset %d need %d child values; found %d",
				n, t.Len(), off, need, c.Len())
		}
		return validateData(c, depth+1)
	case *arrow.StructType:
		if len(children) != t.NumFields() {
			return fmt.Errorf("struct with %d fields has %d child arrays", t.NumFields(), len(children))
		}
		for i, c := range children {
			if int64(c.Len()) < end {
				return fmt.Errorf("struct field %s has %d values; want at least %d", t.Field(i).Name, c.Len(), end)
			}
			if err := validateData(c, depth+1); err != nil {
				return fmt.Errorf("struct field %s: %w", t.Field(i).Name, err)
			}
		}
		return nil
	case arrow.FixedWidthDataType:
		if t.BitWidth() < 0 {
			return fmt.Errorf("%s has a width of %d bits", dt, t.BitWidth())
		}
		if n == 0 {
			return nil
		}
		need := (end*int64(t.BitWidth()) + 7) / 8
		if have := int64(len(buf(1))); have < need {
			return fmt.Errorf("value buffer of %d bytes is too short for %d %s values at offset %d (need %d)",
				have, n, dt, off, need)
		}
	}
	return nil
}

func checkOffsets32(b []byte, off, n int, limit int64, what string) error {
	if n == 0 {
		return nil
	}
	if int64(len(b)) < (int64(off)+int64(n)+1)*4 {
		return fmt.Errorf("offsets buffer of %d bytes is too short for %d rows at offset %d", len(b), n, off)
	}
	offs := arrow.Int32Traits.CastFromBytes(b)[off : off+n+1]
	return checkOffsetRun(len(offs), func(i int) int64 { return int64(offs[i]) }, limit, what)
}

func checkOffsets64(b []byte, off, n int, limit int64, what string) error {
	if n == 0 {
		return nil
	}
	if int64(len(b)) < (int64(off)+int64(n)+1)*8 {
		return fmt.Errorf("offsets buffer of %d bytes is too short for %d rows at offset %d", len(b), n, off)
	}
	offs := arrow.Int64Traits.CastFromBytes(b)[off : off+n+1]
	return checkOffsetRun(len(offs), func(i int) int64 { return offs[i] }, limit, what)
}

func checkOffsetRun(k int, at func(int) int64, limit int64, what string) error {
	prev := at(0)
	if prev < 0 || prev > limit {
		return fmt.Errorf("offset %d is outside the %s [0, %d]", prev, what, limit)
	}
	for i := 1; i < k; i++ {
		o := at(i)
		if o < prev || o > limit {
			return fmt.Errorf("offsets %d then %d at row %d: want non-decreasing offsets within the %s [0, %d]",
				prev, o, i-1, what, limit)
		}
		prev = o
	}
	return nil
}

// releaseAll releases the non-nil arrays.
func releaseAll(arrs []arrow.Array) {
	for _, a := range arrs {
		if a != nil {
			a.Release()
		}
	}
}

// newBuffer allocates an n-byte buffer from mem.
func newBuffer(mem memory.Allocator, n int) *memory.Buffer {
	b := memory.NewResizableBuffer(mem)
	b.Resize(n)
	return b
}
