package papoio

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/endian"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// maxNesting bounds the recursion of validateData (arrow-go's IPC reader stops at 64 too).
const maxNesting = 64

// validateData checks that an array's buffers are long enough for its length and offset, and that
// every offset, view, dictionary index, union type code and run end stays inside the data it
// points into. arrow-go reads IPC buffers without these checks, and its accessors index the
// buffers without bounds checks of their own, so a corrupt input would panic far from where it
// was read (in a writer of the passthrough columns, say). Every layout of the Arrow format is
// covered; values that the format leaves undefined (the offsets of a null list-view row, the
// view of a null string-view row) are not checked, as arrow-go does not read them either.
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
		return validateDictionary(d, t, buf(1), isValid(d))
	case *arrow.StringViewType, *arrow.BinaryViewType:
		return validateViews(bufs, off, n, isValid(d))
	case *arrow.ListViewType, *arrow.LargeListViewType:
		c, err := child(0)
		if err != nil {
			return err
		}
		width := int64(4)
		if dt.ID() == arrow.LARGE_LIST_VIEW {
			width = 8
		}
		offs, sizes := buf(1), buf(2)
		if int64(len(offs)) < end*width || int64(len(sizes)) < end*width {
			return fmt.Errorf("offset and size buffers of %d and %d bytes are too short for %d rows at offset %d",
				len(offs), len(sizes), n, off)
		}
		valid := isValid(d)
		for i := 0; i < n; i++ {
			if !valid(i) {
				continue
			}
			o, sz := intAt(offs, width, off+i), intAt(sizes, width, off+i)
			if o < 0 || sz < 0 || o > int64(c.Len())-sz {
				return fmt.Errorf("row %d: list view [%d, +%d) is outside the child's %d values", i, o, sz, c.Len())
			}
		}
		return validateData(c, depth+1)
	case arrow.UnionType:
		return validateUnion(d, t, depth)
	case *arrow.RunEndEncodedType:
		return validateRunEnds(d, depth)
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

// isValid reports whether row i (0-based, before the offset) of d is not null. Where there is a
// bitmap arrow-go consults it whatever the null count says, so this does too.
func isValid(d arrow.ArrayData) func(i int) bool {
	bufs := d.Buffers()
	if len(bufs) == 0 || bufs[0] == nil || bufs[0].Len() == 0 {
		return func(int) bool { return true }
	}
	bm, off := bufs[0].Bytes(), d.Offset()
	return func(i int) bool { return bitutil.BitIsSet(bm, off+i) }
}

// intAt reads the i-th little-endian signed integer of width bytes from b.
func intAt(b []byte, width int64, i int) int64 {
	at := int64(i) * width
	switch width {
	case 1:
		return int64(int8(b[at]))
	case 2:
		return int64(int16(endian.Native.Uint16(b[at:])))
	case 4:
		return int64(int32(endian.Native.Uint32(b[at:])))
	}
	return int64(endian.Native.Uint64(b[at:]))
}

// uintAt reads the i-th unsigned integer of width bytes; values beyond int64 come back negative.
func uintAt(b []byte, width int64, i int) int64 {
	at := int64(i) * width
	switch width {
	case 1:
		return int64(b[at])
	case 2:
		return int64(endian.Native.Uint16(b[at:]))
	case 4:
		return int64(endian.Native.Uint32(b[at:]))
	}
	return int64(endian.Native.Uint64(b[at:]))
}

func validateDictionary(d arrow.ArrayData, t *arrow.DictionaryType, indices []byte, valid func(int) bool) error {
	withDict, ok := d.(interface{ Dictionary() arrow.ArrayData })
	dict := arrow.ArrayData(nil)
	if ok {
		dict = withDict.Dictionary()
	}
	if dict == nil {
		return fmt.Errorf("dictionary-encoded column without a dictionary")
	}
	if err := validateData(dict, 1); err != nil {
		return fmt.Errorf("dictionary: %w", err)
	}
	width := int64(t.IndexType.(arrow.FixedWidthDataType).BitWidth() / 8)
	n, off := d.Len(), d.Offset()
	if int64(len(indices)) < (int64(off)+int64(n))*width {
		return fmt.Errorf("index buffer of %d bytes is too short for %d rows at offset %d", len(indices), n, off)
	}
	read := intAt
	switch t.IndexType.ID() {
	case arrow.UINT8, arrow.UINT16, arrow.UINT32, arrow.UINT64:
		read = uintAt
	}
	for i := 0; i < n; i++ {
		if !valid(i) {
			continue
		}
		if k := read(indices, width, off+i); k < 0 || k >= int64(dict.Len()) {
			return fmt.Errorf("row %d: dictionary index %d is outside the dictionary's %d values", i, k, dict.Len())
		}
	}
	return nil
}

