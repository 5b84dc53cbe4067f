// Package testinput writes synthetic papo inputs for tests: token rows with chosen steps, cut
// into record batches of chosen sizes (so that a batch may span steps and a step several
// batches), with every optional column, as an Arrow IPC file or stream.
package testinput

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/polarity"
)

// Spec describes an input.
type Spec struct {
	V     int     // vocabulary size
	Steps []int64 // the step of each row; its length is the number of rows
	// Batches are the record batch sizes, summing to len(Steps); nil: batches of 32 rows.
	Batches []int
	Seed    uint64
	// NoAdvantage leaves the advantage column out; NoStep the step column (every row is then
	// in step 0).
	NoAdvantage, NoStep bool
	// Meta is the schema metadata (papo.temperature, ...).
	Meta map[string]string
	// Edit changes the columns before they are written (put a NaN in a row, say).
	Edit func(c *papoio.InputColumns)
}

// StepRows returns the step column of steps, each repeated rows times.
func StepRows(rows int, steps ...int64) []int64 {
	var out []int64
	for _, s := range steps {
		for range rows {
			out = append(out, s)
		}
	}
	return out
}

// Columns builds the spec's rows: logits N(0, 2²) with an occasional peaked row, the sampled
// token drawn at random, GRPO-like advantages (some null), a mask with a few false, old
// log-probabilities near the current ones, sequence, group and position columns.
func Columns(s Spec) *papoio.InputColumns {
	rng := rand.New(rand.NewPCG(s.Seed, 17))
	n := len(s.Steps)
	c := &papoio.InputColumns{Extra: map[string]arrow.Array{}}
	if !s.NoStep {
		c.Step = append([]int64(nil), s.Steps...)
	}
	b := &c.Batch
	b.Logits = polarity.Logits{Dtype: polarity.Float32, V: s.V, F32: make([]float32, 0, n*s.V)}
	for i := range n {
		for j := range s.V {
			x := 2 * rng.NormFloat64()
			if i%7 == 3 && j == i%s.V {
				x += 12 // a peaked row
			}
			b.Logits.F32 = append(b.Logits.F32, float32(x))
		}
		b.TokenID = append(b.TokenID, int32(rng.IntN(s.V)))
		if !s.NoAdvantage {
			b.Advantage = append(b.Advantage, math.Round(4*rng.NormFloat64())/4)
			b.AdvantageValid = append(b.AdvantageValid, rng.Float64() > 0.05)
		}
		b.OldLogprob = append(b.OldLogprob, float32(-1-rng.ExpFloat64()))
		b.OldLogprobValid = append(b.OldLogprobValid, rng.Float64() > 0.1)
		b.Mask = append(b.Mask, rng.Float64() > 0.1)
		c.SequenceID = append(c.SequenceID, int64(i/8))
		c.GroupID = append(c.GroupID, int64(i/32))
		c.Position = append(c.Position, int32(i%8))
	}
	if s.Edit != nil {
		s.Edit(c)
	}
	return c
}

// RowColumn is an extra int64 column holding each row's index in the input, so that a test can
// follow rows to the output.
const RowColumn = "row"

// slice returns rows [lo, hi) of c.
func slice(c *papoio.InputColumns, lo, hi int) *papoio.InputColumns {
	b := &c.Batch
	v := b.Logits.V
	out := &papoio.InputColumns{SequenceID: c.SequenceID[lo:hi], GroupID: c.GroupID[lo:hi],
		Position: c.Position[lo:hi], Extra: map[string]arrow.Array{RowColumn: rowColumn(lo, hi)}}
	if c.Step != nil {
		out.Step = c.Step[lo:hi]
	}
	o := &out.Batch
	o.Logits = polarity.Logits{Dtype: b.Logits.Dtype, V: v, F32: b.Logits.F32[lo*v : hi*v]}
	o.TokenID = b.TokenID[lo:hi]
	if b.Advantage != nil {
		o.Advantage, o.AdvantageValid = b.Advantage[lo:hi], b.AdvantageValid[lo:hi]
	}
	if b.OldLogprob != nil {
		o.OldLogprob, o.OldLogprobValid = b.OldLogprob[lo:hi], b.OldLogprobValid[lo:hi]
	}
	if b.Mask != nil {
		o.Mask = b.Mask[lo:hi]
	}
	return out
}

func rowColumn(lo, hi int) arrow.Array {
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	for i := lo; i < hi; i++ {
		b.Append(int64(i))
	}
	return b.NewArray()
}

// Write writes the spec as an Arrow IPC stream (stream true) or file to w.
func Write(w io.Writer, s Spec, stream bool) error {
	c := Columns(s)
	mem := memory.DefaultAllocator
	c.Extra[RowColumn] = rowColumn(0, 0)
	schema := papoio.InputSchema(s.V, polarity.Float32, *c, s.Meta)
	c.Extra[RowColumn].Release()
	var enc interface {
		Write(rec arrow.Record) error
		Close() error
	}
	if stream {
		enc = ipc.NewWriter(w, ipc.WithSchema(schema))
	} else {
		fw, err := ipc.NewFileWriter(w, ipc.WithSchema(schema))
		if err != nil {
			return err
		}
		enc = fw
	}
	sizes := s.Batches
	if sizes == nil {
		for lo := 0; lo < len(s.Steps); lo += 32 {
			sizes = append(sizes, min(32, len(s.Steps)-lo))
		}
	}
	lo := 0
	for _, k := range sizes {
		if lo+k > len(s.Steps) {
			return fmt.Errorf("testinput: batch sizes %v exceed %d rows", sizes, len(s.Steps))
		}
		part := slice(c, lo, lo+k)
		rec, err := papoio.BuildInput(mem, schema, part)
		part.Extra[RowColumn].Release()
		if err != nil {
			return err
		}
		err = enc.Write(rec)
		rec.Release()
		if err != nil {
			return err
		}
		lo += k
	}
	if lo != len(s.Steps) {
		return fmt.Errorf("testinput: batch sizes %v cover %d of %d rows", sizes, lo, len(s.Steps))
	}
	return enc.Close()
}

// WriteFile writes the spec as an Arrow IPC file at path.
func WriteFile(path string, s Spec) error {
	var buf bytes.Buffer
	if err := Write(&buf, s, false); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// Stream returns the spec as Arrow IPC stream bytes.
func Stream(s Spec) ([]byte, error) {
	var buf bytes.Buffer
	err := Write(&buf, s, true)
	return buf.Bytes(), err
}
