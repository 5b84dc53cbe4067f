package files_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/files"
)

// TestParquet: the functions of files read and write Parquet (papoio alone refuses it), and
// the caller's options still apply.
func TestParquet(t *testing.T) {
	dir := t.TempDir()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	data, err := testinput.Stream(testinput.Spec{V: 7, Steps: testinput.StepRows(5, 2, 3), Seed: 1,
		Meta: map[string]string{papoio.MetaTemperature: "0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	src, err := papoio.NewReader(bytes.NewReader(data), "in.arrows", mem)
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "in.parquet")
	w, err := files.Create(in, src.Schema(), mem)
	if err != nil {
		t.Fatal(err)
	}
	for src.Next() {
		if err := w.Write(src.Batch().Record); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(src.Err(), src.Close(), w.Close()); err != nil {
		t.Fatal(err)
	}
	if head, _ := os.ReadFile(in); !bytes.HasPrefix(head, []byte("PAR1")) {
		t.Fatalf("%s is not a Parquet file", in)
	}

	r, err := files.Open(in, mem)
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for r.Next() {
		rows += r.Batch().Input.Rows()
	}
	if err := errors.Join(r.Err(), r.Close()); err != nil || rows != 10 || r.Meta().Params.Temperature != 0.5 {
		t.Fatalf("%d rows, τ %v, error %v; want 10 rows, τ 0.5", rows, r.Meta().Params.Temperature, err)
	}
	if _, err := files.OpenOutput(in, mem); !errors.Is(err, papoio.ErrNotOutput) {
		t.Errorf("OpenOutput(input): %v; want ErrNotOutput", err)
	}
	// The caller's options: a cap on single allocations far below a column.
	if r, err := files.Open(in, mem, papoio.WithMaxBufferBytes(8)); err == nil {
		for r.Next() {
		}
		err = r.Err()
		r.Close()
		if err == nil {
			t.Error("WithMaxBufferBytes(8) was not applied")
		}
	}

	part := []papoio.StepPartials{{Step: 2, EntropyTokens: 5, EntropySum: 1.5, WeightedTokens: 4}}
	partPath := filepath.Join(dir, "partials.parquet")
	f, err := files.FinishPartials(partPath, part, nil)
	if err == nil {
		err = f.Commit()
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := files.ReadPartials(partPath)
	if err != nil || len(got) != 1 || got[0] != part[0] {
		t.Fatalf("ReadPartials: %v, %v; want %v", got, err, part)
	}
	sumPath := filepath.Join(dir, "summary.parquet")
	if f, err = files.FinishSummary(sumPath, []papoio.StepSummary{{Step: 2, Tokens: 10}}, nil); err == nil {
		err = f.Commit()
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := papoio.ReadPartials(partPath); err == nil || !strings.Contains(err.Error(), "io/files") {
		t.Errorf("papoio.ReadPartials without files: %v; want the error naming io/files", err)
	}
}
