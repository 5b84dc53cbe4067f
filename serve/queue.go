package serve

import (
	"io"
	"sync"
)

// replyQueue is the reply's bytes on their way to the connection: Write appends, a goroutine
// (run) writes them out in order. Write blocks while more than max bytes wait, so a client that
// does not read holds the request back instead of growing the server's memory.
type replyQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	chunks  [][]byte
	pending int
	max     int
	closed  bool  // no more Writes
	err     error // the connection's write error
	done    bool  // run has returned
	written int64
}

func newReplyQueue(max int) *replyQueue {
	q := &replyQueue{max: max}
	q.cond.L = &q.mu
	return q
}

// Write queues a copy of p. It fails once writing to the connection has failed.
func (q *replyQueue) Write(p []byte) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
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
	q.cond.Broadcast()
	return len(p), nil
}

// run writes the queue to w until Close; it returns the first write error.
func (q *replyQueue) run(w io.Writer) {
	for {
		q.mu.Lock()
		for len(q.chunks) == 0 && !q.closed && q.err == nil {
			q.cond.Wait()
		}
		if len(q.chunks) == 0 || q.err != nil {
			q.done = true
			q.cond.Broadcast()
			q.mu.Unlock()
			return
		}
		c := q.chunks[0]
		q.chunks[0] = nil
		q.chunks = q.chunks[1:]
		q.mu.Unlock()

		_, err := w.Write(c)

		q.mu.Lock()
		q.pending -= len(c)
		if err != nil {
			q.err = err
			q.chunks = nil
		} else {
			q.written += int64(len(c))
		}
		q.cond.Broadcast()
		q.mu.Unlock()
	}
}

// flush waits until everything queued so far has been written; it returns the write error.
func (q *replyQueue) flush() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.pending > 0 && q.err == nil {
		q.cond.Wait()
	}
	return q.err
}

// close writes what is queued and stops run; it returns the write error and the bytes written.
func (q *replyQueue) close() (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
	for !q.done {
		q.cond.Wait()
	}
	return q.written, q.err
}

// failed reports whether writing to the connection has failed.
func (q *replyQueue) failed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err != nil
}
