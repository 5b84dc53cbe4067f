package serve

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a connection that keeps what it is given, one Write at a time (it fails the test
// when two overlap), optionally slowly and failing from its failAt-th Write on.
type recorder struct {
	t       *testing.T
	buf     bytes.Buffer
	writes  int
	failAt  int // 0: never
	delay   time.Duration
	writing atomic.Bool
}

var errConnGone = errors.New("connection gone")

func (r *recorder) Write(p []byte) (int, error) {
	if !r.writing.CompareAndSwap(false, true) {
		r.t.Error("two writes to the connection at once")
	}
	defer r.writing.Store(false)
	time.Sleep(r.delay)
	r.writes++
	if r.failAt > 0 && r.writes >= r.failAt {
		return 0, errConnGone
	}
	return r.buf.Write(p)
}

// TestReplyQueue: the bytes reach the connection in the order written, small writes while the
// queue is idle go straight to it (run's goroutine is not started for a reply of small writes
// only), a write error reaches the writer and close, and close waits for the queue.
func TestReplyQueue(t *testing.T) {
	chunk := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	small, large := directWrite, directWrite+1
	for _, tc := range []struct {
		name        string
		sizes       []int
		delay       time.Duration
		failAt      int
		wantRunning bool
		wantErrAt   int // index of the first Write that fails (-1: none)
	}{
		{name: "small only", sizes: []int{10, small, 3}, wantRunning: false, wantErrAt: -1},
		{name: "large then small, slow connection", sizes: []int{large, 5, small, 7, large, 1}, delay: time.Millisecond, wantRunning: true, wantErrAt: -1},
		{name: "small then large", sizes: []int{5, large, 5}, wantRunning: true, wantErrAt: -1},
		{name: "small fails", sizes: []int{5, 5, 5}, failAt: 2, wantErrAt: 1},
		{name: "none", wantErrAt: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := &recorder{t: t, delay: tc.delay, failAt: tc.failAt}
			q := newReplyQueue(conn, 4*large)
			var want bytes.Buffer
			errAt := -1
			for k, n := range tc.sizes {
				p := chunk(n, byte('a'+k))
				if _, err := q.Write(p); err != nil {
					if errAt < 0 {
						errAt = k
					}
					continue
				}
				want.Write(p)
			}
			if errAt != tc.wantErrAt {
				t.Errorf("first failed Write %d, want %d", errAt, tc.wantErrAt)
			}
			running := q.running
			written, err := q.close()
			if tc.wantErrAt >= 0 {
				if !errors.Is(err, errConnGone) {
					t.Errorf("close: %v, want the connection's error", err)
				}
			} else if err != nil {
				t.Errorf("close: %v", err)
			}
			if running != tc.wantRunning {
				t.Errorf("run's goroutine started: %v, want %v", running, tc.wantRunning)
			}
			if tc.wantErrAt < 0 && !bytes.Equal(conn.buf.Bytes(), want.Bytes()) {
				t.Errorf("the connection got %d bytes, not the %d written in order", conn.buf.Len(), want.Len())
			}
			if written != int64(conn.buf.Len()) {
				t.Errorf("close reports %d bytes written, the connection has %d", written, conn.buf.Len())
			}
			if _, err := q.Write([]byte("x")); err == nil {
				t.Error("a Write after close succeeded")
			}
		})
	}
}

// TestReplyQueueHold: after hold, small writes reach the connection together, in order, when a
// large write comes (before it), at flush and at close; a failed connection fails them.
func TestReplyQueueHold(t *testing.T) {
	chunk := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	conn := &recorder{t: t}
	q := newReplyQueue(conn, 1<<22)
	var want bytes.Buffer
	write := func(n int, b byte) {
		t.Helper()
		p := chunk(n, b)
		if _, err := q.Write(p); err != nil {
			t.Fatal(err)
		}
		want.Write(p)
	}
	write(10, 'a') // before hold: straight to the connection
	q.hold()
	write(8, 'b')
	write(300, 'c')
	if conn.writes != 1 {
		t.Fatalf("%d writes to the connection after two held ones; want 1", conn.writes)
	}
	write(directWrite+1, 'd') // large: the held bytes go first, in one write
	if err := q.flush(); err != nil {
		t.Fatal(err)
	}
	if conn.writes != 3 {
		t.Fatalf("%d writes after a large one and flush; want 3 (a, b+c, d)", conn.writes)
	}
	write(8, 'e')
	if err := q.flush(); err != nil { // flush gives the held bytes to the connection
		t.Fatal(err)
	}
	if conn.writes != 4 {
		t.Fatalf("%d writes after flush with a held write; want 4", conn.writes)
	}
	write(100, 'f')
	write(8, 'g')
	written, err := q.close()
	if err != nil {
		t.Fatal(err)
	}
	if conn.writes != 5 || written != int64(want.Len()) || !bytes.Equal(conn.buf.Bytes(), want.Bytes()) {
		t.Fatalf("%d writes, %d bytes written, in order %v; want 5 writes, %d bytes, in order", conn.writes, written,
			bytes.Equal(conn.buf.Bytes(), want.Bytes()), want.Len())
	}

	failing := newReplyQueue(&recorder{t: t, failAt: 1}, 1<<22)
	failing.hold()
	if _, err := failing.Write(chunk(8, 'x')); err != nil {
		t.Fatalf("a held write failed before reaching the connection: %v", err)
	}
	if err := failing.flush(); !errors.Is(err, errConnGone) {
		t.Fatalf("flush of a held write on a failed connection: %v; want its error", err)
	}
	if _, err := failing.close(); !errors.Is(err, errConnGone) {
		t.Fatalf("close: %v; want the connection's error", err)
	}
}
