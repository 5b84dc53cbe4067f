// Package reporttest reads back what papo report printed, for the tests of package report and
// of the command: the figures of a page, the rows of its tables, and the precision a table
// cell was printed to, so that a test can compare printed numbers with the data they came from.
package reporttest

import (
	"fmt"
	"html"
	"math"
	"regexp"
	"strconv"
	"strings"
)

var (
	figureRE = regexp.MustCompile(`(?s)<figure class="fig" data-fig="([^"]+)"( data-nodata="1")?>(.*?)</figure>`)
	rowRE    = regexp.MustCompile(`(?s)<tr>(.*?)</tr>`)
	cellRE   = regexp.MustCompile(`<td data-col="([^"]+)">([^<]*)</td>`)
)

// Figures maps each figure of a page to its inner HTML, and says which have no data.
func Figures(page string) (inner map[string]string, nodata map[string]bool) {
	inner, nodata = map[string]string{}, map[string]bool{}
	for _, m := range figureRE.FindAllStringSubmatch(page, -1) {
		inner[m[1]] = m[3]
		nodata[m[1]] = m[2] != ""
	}
	return inner, nodata
}

// Table is the page's table data-table=name: one map per row (column → printed text, HTML
// entities decoded), header rows left out.
func Table(page, name string) ([]map[string]string, error) {
	start := strings.Index(page, `data-table="`+name+`"`)
	if start < 0 {
		return nil, fmt.Errorf("the page has no table %q", name)
	}
	end := start + strings.Index(page[start:], "</table>")
	var rows []map[string]string
	for _, m := range rowRE.FindAllStringSubmatch(page[start:end], -1) {
		row := map[string]string{}
		for _, c := range cellRE.FindAllStringSubmatch(m[1], -1) {
			row[c[1]] = html.UnescapeString(c[2])
		}
		if len(row) > 0 {
			rows = append(rows, row)
		}
	}
	return rows, nil
}

// Printed is the number a cell shows ("6.293", "-1.498e-05", "29.4%" as 0.294) and half a
// unit of its last printed digit: the most a correct rounding can be off.
func Printed(text string) (value, halfUnit float64, err error) {
	scale := 1.0
	if strings.HasSuffix(text, "%") {
		text, scale = strings.TrimSuffix(text, "%"), 0.01
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("cell %q is not a number", text)
	}
	mantissa, exp := text, 0
	if i := strings.IndexAny(text, "eE"); i >= 0 {
		mantissa = text[:i]
		exp, _ = strconv.Atoi(text[i+1:])
	}
	decimals := 0
	if i := strings.IndexByte(mantissa, '.'); i >= 0 {
		decimals = len(mantissa) - i - 1
	}
	return v * scale, 0.5 * math.Pow10(exp-decimals) * scale, nil
}
