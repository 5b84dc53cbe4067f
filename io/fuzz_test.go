package papoio

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// fuzzSeeds are small valid inputs in every dtype, list kind and IPC form.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	mem := memory.NewGoAllocator()
	for _, dtype := range []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16} {
		for _, kind := range []listKind{fixedSizeList, varList, largeList} {
			cols := testColumns(dtype, 3, 1, 0)
			cols.Extra = noteColumn(mem)(0, 1)
			schema := withLogitsKind(InputSchema(3, dtype, cols, map[string]string{MetaTemperature: "0.5"}), kind)
			cols.Extra["note"].Release()
			recs := buildBatches(t, mem, schema, dtype, 3, []int{2, 1}, noteColumn(mem))
			for _, stream := range []bool{true, false} {
				seeds = append(seeds, encodeIPC(t, stream, schema, recs...))
			}
			releaseRecords(recs)
		}
	}
	// Row statistics instead of logits, in both float types.
	for _, dt := range []arrow.DataType{arrow.PrimitiveTypes.Float32, arrow.PrimitiveTypes.Float64} {
		rec := statsRecord(t, 3, dt, "", -1, false)
		seeds = append(seeds, encodeIPC(t, true, rec.Schema(), rec))
		rec.Release()
	}
	return seeds
}

// FuzzReader feeds arbitrary bytes to the reader: it must return errors, never panic, and every
// batch it yields must satisfy the invariants the engines rely on.
func FuzzReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte("ARROW1\x00\x00"))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0})
	spool := f.TempDir() // one directory for every run: t.TempDir per run slows minimization down
	f.Fuzz(func(t *testing.T, data []byte) {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		var src io.Reader = bytes.NewReader(data)
		if len(data)%2 == 1 {
			src = opaqueReader{src} // the pipe path: bufio for streams, a spool file for IPC files
		}
		r, err := NewReader(src, "fuzz", mem, WithMaxBufferBytes(1<<20), WithTempDir(spool))
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) || ie.File != "fuzz" {
				t.Fatalf("error %v is not an *InputError naming the input", err)
			}
			return
		}
		if n, ok := r.Rows(); ok && n < 0 { // hostile metadata must not crash it either
			t.Fatalf("Rows() = %d", n)
		}
		for r.Next() {
			checkInvariants(t, r, r.Batch())
		}
		readErr := r.Err()
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		if readErr != nil {
			var ie *InputError
			if !errors.As(readErr, &ie) || ie.File != "fuzz" || ie.Batch < 0 {
				t.Fatalf("error %v is not an *InputError naming the input and batch", readErr)
			}
			return
		}
		if mem.CurrentAlloc() != 0 {
			t.Fatalf("%d bytes still allocated after a clean read and Close", mem.CurrentAlloc())
		}
	})
}

func checkInvariants(t *testing.T, r *Reader, b *Batch) {
	t.Helper()
	in := &b.Input
	n := in.Rows()
	v := in.Logits.V
	if st := in.Stats; st != nil {
		for _, c := range st.Cols() {
			if len(c) != n || n <= 0 || v != 0 || !r.Meta().RowStats {
				t.Fatalf("batch %d: %d rows, a statistics column of %d, V %d", b.Index, n, len(c), v)
			}
		}
		return
	}
	if n <= 0 || v <= 0 || v != r.Meta().V || int64(n) != b.Record.NumRows() {
		t.Fatalf("batch %d: rows %d, V %d, meta V %d, record rows %d", b.Index, n, v, r.Meta().V, b.Record.NumRows())
	}
	switch in.Logits.Dtype {
	case polarity.Float32:
		if len(in.Logits.F32) != n*v || in.Logits.Bits != nil {
			t.Fatalf("batch %d: %d float32 logits for %d×%d", b.Index, len(in.Logits.F32), n, v)
		}
	default:
		if len(in.Logits.Bits) != n*v || in.Logits.F32 != nil {
			t.Fatalf("batch %d: %d 16-bit logits for %d×%d", b.Index, len(in.Logits.Bits), n, v)
		}
	}
	if err := in.Validate(); err != nil {
		t.Fatalf("batch %d: the engines' own check fails: %v", b.Index, err)
	}
	for i, id := range in.TokenID {
		if id < 0 || int(id) >= v {
			t.Fatalf("batch %d row %d: token id %d outside [0, %d)", b.Index, i, id, v)
		}
		in.HasAdvantage(i)
		in.HasOldLogprob(i)
		in.Trained(i)
	}
	for _, s := range []int{len(in.Advantage), len(in.AdvantageValid), len(in.OldLogprob), len(in.OldLogprobValid),
		len(in.Mask), len(b.Step)} {
		if s != 0 && s != n {
			t.Fatalf("batch %d: a column slice has %d values for %d rows", b.Index, s, n)
		}
	}
	// The passthrough columns must be writable without a panic (Writer would turn one into an
	// error; here it fails the fuzz run, because validateData should have caught the cause).
	// Errors are fine: JSON has no NaN inside nested values, for one.
	pass := b.Passthrough(nil)
	defer pass.Release()
	for _, enc := range []RecordWriter{newJSONLWriter(io.Discard, pass.Schema()),
		&csvWriter{w: csv.NewWriter(io.Discard), schema: pass.Schema()}} {
		enc.Write(pass)
	}
}

