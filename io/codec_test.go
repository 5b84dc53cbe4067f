package papoio

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// TestNoCodec (issue 21 item 13): without WithTables, every path into papoio that meets Parquet
// refuses it with an error naming the file and the packages that read and write Parquet: no
// panic, no other format written under the name, no file left behind.
func TestNoCodec(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.parquet")
	if err := WriteSummary(in, []StepSummary{{Step: 1, Tokens: 2}}, nil, tables); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.parquet")
	check := func(what, name string, err error, doing string) {
		t.Helper()
		want := []string{name, "papoio does not " + doing + " Parquet itself",
			"github.com/entropy-polarity/papo/io/files", "github.com/entropy-polarity/papo/io/parquet"}
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v; want an error containing %q", what, err, w)
				return
			}
		}
	}
	readErr := func(what string, err error) {
		t.Helper()
		check(what, in, err, "read")
		if ie := (*InputError)(nil); !errors.As(err, &ie) {
			t.Errorf("%s: %T is not an *InputError", what, err)
		}
	}
	_, err := Open(in, nil)
	readErr("Open", err)
	_, err = OpenOutput(in, nil)
	readErr("OpenOutput", err)
	_, err = ReadPartials(in)
	readErr("ReadPartials", err)

	schema := SummarySchema()
	_, err = Create(out, schema, nil)
	check("Create", out, err, "write")
	check("WriteSummary", out, WriteSummary(out, nil, nil), "write")
	_, err = FinishPartials(out, nil, nil)
	check("FinishPartials", out, err, "write")
	var buf bytes.Buffer
	_, err = NewWriter(&buf, "sock", FormatParquet, schema, nil)
	check("NewWriter", "sock", err, "write")
	if buf.Len() != 0 {
		t.Errorf("NewWriter without a codec wrote %d bytes", buf.Len())
	}
	if list, _ := os.ReadDir(dir); len(list) != 1 {
		t.Errorf("%d directory entries; want only the input", len(list))
	}
}

// fakeCodec stands for a table codec: it "writes Parquet" as an Arrow IPC stream, and its
// tables carry a schema of their own (metadata fake=1) and count their Close calls.
type fakeCodec struct{ closed *int }

func (fakeCodec) Name() string { return string(FormatParquet) }

func (c fakeCodec) ReadTable(f *os.File, mem memory.Allocator) (RecordSource, error) {
	r, err := ipc.NewReader(f, ipc.WithAllocator(mem))
	if err != nil {
		return nil, err
	}
	md := arrow.MetadataFrom(map[string]string{"fake": "1"})
	return &fakeTable{Reader: r, schema: arrow.NewSchema(r.Schema().Fields(), &md), closed: c.closed}, nil
}

func (fakeCodec) WriteTable(w io.Writer, schema *arrow.Schema, mem memory.Allocator) (RecordWriter, error) {
	return ipc.NewWriter(w, ipc.WithSchema(schema), ipc.WithAllocator(mem)), nil
}

type fakeTable struct {
	*ipc.Reader
	schema *arrow.Schema
	closed *int
}

func (f *fakeTable) Schema() *arrow.Schema { return f.schema }
func (f *fakeTable) Close() error          { *f.closed++; f.Release(); return nil }

// TestTableCodec: the codec of WithTables writes and reads the format (a later codec for it
// replaces an earlier one), the Reader takes its schema from the source, iterates its records
// through the contract's checks and closes it once.
func TestTableCodec(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	closed := 0
	opt := WithTables(fakeCodec{&closed}) // io/parquet's codec comes first, in tables, and is replaced
	path := filepath.Join(t.TempDir(), "in.parquet")
	const v = 5
	cols := testColumns(polarity.Float32, v, 1, 0)
	schema := InputSchema(v, polarity.Float32, cols, nil)
	recs := buildBatches(t, mem, schema, polarity.Float32, v, []int{4, 3}, nil)
	defer releaseRecords(recs)
	w, err := Create(path, schema, mem, tables, opt)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if err := w.Write(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); !bytes.HasPrefix(data, []byte{0xff, 0xff, 0xff, 0xff}) {
		t.Fatalf("the file starts with % x; want the fake codec's IPC stream", data[:min(len(data), 4)])
	}
	r, err := Open(path, mem, tables, opt)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Schema().Metadata().GetValue("fake"); got != "1" {
		t.Errorf("schema metadata %v; want the source's", r.Schema().Metadata())
	}
	rows := 0
	for r.Next() {
		rows += r.Batch().Input.Rows()
	}
	if err := errors.Join(r.Err(), r.Close(), r.Close()); err != nil || rows != 7 || closed != 1 {
		t.Fatalf("%d rows, the source closed %d times, error %v; want 7 rows, once, none", rows, closed, err)
	}
}
