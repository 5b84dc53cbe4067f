package papoio

import (
	"errors"
	"fmt"
	"strings"

	"github.com/entropy-polarity/papo/polarity"
)

// InputError is a problem with an input file: its data, its schema or its bytes. The message
// names as much of the place as is known, and what was expected:
//
//	logits.arrow: batch 3, row 17 (input row 3089): token_id 160000 is outside [0, 151936)
type InputError struct {
	File   string // input name as given to Open ("stdin" for "-")
	Batch  int    // record batch index (0-based); -1 when the error is not in a batch
	Row    int    // row within the batch; -1 when the error is not in one row
	Global int64  // row within the whole input; meaningful when Row ≥ 0
	Column string // input column, "" when the error is not about one column
	Msg    string // what was wrong and what was expected
	Err    error  // underlying error (I/O, decoding), may be nil
}

func (e *InputError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Batch >= 0 {
		fmt.Fprintf(&b, ": batch %d", e.Batch)
		if e.Row >= 0 {
			fmt.Fprintf(&b, ", row %d (input row %d)", e.Row, e.Global)
		}
	}
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *InputError) Unwrap() error { return e.Err }

// fileError is an error about the input as a whole (its bytes or its schema).
func fileError(file string, err error, format string, args ...any) *InputError {
	return &InputError{File: file, Batch: -1, Row: -1, Msg: fmt.Sprintf(format, args...), Err: err}
}

// WrapError places an error that came from processing b (an engine's *polarity.RowError, or
// anything else) in the input: file, batch and row. A *polarity.RowError's row is taken as an
// index within b.
func (b *Batch) WrapError(err error) error {
	if err == nil {
		return nil
	}
	var ie *InputError
	if errors.As(err, &ie) {
		return err
	}
	var re *polarity.RowError
	if errors.As(err, &re) && re.Row >= 0 && re.Row < b.Input.Rows() {
		return &InputError{File: b.file, Batch: b.Index, Row: re.Row, Global: b.FirstRow + int64(re.Row),
			Column: re.Column, Msg: re.Column + ": " + re.Msg}
	}
	return &InputError{File: b.file, Batch: b.Index, Row: -1, Err: err}
}

// guard runs an arrow-go call that may panic on corrupt input and turns the panic into an error.
func guard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if e, ok := p.(error); ok {
				err = fmt.Errorf("corrupt input: %w", e)
			} else {
				err = fmt.Errorf("corrupt input: %v", p)
			}
		}
	}()
	return fn()
}