// TestFuzzSeedsValid makes sure the seed corpus is made of inputs that read cleanly, so that the
// fuzzer starts from the valid paths.
func TestFuzzSeedsValid(t *testing.T) {
	for i, s := range fuzzSeeds(t) {
		r, err := NewReader(bytes.NewReader(s), "seed", nil)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		rows := 0
		for r.Next() {
			checkInvariants(t, r, r.Batch())
			rows += r.Batch().Input.Rows()
		}
		if r.Err() != nil || rows != 3 {
			t.Fatalf("seed %d: %d rows, err %v; want 3 rows", i, rows, r.Err())
		}
		r.Close()
	}
}

// FuzzTables feeds arbitrary CSV, JSONL and Parquet bodies to the table readers (the first
// byte picks the format): errors, never a panic, and every batch it yields passes the
// invariants. Parquet is read by io/parquet's codec; its seed is the file DuckDB wrote
// (io/parquet/testdata/duckdb_rowstats.parquet).
func FuzzTables(f *testing.F) {
	pq, err := os.ReadFile(filepath.Join("parquet", "testdata", "duckdb_rowstats.parquet"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append([]byte{'p'}, pq...))
	f.Add([]byte("ctoken_id,step,logit_max,sum_exp_rest,sum_exp_v,sum_exp2,sum_exp2_v,sampled_logit\n3,0.0,1.5,0.25,-0.5,1.1,-0.2,1\n3,x,1.5,0.25,-0.5,1.1,-0.2,1\n"))
	f.Add([]byte(`j{"token_id":3,"logit_max":1.5,"sum_exp_rest":0.25,"sum_exp_v":-0.5,"sum_exp2":1.1,"sum_exp2_v":-0.2,"sampled_logit":-Infinity,"mask":true}` + "\n{\"step\":NaN}\n"))
	f.Add([]byte("ctoken_id,step,logit_max,sum_exp_rest,sum_exp_v,sum_exp2,sum_exp2_v,sampled_logit\n3,0,1.5,0.25,-0.5,1.1,-0.2,1\n"))
	f.Add([]byte(`j{"token_id":3,"logit_max":1.5,"sum_exp_rest":0.25,"sum_exp_v":-0.5,"sum_exp2":1.1,"sum_exp2_v":-0.2,"sampled_logit":"-Infinity"}` + "\n"))
	f.Add([]byte("j{}\n{\"a\":[1,2]}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		ext := [...]string{".csv", ".jsonl", ".parquet"}[data[0]%3]
		path := filepath.Join(dir, "in"+ext)
		if err := os.WriteFile(path, data[1:], 0o644); err != nil {
			t.Fatal(err)
		}
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		r, err := Open(path, mem, WithMaxBufferBytes(1<<20), tables)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v is not an *InputError", err)
			}
			return
		}
		for r.Next() {
			checkInvariants(t, r, r.Batch())
		}
		r.Close()
	})
}
