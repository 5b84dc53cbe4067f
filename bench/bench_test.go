package bench

import (
	"context"
	"math"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
)

func TestSum(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 1000} {
		x := make([]float32, n)
		want := 0.0
		for i := range x {
			x[i] = float32(i%7) - 3
			want += float64(x[i])
		}
		if got := sum(x); float64(got) != want {
			t.Errorf("n=%d: sum %v, want %v", n, got, want)
		}
	}
}

func TestRunMeasuresTheWorkload(t *testing.T) {
	w := NewWorkload(16, 1000, polarity.BFloat16, 1)
	if w.Bytes() != 16*1000*2 {
		t.Fatalf("workload bytes %d", w.Bytes())
	}
	tp, err := Run(context.Background(), polarity.NewCPU(1), w, 2)
	if err != nil {
		t.Fatal(err)
	}
	if tp.Rows != 16 || !(tp.TokensPerSec > 0) || math.Abs(tp.BytesPerSec/tp.TokensPerSec-2000) > 1e-6 {
		t.Fatalf("inconsistent throughput %+v", tp)
	}
	if bw := ReadBandwidth(1, 1<<20, 1); !(bw > 0) {
		t.Fatalf("bandwidth %v", bw)
	}
}
