package papoio

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// floatPartials is a partials table whose every column is float64, as pandas writes a table
// summed over ranks, one row per entry of rows (each the eight values as text).
func floatPartials(t *testing.T, rows ...[]string) []byte {
	t.Helper()
	var fields []arrow.Field
	for _, f := range partialsSchema.Fields() {
		fields = append(fields, arrow.Field{Name: f.Name, Type: arrow.PrimitiveTypes.Float64})
	}
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		for k, v := range r {
			x, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			b.Field(k).(*array.Float64Builder).Append(x)
		}
	}
	rec := b.NewRecord()
	defer rec.Release()
	return encodeIPC(t, false, schema, rec)
}

// TestPartialsValues: the global statistics tables (a file for `papo reweight
// --global-stats`, here an Arrow IPC file of float64 columns, JSON for papo serve's papo.global_stats) take an integral float as its
// integer and refuse a count that is not a whole number ≥ 0, a sum that is not finite and a
// step listed twice, naming the step, the key and the value. Before, 124.9999999 was read as
// 124, 125.5 as 125, and a second row of a step replaced the first.
func TestPartialsValues(t *testing.T) {
	row := func(step, tokens, weighted string) []string {
		return []string{step, tokens, "41.5", weighted, "0.25", "1.5", "12", "-2"}
	}
	jsonRow := func(step, tokens, weighted string) string {
		return `{"step":` + step + `,"entropy_tokens":` + tokens + `,"entropy_sum":41.5,"weighted_tokens":` + weighted +
			`,"polarity_sum":0.25,"polarity_sum2":1.5,"abs_advantage_sum":12,"abs_advantage_sign_sum":-2}`
	}
	cases := []struct {
		name                   string
		step, tokens, weighted string
		want                   string // "" accepted
	}{
		{"integers", "3", "59", "40", ""},
		{"integral floats", "3.0", "59.0", "1.25e2", ""},
		{"count just under an integer", "3", "124.9999999", "40", "step 3: entropy_tokens 124.9999999: want a whole number ≥ 0"},
		{"half a token", "3", "59", "125.5", "step 3: weighted_tokens 125.5: want a whole number ≥ 0"},
		{"negative count", "3", "-1", "40", "step 3: entropy_tokens -1: want a whole number ≥ 0"},
		{"fractional step", "2.5", "59", "40", "step 2.5: want a whole number"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".arrow")
		if err := os.WriteFile(path, floatPartials(t, row(c.step, c.tokens, c.weighted)), 0o600); err != nil {
			t.Fatal(err)
		}
		fromFile, errFile := ReadPartials(path)
		fromJSON, errJSON := DecodePartialsJSON([]byte("[" + jsonRow(c.step, c.tokens, c.weighted) + "]"))
		for _, got := range []struct {
			how  string
			rows []StepPartials
			err  error
		}{{"arrow", fromFile, errFile}, {"json", fromJSON, errJSON}} {
			switch {
			case c.want == "" && got.err != nil:
				t.Errorf("%s, %s: %v", c.name, got.how, got.err)
			case c.want == "" && (len(got.rows) != 1 || got.rows[0].Step != 3 || got.rows[0].EntropyTokens != 59 ||
				got.rows[0].WeightedTokens != map[string]int64{"40": 40, "1.25e2": 125}[c.weighted]):
				t.Errorf("%s, %s: rows %+v", c.name, got.how, got.rows)
			case c.want != "" && (got.err == nil || !strings.Contains(got.err.Error(), c.want)):
				t.Errorf("%s, %s: error %v, want it to contain %q", c.name, got.how, got.err, c.want)
			}
		}
	}

	twice := filepath.Join(dir, "twice.arrow")
	if err := os.WriteFile(twice, floatPartials(t, row("3", "59", "40"), row("3", "60", "41")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPartials(twice); err == nil || !strings.Contains(err.Error(), "row 1: step 3 is listed twice") {
		t.Errorf("a step twice in a file: %v", err)
	}
	_, err := DecodePartialsJSON([]byte("[" + jsonRow("3", "59", "40") + "," + jsonRow("4", "59", "40") + "," + jsonRow("3", "60", "41") + "]"))
	if err == nil || !strings.Contains(err.Error(), "row 2: step 3 is listed twice (rows 0 and 2)") {
		t.Errorf("a step twice in JSON: %v", err)
	}
	for _, bad := range []struct{ json, want string }{
		{`[{"step":1}]`, `row 0: no key "entropy_tokens"`},
		{"[" + strings.Replace(jsonRow("1", "2", "2"), `"step"`, `"stepp"`, 1) + "]", `row 0: unknown key "stepp"`},
		{"[" + strings.Replace(jsonRow("1", "2", "2"), `41.5`, `"41.5"`, 1) + "]", `row 0: entropy_sum "41.5": want a number`},
		{`{"step":1}`, "want a JSON array"},
	} {
		if _, err := DecodePartialsJSON([]byte(bad.json)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.json, err, bad.want)
		}
	}
}
