package serve

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// replyTable reads a reply's data stream: its schema and each column's values as float64
// (null as NaN) by name.
func replyTable(t *testing.T, data []byte) (*arrow.Schema, map[string][]float64) {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	cols := map[string][]float64{}
	for r.Next() {
		rec := r.RecordBatch()
		for i, f := range rec.Schema().Fields() {
			for k := 0; k < int(rec.NumRows()); k++ {
				x := math.NaN()
				switch a := rec.Column(i).(type) {
				case *array.Float32:
					if a.IsValid(k) {
						x = float64(a.Value(k))
					}
				case *array.Int64:
					x = float64(a.Value(k))
				case *array.Int32:
					x = float64(a.Value(k))
				default:
					continue
				}
				cols[f.Name] = append(cols[f.Name], x)
			}
		}
	}
	return r.Schema(), cols
}

// TestReplyColumns: papo.columns gives the named reply columns, in the order named, with the
// same values (bit for bit, nulls in place) as the whole reply; analyze and reweight; a
// passthrough column can be named; wrong names are request errors that keep the connection.
func TestReplyColumns(t *testing.T) {
	_, sock := startServer(t, Config{StateDir: t.TempDir()})
	c := dial(t, sock)
	for _, kind := range []string{Analyze, Reweight} {
		t.Run(kind, func(t *testing.T) {
			md := func(kv ...string) map[string]string {
				return withMeta(append([]string{KeyRequest, kind, KeyRunID, "cols-" + kind, KeyResetState, "true"}, kv...)...)
			}
			whole, err := c.do(input(t, 3, md()))
			if err != nil {
				t.Fatal(err)
			}
			wantStatus(t, whole, "ok", "")
			_, all := replyTable(t, whole.data)
			for _, names := range [][]string{{"reweighted_advantage"}, {"weight", "polarity"}, {"sequence_id", "reweighted_advantage", "entropy"}} {
				rep, err := c.do(input(t, 3, md(KeyColumns, " "+strings.Join(names, " , ")+" ")))
				if err != nil {
					t.Fatal(err)
				}
				wantStatus(t, rep, "ok", "")
				schema, got := replyTable(t, rep.data)
				if schema.NumFields() != len(names) {
					t.Fatalf("%v: reply schema %v", names, schema)
				}
				for i, name := range names {
					if schema.Field(i).Name != name {
						t.Fatalf("%v: reply column %d is %s", names, i, schema.Field(i).Name)
					}
					if len(got[name]) != 60 || len(all[name]) != 60 {
						t.Fatalf("%v: %s has %d rows (whole reply %d); want 60", names, name, len(got[name]), len(all[name]))
					}
					for k := range got[name] {
						a, b := got[name][k], all[name][k]
						if math.Float64bits(a) != math.Float64bits(b) && !(math.IsNaN(a) && math.IsNaN(b)) {
							t.Fatalf("%v: %s row %d is %v; the whole reply has %v", names, name, k, a, b)
						}
					}
				}
				if rep.status[KeySteps] != "3" {
					t.Errorf("%v: status %v", names, rep.status)
				}
			}
		})
	}
	for _, tc := range []struct {
		md   map[string]string
		want string
	}{
		{withMeta(KeyColumns, "reweighted_advantage,nope"), `column "nope" is not in the output; its columns are`},
		{withMeta(KeyColumns, "weight,weight"), `column "weight" is named twice`},
		{withMeta(KeyColumns, "weight,,entropy"), "an empty column name"},
		{withMeta(KeyColumns, "logits"), `column "logits" is not in the output`},
		{withMeta(KeyRequest, Stats, KeyColumns, "weight"), "papo.columns belongs to an analyze or reweight request"},
	} {
		rep, err := c.do(input(t, 4, tc.md))
		if err != nil {
			t.Fatal(err)
		}
		wantStatus(t, rep, "error", string(KindRequest))
		if !strings.Contains(rep.status[KeyError], tc.want) {
			t.Errorf("%v: error %q; want %q", tc.md, rep.status[KeyError], tc.want)
		}
	}
	// The connection still serves.
	rep, err := c.do(input(t, 5, withMeta(KeyColumns, "entropy")))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, rep, "ok", "")
	if rep.rows != 60 {
		t.Errorf("after the errors: %d rows", rep.rows)
	}
}
