package serve

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/entropy-polarity/papo/polarity"
)

// panicky is the CPU engine, except that its Compute call number panicAt (1-based) panics: in
// the request's goroutine (inWorker false) or in a worker goroutine of its own that recovers
// and hands the error back, as the CPU engine's workers do (inWorker true).
type panicky struct {
	polarity.Engine
	calls    atomic.Int64
	panicAt  int64
	inWorker bool
}

func (p *panicky) Compute(ctx context.Context, b *polarity.Batch, pr polarity.Params, out *polarity.Result) error {
	if p.calls.Add(1) != p.panicAt {
		return p.Engine.Compute(ctx, b, pr, out)
	}
	if !p.inWorker {
		panic("engine bug")
	}
	errc := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				errc <- fmt.Errorf("%w: %v", polarity.ErrInternal, r)
			}
		}()
		panic("worker bug")
	}()
	return <-errc
}

// TestPanicIsInternal: a request whose engine panics (in the request's goroutine, or in a
// worker goroutine) is answered with kind internal, a well-formed reply, and the server (and
// the same connection) goes on serving; a temperature the kernels cannot represent is a
// request error naming the key and the value, not a panic.
func TestPanicIsInternal(t *testing.T) {
	for _, inWorker := range []bool{false, true} {
		eng := &panicky{Engine: polarity.NewCPU(2), panicAt: -1, inWorker: inWorker}
		_, sock := startServer(t, Config{Engine: eng})
		c := dial(t, sock)
		req := input(t, 1, nil)
		ok, err := c.do(req)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, ok, "ok", "")
		eng.panicAt = eng.calls.Load() + 1 // the next request's first batch
		rep, err := c.do(req)
		if err != nil {
			t.Fatalf("in worker %v: the reply after the panic: %v", inWorker, err)
		}
		wantStatus(t, rep, "error", string(KindInternal))
		if want := map[bool]string{false: "engine bug", true: "worker bug"}[inWorker]; !strings.Contains(rep.status[KeyError], want) {
			t.Errorf("in worker %v: error %q does not name the panic %q", inWorker, rep.status[KeyError], want)
		}
		again, err := c.do(req)
		if err != nil {
			t.Fatalf("in worker %v: the connection after the panic: %v", inWorker, err)
		}
		wantStatus(t, again, "ok", "")
		if again.rows != ok.rows {
			t.Fatalf("after the panic: %d rows, want %d", again.rows, ok.rows)
		}
	}

	_, sock := startServer(t, Config{})
	c := dial(t, sock)
	for _, tau := range []string{"2e-39", "1e37"} {
		rep, err := c.do(input(t, 1, withMeta("papo.temperature", tau)))
		if err != nil {
			t.Fatalf("τ=%s: %v", tau, err)
		}
		wantStatus(t, rep, "error", string(KindInput))
		if !strings.Contains(rep.status[KeyError], "papo.temperature") || !strings.Contains(rep.status[KeyError], `papo.temperature="`+tau+`"`) {
			t.Errorf("τ=%s: error %q does not name the key and the value", tau, rep.status[KeyError])
		}
	}
	if rep, err := c.do(input(t, 1, nil)); err != nil || rep.status[KeyStatus] != "ok" {
		t.Fatalf("after the refused temperatures: %v %v", err, rep)
	}
}
