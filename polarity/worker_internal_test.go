package polarity

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestWorkerPanicIsError: a panic inside a worker goroutine (here: a result that was not
// resized, so the first store is out of range) comes back as an error matching ErrInternal
// instead of ending the process. Without the worker's recover this test crashes the binary.
func TestWorkerPanicIsError(t *testing.T) {
	const V, n = 4, 6
	b := &Batch{Logits: Logits{Dtype: Float32, V: V, F32: make([]float32, V*n)}, TokenID: make([]int32, n)}
	for _, workers := range []int{1, 3} {
		c := cpuCompute{ctx: context.Background(), b: b, p: DefaultParams(), out: &Result{}, n: n, tau: 1, invTau: 1,
			kernel: Kernels()[0]}
		err := c.run(workers)
		if !errors.Is(err, ErrInternal) || !strings.Contains(err.Error(), "index out of range") {
			t.Errorf("%d workers: %v, want ErrInternal naming the panic", workers, err)
		}
	}
}
