package papoio

// Iterating the Reader's record batches: Next, and the record each format yields.

import (
	"errors"
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
)

// Next advances to the next non-empty batch. It returns false at the end of the input or on an
// error (see Err). The previous batch's Record is released.
func (r *Reader) Next() bool {
	r.releaseBatch()
	rec, idx, ok := r.advance()
	if !ok {
		return false
	}
	if r.noContract {
		rec.Release()
		r.err = &InputError{File: r.name, Batch: idx, Row: -1, Msg: "this input carries metadata only " +
			"and must have no record batches; it has one"}
		return false
	}
	b, err := r.makeBatch(rec, idx)
	if err != nil {
		rec.Release()
		r.err = err
		return false
	}
	r.rows += rec.NumRows()
	r.batch = b
	return true
}

// advance returns the next non-empty record batch (owned by the caller) and its index, or false
// at the end of the input or on an error, which it sets as r.err: a read that fails, and an IPC
// file without a valid footer (cut short), whose batches were read as a stream. Reader.Next and
// OutputReader.Next both read through it.
func (r *Reader) advance() (arrow.Record, int, bool) {
	if r.err != nil || r.done || r.closed {
		return nil, 0, false
	}
	for {
		idx := r.index
		rec, err := r.nextRecord()
		if err != nil {
			msg := "reading the record batch"
			var notMessage *errNoContinuation
			var noEOS errNoEOS
			switch {
			case r.noFooter != nil && errors.As(err, &noEOS):
				msg = fmt.Sprintf("the IPC file ends after %d record batches without a valid footer: "+
					"it is truncated or its footer is corrupt; the footer", idx)
				err = r.noFooter
			case errors.As(err, &noEOS):
				msg = fmt.Sprintf("after %d complete record batches", idx)
			case r.noFooter != nil && idx > 0 && errors.As(err, &notMessage):
				// After complete batches, bytes that are not a message are the remains of a footer.
				msg = fmt.Sprintf("the IPC file's footer, after %d complete record batches, is cut or corrupt; the footer", idx)
				err = r.noFooter
			case r.noFooter != nil:
				msg = "the IPC file has no valid footer (it is truncated or corrupt); reading its record batch"
			}
			r.err = &InputError{File: r.name, Batch: idx, Row: -1, Msg: msg, Err: err}
			return nil, idx, false
		}
		if rec == nil {
			r.done = true
			if r.noFooter != nil {
				r.err = &InputError{File: r.name, Batch: idx, Row: -1, Err: r.noFooter,
					Msg: fmt.Sprintf("the IPC file ends after %d record batches without a valid footer: "+
						"it is truncated or its footer is corrupt; the footer", idx)}
			}
			return nil, idx, false
		}
		r.index++
		if rec.NumRows() == 0 {
			rec.Release()
			continue
		}
		return rec, idx, true
	}
}

// nextRecord returns the next record, owned by the caller, or nil at the end.
func (r *Reader) nextRecord() (arrow.Record, error) {
	if r.file != nil {
		if r.index >= len(r.footer.batches) {
			return nil, nil
		}
		if err := r.footer.verify(r.footer.batches[r.index]); err != nil {
			return nil, err
		}
	}
	var rec arrow.Record
	err := guard(func() error {
		if r.file != nil {
			var err error
			rec, err = r.file.RecordAt(r.index)
			return err
		}
		if r.records != nil {
			if r.records.Next() {
				rec = r.records.Record()
				rec.Retain()
				return nil
			}
			if err := r.records.Err(); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		}
		if r.stream.Next() {
			rec = r.stream.Record()
			rec.Retain()
			return nil
		}
		return r.stream.Err()
	})
	if err != nil {
		if rec != nil {
			rec.Release()
		}
		return nil, err
	}
	return rec, nil
}
