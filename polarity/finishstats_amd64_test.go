//go:build amd64 && !noasm

package polarity

import (
	"context"
	"math"
	"reflect"
	"testing"
	"unsafe"
)

// TestFinishArgsLayout: finishArgs is what finishstats_amd64.s reads, every field 8 bytes in
// order (the assembly's offsets: a field's index times 8), sign last at 256.
func TestFinishArgsLayout(t *testing.T) {
	typ := reflect.TypeFor[finishArgs]()
	for i := range typ.NumField() {
		if f := typ.Field(i); f.Offset != uintptr(8*i) || f.Type.Size() != 8 {
			t.Errorf("field %s at %d, %d bytes; want %d, 8 bytes", f.Name, f.Offset, f.Type.Size(), 8*i)
		}
	}
	if off := unsafe.Offsetof(finishArgs{}.sign); off != 256 {
		t.Errorf("sign at %d; the assembly reads it at 256", off)
	}
}

// TestStatsFinishVector: the AVX-512F finishing loop does every group of eight plain rows of a
// chunk, stops at the group that holds a row the Go loop stops at, and gives the Go loop's
// numbers bit for bit.
func TestStatsFinishVector(t *testing.T) {
	if !kernelSupported(KernelAVX512) {
		t.Skip("no AVX-512F here")
	}
	const n = statsChunk - 3 // a tail for the Go loop
	base := statsBatch(t, n)
	b := &Batch{TokenID: base.TokenID, Stats: base.Stats, Advantage: base.Advantage, Mask: make([]bool, n),
		OldLogprob: make([]float32, n), OldLogprobValid: make([]bool, n), AdvantageValid: make([]bool, n)}
	for i := range n {
		b.Mask[i], b.OldLogprobValid[i], b.AdvantageValid[i] = i%5 != 0, i%3 != 0, i%7 != 0
		b.OldLogprob[i] = float32(-0.1 * float64(i%11))
	}
	p := DefaultParams()
	p.ClipLow, p.ClipHigh = 0.2, 0.28
	run := func(k Kernel, b *Batch) (Result, int) {
		var out Result
		out.Resize(n)
		sc := statsScratch{kernel: k}
		sc.prepare(b, 0, n)
		return out, statsFinishVector(k, b, p, &out, 0, n, &sc)
	}
	got, done := run(KernelAVX512, b)
	if done != n&^7 {
		t.Fatalf("the kernel did %d rows of %d plain ones; want %d", done, n, n&^7)
	}
	var want Result // the Go loop's, with the pure-Go batch kernels (the same numbers as theirs)
	if err := computeStats(context.Background(), b, p, &want, KernelGo); err != nil {
		t.Fatal(err)
	}
	for i := range done {
		g := [...]float32{got.Entropy[i], got.Logprob[i], got.SampledTerm[i], got.Correction[i], got.PolarityFactor[i], got.Polarity[i], got.PredictedDeltaH[i]}
		w := [...]float32{want.Entropy[i], want.Logprob[i], want.SampledTerm[i], want.Correction[i], want.PolarityFactor[i], want.Polarity[i], want.PredictedDeltaH[i]}
		for c := range g {
			if math.Float32bits(g[c]) != math.Float32bits(w[c]) {
				t.Fatalf("row %d output %d: %v; ComputeStats %v", i, c, g[c], w[c])
			}
		}
		if got.PolarityValid[i] != want.PolarityValid[i] {
			t.Fatalf("row %d: polarity valid %v; ComputeStats %v", i, got.PolarityValid[i], want.PolarityValid[i])
		}
	}

	// A row the Go loop stops at: the kernel stops at the start of its group, stores nothing of it.
	for _, bad := range []struct {
		name string
		edit func(b *Batch, i int)
	}{
		{"u_a above the maximum", func(b *Batch, i int) { b.Stats.Sampled[i] = b.Stats.Max[i] + 1 }},
		{"NaN advantage", func(b *Batch, i int) { b.Advantage[i], b.AdvantageValid[i] = math.NaN(), true }},
		{"infinite old log-probability", func(b *Batch, i int) {
			b.OldLogprob[i], b.OldLogprobValid[i], b.Mask[i], b.AdvantageValid[i], b.Advantage[i] = float32(math.Inf(1)), true, true, true, 1
		}},
		{"negative sum_exp_rest", func(b *Batch, i int) { b.Stats.SumExpRest[i] = -1e-9 }},
	} {
		st := &StatsColumns{}
		st.Append(b.Stats)
		c := *b
		c.Stats, c.Advantage, c.AdvantageValid = st, append([]float64(nil), b.Advantage...), append([]bool(nil), b.AdvantageValid...)
		c.OldLogprob, c.OldLogprobValid, c.Mask = append([]float32(nil), b.OldLogprob...), append([]bool(nil), b.OldLogprobValid...), append([]bool(nil), b.Mask...)
		bad.edit(&c, 101)
		out, done := run(KernelAVX512, &c)
		if done != 96 {
			t.Errorf("%s in row 101: the kernel did %d rows; want 96", bad.name, done)
		}
		if out.Entropy[96] != 0 || out.PolarityValid[96] {
			t.Errorf("%s in row 101: the kernel stored row 96 of the group it stopped at", bad.name)
		}
	}
}
