package reporttest

import (
	"math"
	"testing"
)

func TestPrinted(t *testing.T) {
	tests := []struct {
		text      string
		value, hu float64
	}{
		{"6.293", 6.293, 5e-4}, {"-10.59", -10.59, 5e-3}, {"+0.321", 0.321, 5e-4}, {"29.4%", 0.294, 5e-4},
		{"-1.498e-05", -1.498e-05, 5e-9}, {"378", 378, 0.5}, {"1e+04", 1e4, 5e3},
	}
	for _, tc := range tests {
		v, hu, err := Printed(tc.text)
		if err != nil || math.Abs(v-tc.value) > 1e-12*math.Abs(tc.value) || math.Abs(hu-tc.hu) > 1e-12*tc.hu {
			t.Errorf("Printed(%q) = %v, %v, %v; want %v, %v", tc.text, v, hu, err, tc.value, tc.hu)
		}
	}
	if _, _, err := Printed("–"); err == nil {
		t.Error("Printed(–) is a number")
	}
}

func TestTable(t *testing.T) {
	page := `<table data-table="a"><tr><th>x</th></tr><tr><td data-col="x">&#43;1</td><td>y</td></tr></table>` +
		`<table data-table="b"><tr><td data-col="x">2</td></tr></table>`
	rows, err := Table(page, "a")
	if err != nil || len(rows) != 1 || rows[0]["x"] != "+1" {
		t.Errorf("Table(a) = %v, %v", rows, err)
	}
	if _, err := Table(page, "c"); err == nil {
		t.Error("Table(c) found a table")
	}
}
