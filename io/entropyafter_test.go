package papoio

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// TestEntropyAfterColumn: entropy_after (the row's entropy after the trainer's first update) is
// a known column: float32 or float64, refused with another type, and a number in tables that
// carry no types (CSV, JSONL), so that it reaches the output as a float beside the computed
// columns.
func TestEntropyAfterColumn(t *testing.T) {
	dir := t.TempDir()
	header := "logit_max,sum_exp_rest,sum_exp_v,sum_exp2,sum_exp2_v,sampled_logit,token_id,advantage"
	row := "1,1,-0.5,1,-0.25,0.5,0,1"
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"csv", "a.csv", header + ",entropy_after\n" + row + ",0.5\n" + row + ",\n", ""},
		{"jsonl", "a.jsonl", `{"logit_max":1,"sum_exp_rest":1,"sum_exp_v":-0.5,"sum_exp2":1,"sum_exp2_v":-0.25,"sampled_logit":0.5,"token_id":0,"advantage":1,"entropy_after":0.5}` + "\n", ""},
		{"csv text", "b.csv", header + ",entropy_after\n" + row + ",high\n", "entropy_after"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			r, err := Open(path, mem)
			if err == nil {
				for r.Next() {
					pt := r.Batch().Passthrough(mem)
					idx := pt.Schema().FieldIndices(ColEntropyAfter)
					if len(idx) != 1 || pt.Schema().Field(idx[0]).Type.ID() != arrow.FLOAT64 {
						t.Errorf("passthrough schema %v: want entropy_after float64", pt.Schema())
					}
					pt.Release()
				}
				err = r.Err()
				r.Close()
			}
			if tc.want == "" && err != nil {
				t.Fatal(err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}
