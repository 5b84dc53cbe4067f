package parquet_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	pq "github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"

	papoio "github.com/entropy-polarity/papo/io"
	"github.com/entropy-polarity/papo/io/parquet"
)

var _ papoio.TableCodec = parquet.Codec{}

var tables = papoio.WithTables(parquet.Codec{})

// duckdb is a Parquet file of four rows of row statistics that DuckDB wrote
// (testdata/duckdb_parquet.py): papo.temperature 2 and papo.lr 0.5 as key-value metadata
// (KV_METADATA), no ARROW:schema.
var duckdb = filepath.Join("testdata", "duckdb_rowstats.parquet")

// TestParquetMetadata (issue 21 item 1): a Parquet input's key-value metadata reaches the run
// (pqarrow's record reader drops it: τ was read as 1 and predicted_dH was off by τ²), for a file
// DuckDB wrote and for papo's own.
func TestParquetMetadata(t *testing.T) {
	own := filepath.Join(t.TempDir(), "own.parquet")
	rewrite(t, own, func(s *arrow.Schema) *arrow.Schema { return withMetadata(s, "papo.temperature", "0.25") })
	for _, tc := range []struct {
		path    string
		tau, lr float64
	}{
		{duckdb, 2, 0.5},
		{own, 0.25, 0.5},
	} {
		r, err := papoio.Open(tc.path, nil, tables)
		if err != nil {
			t.Fatal(err)
		}
		p, err := papoio.ParamsFromMetadata(r.Schema().Metadata())
		r.Close()
		if err != nil || p.Temperature != tc.tau || p.LR != tc.lr {
			t.Errorf("%s: τ %v, η %v, err %v; want τ %v, η %v", tc.path, p.Temperature, p.LR, err, tc.tau, tc.lr)
		}
	}
}

// TestClose: closing a Reader of a Parquet file closes the file once, without an error
// (pqarrow's file.Reader.Close closes the file too, and the Reader's own Close then failed with
// "file already closed").
func TestClose(t *testing.T) {
	r, err := papoio.Open(duckdb, nil, tables)
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for r.Next() {
		rows += r.Batch().Input.Rows()
	}
	if err := errors.Join(r.Err(), r.Close()); err != nil || rows != 4 {
		t.Fatalf("%d rows, error %v; want 4 rows and none", rows, err)
	}
}

// withMetadata is sch with key set to value in its metadata.
func withMetadata(sch *arrow.Schema, key, value string) *arrow.Schema {
	md := sch.Metadata()
	keys, vals := append([]string(nil), md.Keys()...), append([]string(nil), md.Values()...)
	if i := md.FindKey(key); i >= 0 {
		vals[i] = value
	} else {
		keys, vals = append(keys, key), append(vals, value)
	}
	m := arrow.NewMetadata(keys, vals)
	return arrow.NewSchema(sch.Fields(), &m)
}

// TestNoDictionary: papo's Parquet columns are written without dictionary encoding (hashing
// values that are nearly all distinct was most of the time of writing a large output), and
// Snappy-compressed, as docs/SCHEMA.md says.
func TestNoDictionary(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.parquet")
	rewrite(t, path, func(s *arrow.Schema) *arrow.Schema { return s })
	pf, err := file.OpenParquetFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer pf.Close()
	md := pf.MetaData()
	if md.NumRowGroups() == 0 {
		t.Fatal("no row groups")
	}
	for g := range md.NumRowGroups() {
		rg := md.RowGroup(g)
		for c := range rg.NumColumns() {
			cc, err := rg.ColumnChunk(c)
			if err != nil {
				t.Fatal(err)
			}
			if cc.Compression() != compress.Codecs.Snappy {
				t.Errorf("row group %d column %s: compression %v; want snappy", g, cc.PathInSchema(), cc.Compression())
			}
			for _, e := range cc.Encodings() {
				if e == pq.Encodings.PlainDict || e == pq.Encodings.RLEDict {
					t.Errorf("row group %d column %s: dictionary encoding %v", g, cc.PathInSchema(), e)
				}
			}
		}
	}
}

// rewrite writes the DuckDB file's rows to the Parquet file dst with the schema schema gives
// for the file's.
func rewrite(t *testing.T, dst string, schema func(*arrow.Schema) *arrow.Schema) {
	t.Helper()
	r, err := papoio.Open(duckdb, nil, tables)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := papoio.Create(dst, schema(r.Schema()), nil, tables)
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		if err := w.Write(r.Batch().Record); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(r.Err(), w.Close()); err != nil {
		t.Fatal(err)
	}
}
