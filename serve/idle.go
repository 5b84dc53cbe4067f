package serve

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// progressBytes is how much a client must send to renew its idle budget.
const progressBytes = 64 << 10

// idleBudget bounds the time a connection waits for its client: at most idle in all until the
// client has sent progressBytes more (or the next request begins). Only the time spent waiting
// on the client counts, not the time the server computes while the client's bytes wait in the
// socket. A client that sends nothing, or 1 byte a second, is dropped after idle; one that sends
// at 1 KiB/s or more never is.
type idleBudget struct {
	idle   time.Duration
	waited time.Duration
	since  int64 // bytes since the last renewal
}

// left is the waiting time the client has left.
func (b *idleBudget) left() time.Duration { return b.idle - b.waited }

// note counts one wait of d that brought n bytes.
func (b *idleBudget) note(n int, d time.Duration) {
	b.waited += d
	if b.since += int64(n); b.since >= progressBytes {
		b.renew()
	}
}

func (b *idleBudget) renew() { b.waited, b.since = 0, 0 }

// errIdle matches (errors.Is) the error of a client that used up its idle budget.
var errIdle = errors.New("idle client")

type idleError struct{ idle time.Duration }

func (e *idleError) Error() string {
	return fmt.Sprintf("the client sent less than %d KiB in %v of waiting (--idle-timeout): the connection is dropped",
		progressBytes>>10, e.idle)
}
func (e *idleError) Is(target error) bool {
	return target == errIdle || target == os.ErrDeadlineExceeded
}

// clientReader reads a connection under its idle budget; stop, when set, is a hard deadline
// (a connection's last reads before it closes).
type clientReader struct {
	nc     net.Conn
	budget idleBudget
	stop   time.Time
}

func (r *clientReader) Read(p []byte) (int, error) {
	left := r.budget.left()
	if left <= 0 {
		return 0, &idleError{r.budget.idle}
	}
	start := time.Now()
	deadline := start.Add(left)
	if !r.stop.IsZero() && r.stop.Before(deadline) {
		deadline = r.stop
	}
	r.nc.SetReadDeadline(deadline)
	n, err := r.nc.Read(p)
	r.budget.note(n, time.Since(start))
	if errors.Is(err, os.ErrDeadlineExceeded) && (r.stop.IsZero() || time.Now().Before(r.stop)) {
		err = &idleError{r.budget.idle}
	}
	return n, err
}
