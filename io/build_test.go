package papoio

import (
	"math"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// TestReweightedColumn: the reweighted_advantage column is Ã (given) or w·A (weights given) or A
// as float32, null where a token has no advantage, in every combination of what is given.
func TestReweightedColumn(t *testing.T) {
	const n = 37
	adv, valid := make([]float64, n), make([]bool, n)
	weight, reweighted := make([]float32, n), make([]float64, n)
	for i := range n {
		adv[i] = float64(i) - 18.3
		valid[i] = i%4 != 1
		weight[i] = 1 + float32(i%5)/7
		reweighted[i] = adv[i] * 1.0000001 * float64(i%3)
	}
	for _, c := range []struct {
		name     string
		b        polarity.Batch
		weight   []float32
		rw       []float64
		want     func(i int) float64
		hasValue func(i int) bool
	}{
		{"Ã, every advantage", polarity.Batch{Advantage: adv}, weight, reweighted, func(i int) float64 { return reweighted[i] }, nil},
		{"w, every advantage", polarity.Batch{Advantage: adv}, weight, nil, func(i int) float64 { return float64(weight[i]) * adv[i] }, nil},
		{"A alone", polarity.Batch{Advantage: adv}, nil, nil, func(i int) float64 { return adv[i] }, nil},
		{"Ã, some advantages", polarity.Batch{Advantage: adv, AdvantageValid: valid}, weight, reweighted, func(i int) float64 { return reweighted[i] }, func(i int) bool { return valid[i] }},
		{"w, some advantages", polarity.Batch{Advantage: adv, AdvantageValid: valid}, weight, nil, func(i int) float64 { return float64(weight[i]) * adv[i] }, func(i int) bool { return valid[i] }},
		{"no advantage", polarity.Batch{}, weight, reweighted, nil, func(int) bool { return false }},
	} {
		c.b.TokenID = make([]int32, n)
		col := reweightedColumn(memory.DefaultAllocator, &c.b, c.weight, c.rw).(*array.Float32)
		for i := range n {
			has := c.hasValue == nil || c.hasValue(i)
			if col.IsNull(i) == has {
				t.Fatalf("%s: row %d null %v; want %v", c.name, i, col.IsNull(i), !has)
			}
			if has && math.Float32bits(col.Value(i)) != math.Float32bits(float32(c.want(i))) {
				t.Fatalf("%s: row %d = %v; want %v", c.name, i, col.Value(i), float32(c.want(i)))
			}
		}
		col.Release()
	}
}
