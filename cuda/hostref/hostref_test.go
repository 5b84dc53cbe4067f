//go:build cgo

package hostref

import (
	"math"
	"testing"
	"unsafe"

	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
	"github.com/entropy-polarity/papo/polarity/polaritytest"
)

// The Go side of the CUDA engine packs kernels.RowIn and reads the outputs by the header's
// constants: both must be the header's.
func TestLayoutMatchesHeader(t *testing.T) {
	size, off := cLayout()
	var r kernels.RowIn
	if got := int(unsafe.Sizeof(r)); got != size || size != kernels.RowInBytes {
		t.Errorf("sizeof(pp_row_in) = %d, kernels.RowIn = %d, kernels.RowInBytes = %d", size, got, kernels.RowInBytes)
	}
	goOff := [4]int{int(unsafe.Offsetof(r.Advantage)), int(unsafe.Offsetof(r.OldLogprob)), int(unsafe.Offsetof(r.Token)), int(unsafe.Offsetof(r.Flags))}
	if goOff != off {
		t.Errorf("pp_row_in field offsets %v, kernels.RowIn %v", off, goOff)
	}
	want := map[string]int{
		"PP_BLOCK_THREADS": kernels.BlockThreads, "PP_WARP": kernels.Warp, "PP_VEC_BYTES": kernels.VecBytes,
		"PP_GROUP_ELEMS": kernels.GroupElems, "PP_OUT_COLUMNS": kernels.OutColumns,
		"PP_HAS_ADV": kernels.HasAdvantage, "PP_HAS_OLD": kernels.HasOldLogprob, "PP_TRAINED": kernels.Trained,
		"PP_OK": kernels.StatusOK, "PP_ERR_LOGIT": kernels.StatusBadLogit, "PP_ERR_NO_FINITE": kernels.StatusNoFinite,
		"PP_ERR_ADV": kernels.StatusAdvantage, "PP_ERR_OLD": kernels.StatusOldLogprob,
		"PP_F32": int(polarity.Float32), "PP_F16": int(polarity.Float16), "PP_BF16": int(polarity.BFloat16),
		"PP_OUT_ENTROPY": 0, "PP_OUT_DELTA_H": kernels.OutColumns - 1,
	}
	for name, c := range cConstants() {
		if want[name] != c {
			t.Errorf("%s = %d in polarity_row.cuh, %d on the Go side", name, c, want[name])
		}
	}
}

// The kernels' arithmetic, with the kernel's reduction tree, holds to the shared table of hard
// rows and data errors (the CPU engine's table and tolerances). (One thread's float32 single
// pass over a 128k row would not: its sequential sums of 10⁵ terms drift by ~1e-4; the kernel's
// per-thread sums have ~600 terms.)
func TestKernelArithmetic(t *testing.T) {
	polaritytest.CheckEngine(t, New(), polaritytest.Seed(t))
}

// closeSums compares two docs/MATH.md §3 states, each field to a relative error eps of its own size
// (every sum adds same-sign terms, so no cancellation widens it). The kernel rounds each
// exponent w = (z − m)·c to float32, an error of |w|·2^-24 in it; with |w| up to ~60 in these
// tests that is ~4e-6 relative in 2^{2w}, within eps = polaritytest.Rel, the GPU-class accuracy.
func closeSums(t *testing.T, what string, got, want polarity.Sums, eps float64) {
	t.Helper()
	if got.Empty() || want.Empty() {
		if got.Empty() != want.Empty() {
			t.Errorf("%s: empty %v, want empty %v", what, got.Empty(), want.Empty())
		}
		return
	}
	rel := func(g, w float64) float64 {
		if g == w {
			return 0
		}
		return math.Abs(g-w) / math.Max(math.Abs(w), 1e-300)
	}
	for _, c := range []struct {
		name string
		g, w float64
	}{{"M", got.M, want.M}, {"Rest", got.Rest, want.Rest}, {"S1", got.S1, want.S1}, {"S2", got.S2, want.S2}, {"S3", got.S3, want.S3}} {
		if r := rel(c.g, c.w); r > eps && math.Abs(c.g-c.w) > 1e-35 {
			t.Errorf("%s: %s = %.9g, want %.12g (relative error %.2g > %.1g)", what, c.name, c.g, c.w, r, eps)
		}
	}
}

