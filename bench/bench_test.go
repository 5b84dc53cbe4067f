package bench

import (
	"context"
	"math"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
)

// TestReadSum checks the vector read and the portable loop against a float64 sum, on lengths
// around the 32-element iteration, the 8-lane tail and 1 MiB pieces; the values are small
// integers, so every order of addition gives the exact sum.
func TestReadSum(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1000, 1<<18 + 5, 3<<18 - 1} {
		x := make([]float32, n)
		want := 0.0
		for i := range x {
			x[i] = float32(i%7) - 3 + float32(i%5)
			want += float64(x[i])
		}
		for _, c := range []struct {
			name string
			f    func([]float32) float32
		}{{"go", sumGo}, {ReadISA(), readSum}, {"chunked", readChunked}} {
			if got := c.f(x); float64(got) != want {
				t.Errorf("n=%d %s: sum %v, want %v", n, c.name, got, want)
			}
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
