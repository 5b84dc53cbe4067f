package papoio

import (
	stdcsv "encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// CellError is a table cell (CSV or JSONL) that does not parse as its column's type. Line is
// the line of the file, Row the data row (0-based, the header not counted).
type CellError struct {
	Line, Row int
	Column    string
	Text      string
	Want      string
}

func (e *CellError) Error() string {
	return fmt.Sprintf("line %d (row %d), column %s: %s; want %s", e.Line, e.Row, e.Column, e.Text, e.Want)
}

// csvReader reads CSV rows into record batches of tableRows rows. Every cell is parsed here, so
// that a cell that does not parse is an error naming its line, row, column and text: never a
// null, and never a value left over from another cell.
type csvReader struct {
	cr     *stdcsv.Reader
	mem    memory.Allocator
	schema *arrow.Schema
	row    int
	rec    arrow.Record
	err    error
}

func newCSVReader(r io.Reader, header []string, mem memory.Allocator) *csvReader {
	fields := make([]arrow.Field, len(header))
	for i, h := range header {
		h = strings.TrimSpace(h)
		dt, ok := namedType(h)
		if !ok {
			dt = arrow.BinaryTypes.String
		}
		fields[i] = arrow.Field{Name: h, Type: dt, Nullable: true}
	}
	cr := stdcsv.NewReader(r)
	cr.FieldsPerRecord = len(header)
	cr.ReuseRecord = true
	return &csvReader{cr: cr, mem: mem, schema: arrow.NewSchema(fields, nil)}
}

func (c *csvReader) Schema() *arrow.Schema { return c.schema }
func (c *csvReader) Record() arrow.Record  { return c.rec }
func (c *csvReader) Err() error            { return c.err }
func (c *csvReader) Release() {
	if c.rec != nil {
		c.rec.Release()
		c.rec = nil
	}
}

func (c *csvReader) Next() bool {
	c.Release()
	if c.err != nil {
		return false
	}
	b := array.NewRecordBuilder(c.mem, c.schema)
	defer b.Release()
	rows := 0
	for rows < tableRows {
		cells, err := c.cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.err = fmt.Errorf("row %d: %w", c.row, err)
			return false
		}
		line, _ := c.cr.FieldPos(0)
		for i, f := range c.schema.Fields() {
			if err := appendText(b.Field(i), cells[i]); err != nil {
				c.err = &CellError{Line: line, Row: c.row, Column: f.Name, Text: strconv.Quote(cells[i]), Want: err.Error()}
				return false
			}
		}
		c.row++
		rows++
	}
	if rows == 0 {
		return false
	}
	c.rec = b.NewRecord()
	return true
}

// appendText appends one CSV cell; the error says what the column wants. An empty cell is a
// null, except in a text column.
func appendText(b array.Builder, text string) error {
	t := strings.TrimSpace(text)
	if t == "" {
		if sb, ok := b.(*array.StringBuilder); ok {
			sb.Append(text)
		} else {
			b.AppendNull()
		}
		return nil
	}
	switch b := b.(type) {
	case *array.Int64Builder:
		x, err := parseInteger(t)
		if err != nil {
			return err
		}
		b.Append(x)
	case *array.Float64Builder:
		x, err := strconv.ParseFloat(t, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return errors.New("a number")
		}
		b.Append(x)
	case *array.BooleanBuilder:
		switch strings.ToLower(t) {
		case "true", "1":
			b.Append(true)
		case "false", "0":
			b.Append(false)
		default:
			return errors.New("true or false")
		}
	case *array.StringBuilder:
		b.Append(text)
	default:
		return fmt.Errorf("a column of a supported type, not %s", b.Type())
	}
	return nil
}

// parseInteger reads an integer, also written as an integral float ("59.0", "1.25e2": what an
// all-reduce, pandas or a spreadsheet writes); anything else is refused, never truncated.
func parseInteger(t string) (int64, error) {
	if x, err := strconv.ParseInt(t, 10, 64); err == nil {
		return x, nil
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) >= 1<<63 {
		return 0, errors.New("an integer")
	}
	return int64(f), nil
}
