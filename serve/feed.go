package serve

import (
	"github.com/apache/arrow-go/v18/arrow"

	papoio "github.com/entropy-polarity/papo/io"
)

// readAheadBytes is the smallest first batch for which a request's batches are read on a
// goroutine one ahead of the engine (a size chosen, not tuned: a 256-token row-statistics
// request is 25 KB, a 131,072-row batch of them 12 MB). Below it every batch is read on the request's goroutine:
// there is little read to overlap, and each hand-off between goroutines can wake the other
// CPU, which a 256-token request's round trip paid for (a server with GOMAXPROCS=1, and so no
// such wake-ups, answered it in a median 285–326 µs against 355–427 µs, 2-vCPU Zen 5 VM,
// 2026-12-07).
const readAheadBytes = 1 << 20

// feed gives a request's batches to the engine in order. The first is read by next itself;
// when it holds readAheadBytes or more, a goroutine reads the rest one batch ahead (the channel
// has no buffer: it holds at most one batch while the engine computes another), else next
// reads them too. A batch is the caller's to Release.
type feed struct {
	rd      *papoio.Reader
	started bool
	batches chan *papoio.Batch // nil while the batches are read inline
	halt    chan struct{}
	readErr chan error
	err     error // the inline reader's error
	stopped bool
}

func newFeed(rd *papoio.Reader) *feed { return &feed{rd: rd} }

// next is the next batch, or nil at the end of the input, after an error or after stop.
func (f *feed) next() *papoio.Batch {
	if f.batches != nil {
		return <-f.batches
	}
	if f.stopped || f.err != nil {
		return nil
	}
	b, ok := f.readInline()
	if !ok {
		return nil
	}
	if !f.started {
		f.started = true
		if recordBytes(b.Record) >= readAheadBytes {
			f.readAhead()
		}
	}
	return b
}

// readInline reads one batch on the caller's goroutine; false at the end or on an error (f.err).
func (f *feed) readInline() (*papoio.Batch, bool) {
	b, err := readBatch(f.rd)
	f.err = err
	return b, b != nil
}

// readBatch is rd's next batch, retained, or nil at the end of the input or on an error (a
// panic of the reader becomes an internal error): the one read step of both of feed's modes.
func readBatch(rd *papoio.Reader) (b *papoio.Batch, err error) {
	err = guard(func() error {
		if !rd.Next() {
			return rd.Err()
		}
		b = rd.Batch()
		b.Record.Retain()
		return nil
	})
	return b, err
}

// readAhead starts the goroutine that reads the remaining batches.
func (f *feed) readAhead() {
	f.batches, f.halt, f.readErr = make(chan *papoio.Batch), make(chan struct{}), make(chan error, 1)
	go func() {
		defer close(f.batches)
		for {
			b, err := readBatch(f.rd)
			if b == nil {
				f.readErr <- err
				return
			}
			select {
			case f.batches <- b:
			case <-f.halt:
				b.Record.Release()
				f.readErr <- nil
				return
			}
		}
	}()
}

// stop asks for no more batches (the request was cancelled): the input is left unread. next
// must still be called until it returns nil.
func (f *feed) stop() {
	if f.stopped {
		return
	}
	f.stopped = true
	if f.halt != nil {
		close(f.halt)
	}
}

// wait, once next has returned nil, is the reader's error (nil when stopped).
func (f *feed) wait() error {
	if f.readErr != nil {
		return <-f.readErr
	}
	if f.stopped {
		return nil
	}
	return f.err
}

// recordBytes is the size of rec's buffers, its columns' children (a list's values) included.
func recordBytes(rec arrow.Record) int64 {
	var n int64
	var add func(d arrow.ArrayData)
	add = func(d arrow.ArrayData) {
		for _, b := range d.Buffers() {
			if b != nil {
				n += int64(b.Len())
			}
		}
		for _, c := range d.Children() {
			add(c)
		}
	}
	for _, c := range rec.Columns() {
		add(c.Data())
	}
	return n
}
