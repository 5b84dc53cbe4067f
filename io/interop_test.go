package papoio

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/float16"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

const jsgenDir = "testdata/jsgen"

// nodeWithArrow returns the node binary for the scripts in testdata/jsgen, or skips the test
// when node or the apache-arrow package is missing (fails it with PAPO_REQUIRE_INTEROP=1).
func nodeWithArrow(t *testing.T) string {
	t.Helper()
	missing := func(why string) {
		msg := why + "; install apache-arrow with `npm ci --prefix io/testdata/jsgen` (from the repository root)"
		if os.Getenv("PAPO_REQUIRE_INTEROP") == "1" {
			t.Fatal(msg + " (PAPO_REQUIRE_INTEROP=1)")
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not on PATH")
	}
	if _, err := os.Stat(filepath.Join(jsgenDir, "node_modules", "apache-arrow", "package.json")); err != nil {
		missing("apache-arrow is not installed in " + jsgenDir + "/node_modules")
	}
	return node
}

// TestInteropJS reads files that the JavaScript apache-arrow package wrote (testdata/jsgen/gen.mjs)
// and checks every value against the formula the script used. It needs node and the package:
//
//	npm ci --prefix io/testdata/jsgen
//
// Without them the test is skipped, unless PAPO_REQUIRE_INTEROP=1, which makes it fail.
func TestInteropJS(t *testing.T) {
	node := nodeWithArrow(t)
	dir := t.TempDir()
	cmd := exec.Command(node, "gen.mjs", dir)
	cmd.Dir = jsgenDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("node gen.mjs: %v\n%s", err, out)
	}

	const v = 11 // gen.mjs: V, and batches of 9 and 4 rows
	for _, dtype := range []polarity.Dtype{polarity.Float32, polarity.Float16, polarity.BFloat16} {
		for _, ext := range []string{".arrow", ".arrows"} {
			name := dtype.String() + ext
			t.Run(name, func(t *testing.T) {
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				defer mem.AssertSize(t, 0)
				r, err := Open(filepath.Join(dir, name), mem)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				m := r.Meta()
				if m.V != v || m.Dtype != dtype || m.Params.Temperature != 0.5 || m.RunID != "js" ||
					m.Params.LR != 1 || !math.IsInf(m.Params.ClipLow, 1) ||
					!m.HasAdvantage || !m.HasMask || !m.HasStep || m.HasOldLogprob {
					t.Fatalf("meta %+v", m)
				}
				var sizes []int
				for r.Next() {
					b := r.Batch()
					in := &b.Input
					sizes = append(sizes, in.Rows())
					pass := b.Passthrough(mem)
					seq := pass.Column(pass.Schema().FieldIndices(ColSequenceID)[0]).(*array.Int64)
					for i := 0; i < in.Rows(); i++ {
						row := int(b.FirstRow) + i
						for j := 0; j < v; j++ {
							x := logitValue(row, j)
							k := i*v + j
							switch dtype {
							case polarity.Float32:
								if in.Logits.F32[k] != x {
									t.Fatalf("row %d logit %d: %v; want %v", row, j, in.Logits.F32[k], x)
								}
							case polarity.Float16:
								if want := float16.New(x).Uint16(); in.Logits.Bits[k] != want {
									t.Fatalf("row %d logit %d: bits %04x; want %04x (%v)", row, j, in.Logits.Bits[k], want, x)
								}
							case polarity.BFloat16:
								if want := bf16Bits(x); in.Logits.Bits[k] != want {
									t.Fatalf("row %d logit %d: bits %04x; want %04x (%v)", row, j, in.Logits.Bits[k], want, x)
								}
							}
						}
						if want := int32(row * 37 % v); in.TokenID[i] != want {
							t.Fatalf("row %d: token_id %d; want %d", row, in.TokenID[i], want)
						}
						if has := in.HasAdvantage(i); has != (row%5 != 3) ||
							(has && in.Advantage[i] != float64(row%7-3)/4) {
							t.Fatalf("row %d: advantage %v (present %v)", row, in.Advantage[i], has)
						}
						if want := row == 10 || row%6 != 1; in.Trained(i) != want {
							t.Fatalf("row %d: trained %v; want %v", row, in.Trained(i), want)
						}
						if want := int64(100 + row/4); b.Step[i] != want {
							t.Fatalf("row %d: step %d; want %d", row, b.Step[i], want)
						}
						if want := int64(row / 3); seq.Value(i) != want {
							t.Fatalf("row %d: sequence_id %d; want %d", row, seq.Value(i), want)
						}
					}
					pass.Release()
				}
				if err := r.Err(); err != nil {
					t.Fatal(err)
				}
				if len(sizes) != 2 || sizes[0] != 9 || sizes[1] != 4 {
					t.Fatalf("batches of %v rows; want [9 4]", sizes)
				}
			})
		}
	}
}
