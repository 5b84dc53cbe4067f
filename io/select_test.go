package papoio

import (
	"strings"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestTakePooled: a message body takes a pooled buffer of its size whole and uncleared, none
// when the pool holds nothing that large, and gives it back on Free; a body grown by
// Reallocate raises the pool's bound, so that it is pooled when freed.
func TestTakePooled(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	a := newLimitAllocator(mem, 64<<20, nil)
	if a.takePooled(2<<20) != nil {
		t.Fatal("an empty pool lent a buffer")
	}
	b := a.Allocate(poolMinSize)
	b = a.Reallocate(4<<20, b) // the growth of a body
	b[5] = 42
	p := unsafe.SliceData(b)
	a.Free(b)
	if got := mem.CurrentAlloc(); got != 4<<20 {
		t.Fatalf("after the free, %d bytes allocated; want the pooled 4 MiB", got)
	}
	if a.takePooled(5<<20) != nil {
		t.Fatal("a 4 MiB pool lent 5 MiB")
	}
	if a.takePooled(poolMinSize-1) != nil {
		t.Fatal("a buffer below poolMinSize came from the pool")
	}
	c := a.takePooled(3 << 20)
	if unsafe.SliceData(c) != p || len(c) != 3<<20 || cap(c) != 3<<20 || c[5] != 42 {
		t.Fatalf("takePooled(3 MiB): len %d cap %d byte %d, same buffer %v; want the pooled one, uncleared",
			len(c), cap(c), c[5], unsafe.SliceData(c) == p)
	}
	a.Free(c)
	a.drain()
}

// TestSelectColumns: the selection keeps the named fields in the named order with the output's
// metadata; BuildOutput with it gives those columns of the whole output; bad names are errors.
func TestSelectColumns(t *testing.T) {
	md := arrow.NewMetadata([]string{"papo.temperature"}, []string{"0.5"})
	in := arrow.NewSchema([]arrow.Field{{Name: ColLogits, Type: arrow.FixedSizeListOf(3, arrow.PrimitiveTypes.Float32)},
		{Name: ColTokenID, Type: arrow.PrimitiveTypes.Int32}, {Name: ColAdvantage, Type: arrow.PrimitiveTypes.Float64, Nullable: true},
		{Name: ColEntropy, Type: arrow.PrimitiveTypes.Float32}}, &md)
	out := OutputSchema(in)
	sel, err := SelectColumns(out, []string{ColReweightedAdvantage, CollisionPrefix + ColEntropy, ColPolarity})
	if err != nil {
		t.Fatal(err)
	}
	if got := sel.String(); !strings.Contains(got, "reweighted_advantage") || sel.Field(1).Name != "input_entropy" ||
		sel.Field(2).Name != ColPolarity || !sel.Field(2).Nullable {
		t.Fatalf("selection %v", sel)
	}
	if v, _ := sel.Metadata().GetValue("papo.temperature"); v != "0.5" {
		t.Errorf("metadata %v", sel.Metadata())
	}
	if NeedsPassthrough(mustSelect(t, out, ColWeight, ColReweightedAdvantage)) || !NeedsPassthrough(sel) || !NeedsPassthrough(out) {
		t.Error("NeedsPassthrough: want false for computed columns only, true with an input column")
	}
	for names, want := range map[string]string{
		"nope":          `column "nope" is not in the output; its columns are token_id, advantage, input_entropy, entropy`,
		"weight,weight": `column "weight" is named twice`,
		"weight,":       "an empty column name",
		"logits":        `column "logits" is not in the output`,
	} {
		if _, err := SelectColumns(out, strings.Split(names, ",")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v; want %q", names, err, want)
		}
	}
}

func mustSelect(t *testing.T, out *arrow.Schema, names ...string) *arrow.Schema {
	t.Helper()
	s, err := SelectColumns(out, names)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