// One group update is docs/MATH.md §3's element rule applied to each element: new maxima, ties
// at the maximum, −Inf elements, an all −Inf group, and a NaN/+Inf group (flagged, ignored).
func TestUpdateFollowsElementRule(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	ninf := float32(math.Inf(-1))
	for trial := range 2000 {
		tau := []float64{1, 0.7, 1.3}[trial%3]
		n := 1 + rng.IntN(kernels.GroupElems)
		st := EmptyState()
		ref := polarity.EmptySums()
		for range 1 + rng.IntN(4) {
			z := make([]float32, n)
			base := float32(10 * rng.NormFloat64())
			for k := range z {
				switch rng.IntN(6) {
				case 0:
					z[k] = ninf
				case 1:
					z[k] = base // ties
				default:
					z[k] = base + float32(3*rng.NormFloat64())
				}
			}
			var bad bool
			st, bad = Update(st, z, tau)
			if bad {
				t.Fatalf("group %v flagged as NaN/+Inf", z)
			}
			for _, x := range z {
				ref.Add(float64(x) / tau)
			}
			closeSums(t, "update", st.Sums(tau), ref, polaritytest.Rel)
		}
	}
	for _, x := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		st := EmptyState()
		st, _ = Update(st, []float32{1, 2}, 1)
		got, bad := Update(st, []float32{3, x, 0}, 1)
		if !bad || got != st {
			t.Errorf("a group holding %v: bad = %v, state changed %v → %v; want flagged and unchanged", x, bad, st, got)
		}
	}
	got, bad := Update(EmptyState(), []float32{ninf, ninf}, 1)
	if bad || !math.IsInf(float64(got.M), -1) {
		t.Errorf("an all −Inf group gives %v (bad %v), want the empty state", got, bad)
	}
}

// pp_merge is polarity.Sums.Merge: empty operands, equal maxima, far-apart maxima.
func TestMergeMatchesSums(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	mkState := func(tau float64) (State, polarity.Sums) {
		st, ref := EmptyState(), polarity.EmptySums()
		if rng.IntN(5) == 0 {
			return st, ref
		}
		shift := float32(rng.IntN(3) * 20)
		z := make([]float32, 1+rng.IntN(kernels.GroupElems))
		for k := range z {
			z[k] = shift + float32(3*rng.NormFloat64())
		}
		st, _ = Update(st, z, tau)
		for _, x := range z {
			ref.Add(float64(x) / tau)
		}
		return st, ref
	}
	for trial := range 3000 {
		tau := []float64{1, 0.7, 1.3}[trial%3]
		a, ra := mkState(tau)
		b, rb := mkState(tau)
		if trial%7 == 0 {
			b, rb = a, ra // equal maxima
		}
		got := Merge(a, b, tau)
		ra.Merge(rb)
		closeSums(t, "merge", got.Sums(tau), ra, polaritytest.Rel)
	}
}

// A row's state does not depend (beyond rounding) on where the row starts within a 16-byte
// vector: the head/body/tail split moves, the sums do not.
func TestRowStateAlignment(t *testing.T) {
	rng := polaritytest.Rand(polaritytest.Seed(t))
	for _, dt := range []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16} {
		for _, V := range []int{1, 3, 7, 9, 31, 1000, 4099} {
			l := &polarity.Logits{Dtype: dt, V: V}
			z := make([]float32, V)
			for j := range z {
				z[j] = float32(3 * rng.NormFloat64())
			}
			z[rng.IntN(V)] = 25
			switch dt {
			case polarity.Float32:
				l.F32 = z
			case polarity.Float16:
				for _, x := range z {
					l.Bits = append(l.Bits, polarity.Float32ToFloat16(x))
				}
			default:
				for _, x := range z {
					l.Bits = append(l.Bits, polarity.Float32ToBFloat16(x))
				}
			}
			ref := polarity.EmptySums()
			for j := range V {
				ref.Add(float64(l.At(0, j)))
			}
			for off := 0; off < kernels.VecBytes; off += dt.Size() {
				for _, tree := range []bool{false, true} {
					st, bad := RowState(l, 0, 1, tree, off)
					if bad {
						t.Fatalf("%v V=%d: flagged", dt, V)
					}
					closeSums(t, dt.String()+" row", st.Sums(1), ref, polaritytest.Rel)
				}
			}
		}
	}
}
