package serve

import (
	"io"
	"sync"
)

// replyQueue is the reply's bytes on their way to the connection w, in order. A small Write
// (directWrite bytes or fewer) while nothing waits and nothing is being written goes to w at
// once, on the writer's goroutine; any other is queued as a copy, and a goroutine (run, started
// at the first) writes the queue out. Write blocks while more than max bytes wait, so a client
// that does not read holds the request back instead of growing the server's memory.
type replyQueue struct {
	w       io.Writer
	mu      sync.Mutex
	cond    sync.Cond
	chunks  [][]byte
	pending int
	max     int
	busy    bool  // a write to w is under way (a direct Write's or run's)
	running bool  // run has been started
	closed  bool  // no more Writes
	err     error // the connection's write error
	done    bool  // run has returned, or close found it never started
	written int64
	holding bool   // after hold: small writes gather in held
	held    []byte // small writes not yet given to the connection (hold)
}

// directWrite is the largest Write that goes to the connection without the queue: a flushed
// record of a small reply (papo's socket writers buffer 8 KiB and pass larger writes on). It
// spares a 256-token request the queue's copy and the hand-off to run's goroutine, which can
// wake the other CPU. It is also the most that hold gathers.
const directWrite = 64 << 10

func newReplyQueue(w io.Writer, max int) *replyQueue {
	q := &replyQueue{w: w, max: max}
	q.cond.L = &q.mu
	return q
}

// hold makes the small writes from here on gather, directWrite bytes at most, until a larger
// one, flush or close: the end of a reply (its last record, the data stream's end-of-stream
// marker, the status stream) reaches the connection in two writes instead of four or more,
// each of which the client would wake up for.
func (q *replyQueue) hold() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.holding = true
}

// Write writes p to the connection (a small p while the queue is idle) or queues a copy of it;
// after hold, a small p is gathered with the others instead. It fails once writing to the
// connection has failed.
func (q *replyQueue) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.holding && q.err == nil && !q.closed {
		if len(q.held)+len(p) <= directWrite {
			q.held = append(q.held, p...)
			return len(p), nil
		}
		if err := q.writeHeld(); err != nil {
			return 0, err
		}
	}
	return q.write(p)
}

// writeHeld gives the gathered bytes to the connection, in order before any later write. q.mu is
// held.
func (q *replyQueue) writeHeld() error {
	if len(q.held) == 0 || q.err != nil {
		return q.err
	}
	held := q.held
	q.held = nil
	_, err := q.write(held) // written before it returns, or copied into the queue
	q.held = held[:0]
	return err
}

// write is Write without hold. q.mu is held (and let go during a write to the connection).
func (q *replyQueue) write(p []byte) (int, error) {
	if q.err == nil && !q.closed && len(p) <= directWrite && len(q.chunks) == 0 && !q.busy {
		q.busy = true
		q.mu.Unlock()
		n, err := q.w.Write(p)
		q.mu.Lock()
		q.busy = false
		q.written += int64(n)
		if err != nil {
			q.err = err
		}
		q.cond.Broadcast()
		return n, err
	}
	for q.err == nil && q.pending > 0 && q.pending+len(p) > q.max {
		q.cond.Wait()
	}
	if q.err != nil {
		return 0, q.err
	}
	if q.closed {
		return 0, io.ErrClosedPipe
	}
	q.chunks = append(q.chunks, append([]byte(nil), p...))
	q.pending += len(p)
	if !q.running {
		q.running = true
		go q.run()
	}
	q.cond.Broadcast()
	return len(p), nil
}

// run writes the queue to the connection until close; it stops at the first write error.
func (q *replyQueue) run() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		for q.err == nil && (q.busy || (len(q.chunks) == 0 && !q.closed)) {
			q.cond.Wait()
		}
		if len(q.chunks) == 0 || q.err != nil {
			q.done = true
			q.cond.Broadcast()
			return
		}
		c := q.chunks[0]
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.busy = true
		q.mu.Unlock()

		_, err := q.w.Write(c)

		q.mu.Lock()
		q.busy = false
		q.pending -= len(c)
		if err != nil {
			q.err = err
			q.chunks = nil
		} else {
			q.written += int64(len(c))
		}
		q.cond.Broadcast()
	}
}

// flush waits until everything queued so far has been written; it returns the write error.
func (q *replyQueue) flush() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.writeHeld(); err != nil {
		return err
	}
	for q.pending > 0 && q.err == nil {
		q.cond.Wait()
	}
	return q.err
}

// close writes what is queued and stops run; it returns the write error and the bytes written.
func (q *replyQueue) close() (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.writeHeld()
	q.closed = true
	q.cond.Broadcast()
	for q.busy || (q.running && !q.done) {
		q.cond.Wait()
	}
	q.done = true
	return q.written, q.err
}

// failed reports whether writing to the connection has failed.
func (q *replyQueue) failed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err != nil
}