func validateViews(bufs []*memory.Buffer, off, n int, valid func(int) bool) error {
	const viewSize, inline = 16, 12
	var views []byte
	if len(bufs) > 1 && bufs[1] != nil {
		views = bufs[1].Bytes()
	}
	if int64(len(views)) < (int64(off)+int64(n))*viewSize {
		return fmt.Errorf("view buffer of %d bytes is too short for %d rows at offset %d", len(views), n, off)
	}
	data := bufs[min(2, len(bufs)):]
	for i := 0; i < n; i++ {
		if !valid(i) {
			continue
		}
		v := views[(off+i)*viewSize:]
		size := int64(int32(endian.Native.Uint32(v)))
		if size < 0 {
			return fmt.Errorf("row %d: view of negative length %d", i, size)
		}
		if size <= inline {
			continue
		}
		idx := int64(int32(endian.Native.Uint32(v[8:])))
		at := int64(int32(endian.Native.Uint32(v[12:])))
		if idx < 0 || idx >= int64(len(data)) || data[idx] == nil || at < 0 || at > int64(data[idx].Len())-size {
			return fmt.Errorf("row %d: view of %d bytes at buffer %d, offset %d, is outside the %d data buffers",
				i, size, idx, at, len(data))
		}
	}
	return nil
}

func validateUnion(d arrow.ArrayData, t arrow.UnionType, depth int) error {
	n, off := d.Len(), d.Offset()
	bufs, children := d.Buffers(), d.Children()
	if len(children) != len(t.Fields()) {
		return fmt.Errorf("union with %d fields has %d child arrays", len(t.Fields()), len(children))
	}
	var codes, offsets []byte
	if len(bufs) > 1 && bufs[1] != nil {
		codes = bufs[1].Bytes()
	}
	if len(codes) < off+n {
		return fmt.Errorf("type code buffer of %d bytes is too short for %d rows at offset %d", len(codes), n, off)
	}
	dense := t.Mode() == arrow.DenseMode
	if dense {
		if len(bufs) > 2 && bufs[2] != nil {
			offsets = bufs[2].Bytes()
		}
		if int64(len(offsets)) < (int64(off)+int64(n))*4 {
			return fmt.Errorf("offset buffer of %d bytes is too short for %d rows at offset %d", len(offsets), n, off)
		}
	}
	ids := t.ChildIDs()
	for i := 0; i < n; i++ {
		code := int8(codes[off+i])
		if code < 0 || int(code) >= len(ids) || ids[code] < 0 || ids[code] >= len(children) {
			return fmt.Errorf("row %d: union type code %d is not one of the type's codes %v", i, code, t.TypeCodes())
		}
		c := children[ids[code]]
		if dense {
			if o := intAt(offsets, 4, off+i); o < 0 || o >= int64(c.Len()) {
				return fmt.Errorf("row %d: union offset %d is outside child %d's %d values", i, o, ids[code], c.Len())
			}
		} else if c.Len() < off+n {
			return fmt.Errorf("sparse union child %d has %d values; want at least %d", ids[code], c.Len(), off+n)
		}
	}
	for i, c := range children {
		if err := validateData(c, depth+1); err != nil {
			return fmt.Errorf("union field %s: %w", t.Fields()[i].Name, err)
		}
	}
	return nil
}

func validateRunEnds(d arrow.ArrayData, depth int) error {
	children := d.Children()
	if len(children) != 2 || children[0] == nil || children[1] == nil {
		return fmt.Errorf("run-end encoded array with %d child arrays; want 2", len(children))
	}
	runEnds, values := children[0], children[1]
	for _, c := range children {
		if err := validateData(c, depth+1); err != nil {
			return err
		}
	}
	var width int64
	switch runEnds.DataType().ID() {
	case arrow.INT16:
		width = 2
	case arrow.INT32:
		width = 4
	case arrow.INT64:
		width = 8
	default:
		return fmt.Errorf("run ends of type %s; want int16, int32 or int64", runEnds.DataType())
	}
	k := runEnds.Len()
	if values.Len() < k {
		return fmt.Errorf("%d run ends but %d values", k, values.Len())
	}
	need := int64(d.Offset()) + int64(d.Len())
	if k == 0 {
		if need > 0 {
			return fmt.Errorf("no runs for %d rows", d.Len())
		}
		return nil
	}
	if runEnds.NullN() != 0 {
		return fmt.Errorf("run ends contain nulls")
	}
	b := runEnds.Buffers()[1].Bytes()
	prev := int64(0)
	for i := 0; i < k; i++ {
		e := intAt(b, width, runEnds.Offset()+i)
		if e <= prev {
			return fmt.Errorf("run end %d after %d: want positive, strictly increasing run ends", e, prev)
		}
		prev = e
	}
	if prev < need {
		return fmt.Errorf("the runs cover %d rows; want %d", prev, need)
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
