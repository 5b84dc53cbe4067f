package papoio

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// statsCells are the six row statistics of one valid row, as CSV cells and as JSON members.
const (
	statsHeader = "token_id,step,logit_max,sum_exp_rest,sum_exp_v,sum_exp2,sum_exp2_v,sampled_logit"
	statsJSON   = `"token_id":3,"logit_max":1.5,"sum_exp_rest":0.25,"sum_exp_v":-0.5,"sum_exp2":1.1,"sum_exp2_v":-0.2,"sampled_logit":1`
)

// readTable reads a CSV or JSONL body and returns its steps, masks (nil: no mask column) and
// sampled logits, or the error.
func readTable(t *testing.T, ext, body string) (steps []int64, mask []bool, sampled []float64, err error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in."+ext)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, nil)
	if err != nil {
		return nil, nil, nil, err
	}
	defer r.Close()
	for r.Next() {
		b := r.Batch()
		steps = append(steps, b.Step...)
		mask = append(mask, b.Input.Mask...)
		sampled = append(sampled, b.Input.Stats.Sampled...)
	}
	return steps, mask, sampled, r.Err()
}

// TestCSVCells (issue 21 item 5): every CSV cell that does not parse is an error naming its
// line, row, column and text — also the second bad cell of a chunk, which arrow-go's CSV reader
// read as 0, and a bad cell in a later batch; integral floats in integer columns are integers.
func TestCSVCells(t *testing.T) {
	row := func(step, max string) string { return "3," + step + "," + max + ",0.25,-0.5,1.1,-0.2,1\n" }
	many := statsHeader + "\n" + strings.Repeat(row("0", "1.5"), tableRows+7) + row("0", "1.5x")
	for _, tc := range []struct {
		name, body string
		steps      []int64
		err        string
	}{
		{"integral floats", statsHeader + "\n" + row("0.0", "1.5") + row("2", "1.5") + row("3.0e0", "1.5"), []int64{0, 2, 3}, ""},
		{"fractional step", statsHeader + "\n" + row("0", "1.5") + row("2.5", "1.5"), nil, `line 3 (row 1), column step: "2.5"; want an integer`},
		{"bad number", statsHeader + "\n" + row("0", "1.5") + row("0", "x"), nil, `line 3 (row 1), column logit_max: "x"; want a number`},
		{"two bad cells in one chunk", statsHeader + "\n" + row("0", "1.5") + row("0", "?") + row("0", "oops"), nil,
			`line 3 (row 1), column logit_max: "?"; want a number`},
		{"bad cell in a later batch", many, nil,
			`line 4105 (row 4103), column logit_max: "1.5x"; want a number`},
		{"bad mask", "mask," + statsHeader + "\nmaybe," + row("0", "1.5"), nil, `line 2 (row 0), column mask: "maybe"; want true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, _, _, err := readTable(t, "csv", tc.body)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil || !equalInts(steps, tc.steps) {
				t.Fatalf("steps %v, err %v; want %v", steps, err, tc.steps)
			}
		})
	}
}

// TestJSONLColumns (issue 21 items 3 and 5): the columns come from every line, so a key absent
// from line 1 is not dropped; a key given twice, a value of another kind than the column's, a
// fractional step are errors naming line, row and column; Python's bare NaN/Infinity tokens
// are numbers.
func TestJSONLColumns(t *testing.T) {
	line := func(extra string) string { return "{" + statsJSON + extra + "}\n" }
	for _, tc := range []struct {
		name, body string
		steps      []int64
		mask       []bool
		err        string
	}{
		{"mask only from line 2", line(`,"step":0`) + line(`,"step":0,"mask":false`) + line(`,"step":1`),
			[]int64{0, 0, 1}, []bool{true, false, true}, ""},
		{"step only from line 3", line("") + line("") + line(`,"step":4`), nil, nil, "row 0 (input row 0): step is null"},
		{"integral float step", line(`,"step":1.0`) + line(`,"step":1.25e2`), []int64{1, 125}, nil, ""},
		{"fractional step", line(`,"step":1`) + line(`,"step":1.5`), nil, nil, `line 2 (row 1), column step: 1.5; want an integer`},
		{"duplicate key", line(`,"step":0,"step":1`), nil, nil, `line 1: key "step" appears twice`},
		{"kinds differ", line(`,"note":"x"`) + line(`,"note":3`), nil, nil, `line 2, column note: a number, but line 1 has a string there`},
		{"string in a number column", line(`,"advantage":"high"`), nil, nil, `column advantage: "high"; want a number`},
		{"two objects on a line", strings.TrimSuffix(line(""), "\n") + "{}\n", nil, nil, "found more after it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			steps, mask, _, err := readTable(t, "jsonl", tc.body)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v; want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !equalInts(steps, tc.steps) || len(mask) != len(tc.mask) {
				t.Fatalf("steps %v mask %v; want %v %v", steps, mask, tc.steps, tc.mask)
			}
			for i := range mask {
				if mask[i] != tc.mask[i] {
					t.Fatalf("mask %v; want %v", mask, tc.mask)
				}
			}
		})
	}
}

// TestJSONLNonFiniteTokens: NaN, Infinity and -Infinity as Python's json.dumps writes them
// (bare), as papo wrote them before (strings), and inside a string left alone.
func TestJSONLNonFiniteTokens(t *testing.T) {
	body := `{"token_id":3,"logit_max":1.5,"sum_exp_rest":0.25,"sum_exp_v":-0.5,"sum_exp2":1.1,"sum_exp2_v":-0.2,"sampled_logit":-Infinity,"note":"NaN -Infinity"}` + "\n" +
		`{"token_id":3,"logit_max":1.5,"sum_exp_rest":0.25,"sum_exp_v":-0.5,"sum_exp2":1.1,"sum_exp2_v":-0.2,"sampled_logit":"-Infinity","note":"x"}` + "\n"
	_, _, sampled, err := readTable(t, "jsonl", body)
	if err != nil {
		t.Fatal(err)
	}
	if len(sampled) != 2 || !math.IsInf(sampled[0], -1) || !math.IsInf(sampled[1], -1) {
		t.Fatalf("sampled logits %v; want [-Inf -Inf]", sampled)
	}
	for in, want := range map[string]string{
		`{"a":NaN,"b":[Infinity,-Infinity]}`: `{"a":"NaN","b":["Infinity","-Infinity"]}`,
		`{"a":"NaN \"Infinity\""}`:           `{"a":"NaN \"Infinity\""}`,
		`{"a":-1.5}`:                         `{"a":-1.5}`,
	} {
		if got := string(quoteNonFinite([]byte(in))); got != want {
			t.Errorf("quoteNonFinite(%s) = %s; want %s", in, got, want)
		}
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
