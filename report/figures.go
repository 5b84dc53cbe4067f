package report

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"html"
	"image/color"
	"math"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/entropy-polarity/papo/internal/atomicfile"
)

// Figure is one figure of the report: a drawing, or, where there is nothing to draw, a
// sentence that says why (NoData).
type Figure struct {
	ID, Title string
	Caption   string
	NoData    string
	w, h      vg.Length
	draw      func(draw.Canvas)
}

// figure sizes: the page is about 900 px wide; 1 pt = 4/3 px.
const (
	figWidth  = 6.5 * vg.Inch
	figHeight = 3 * vg.Inch
)

var (
	entropyColor  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	emaColor      = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
	targetColor   = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
	expandColor   = color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}
	contractColor = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	seriesColors  = []color.Color{entropyColor, emaColor, expandColor, contractColor,
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
		color.RGBA{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}}
)

// faded is c at alpha a/255 (premultiplied, as image/color wants).
func faded(c color.RGBA, a uint8) color.Color {
	f := func(v uint8) uint8 { return uint8(uint16(v) * uint16(a) / 255) }
	return color.RGBA{R: f(c.R), G: f(c.G), B: f(c.B), A: a}
}

func seriesColor(i int) color.Color { return seriesColors[i%len(seriesColors)] }

// SVG draws the figure as an SVG element for inline use in HTML (no XML prolog); nil for a
// figure without data.
func (f *Figure) SVG() ([]byte, error) {
	if f.draw == nil {
		return nil, nil
	}
	c := vgsvg.New(f.w, f.h)
	f.draw(draw.New(c))
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("report: figure %s: %w", f.ID, err)
	}
	out := buf.Bytes()
	i := bytes.Index(out, []byte("<svg"))
	if i < 0 {
		return nil, fmt.Errorf("report: figure %s: the SVG has no <svg> element", f.ID)
	}
	label := fmt.Sprintf(`<svg role="img" aria-label="%s"`, html.EscapeString(f.Title))
	return append([]byte(label), out[i+len("<svg"):]...), nil
}

// PNG writes the figure to dir/ID.png at 150 dpi and returns the path; "" for a figure without
// data. The file is written beside its destination and renamed over it (internal/atomicfile):
// a reader sees the old figure or the new one, never a part, and an existing file at the path
// is replaced, not written through (a hard link to it keeps its content).
func (f *Figure) PNG(dir string) (string, error) {
	if f.draw == nil {
		return "", nil
	}
	c := vgimg.NewWith(vgimg.UseWH(f.w, f.h), vgimg.UseDPI(150), vgimg.UseBackgroundColor(color.White))
	f.draw(draw.New(c))
	path := filepath.Join(dir, f.ID+".png")
	out, err := atomicfile.Create(path)
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	defer out.Abort()
	if _, err := (vgimg.PngCanvas{Canvas: c}).WriteTo(out); err != nil {
		return "", fmt.Errorf("report: %s: %w", path, err)
	}
	if err := out.Commit(); err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	return path, nil
}

// sans is the face of every text in the figures: Liberation Sans, which the page embeds once
// (FontFaceCSS), so that a browser draws the SVG texts with the metrics plot laid them out with
// (without it, a browser falls back to another font, and labels overrun the figure's edges).
var sans = font.Font{Typeface: "Liberation", Variant: "Sans"}

// FontFaceCSS is the CSS @font-face rule that embeds sans as a data: URL (SIL Open Font
// License).
func FontFaceCSS() (string, error) {
	face := font.DefaultCache.Lookup(sans, 10)
	if face.Face == nil {
		return "", fmt.Errorf("report: the font %s %s is not in plot's font cache", sans.Typeface, sans.Variant)
	}
	var raw bytes.Buffer
	if _, err := face.Face.WriteSourceTo(nil, &raw); err != nil {
		return "", fmt.Errorf("report: reading the font: %w", err)
	}
	return fmt.Sprintf(`@font-face { font-family: "Liberation Sans"; src: url(data:font/ttf;base64,%s) format("truetype"); }`,
		base64.StdEncoding.EncodeToString(raw.Bytes())), nil
}

// newPlot is a plot with the report's axis labels, a grid and its text in sans.
func newPlot(x, y string) *plot.Plot {
	p := plot.New()
	p.X.Label.Text, p.Y.Label.Text = x, y
	if x == "step" {
		p.X.Tick.Marker = stepTicks{}
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	for _, f := range []*font.Font{&p.Title.TextStyle.Font, &p.X.Label.TextStyle.Font, &p.Y.Label.TextStyle.Font,
		&p.X.Tick.Label.Font, &p.Y.Tick.Label.Font, &p.Legend.TextStyle.Font} {
		f.Typeface, f.Variant = sans.Typeface, sans.Variant
	}
	return p
}

// headroom raises the y range above the data by 15 % for each legend row, so that the
// legend (top right) does not cover the lines.
func headroom(p *plot.Plot, rows int) {
	frac := 0.15 * float64(rows)
	if _, log := p.Y.Scale.(plot.LogScale); log {
		p.Y.Max *= math.Pow(p.Y.Max/p.Y.Min, frac)
		return
	}
	p.Y.Max += (p.Y.Max - p.Y.Min) * frac
}

// single draws one plot over the figure.
func single(p *plot.Plot) func(draw.Canvas) { return p.Draw }

// stacked draws plots one above the other, their data areas aligned.
func stacked(ps ...*plot.Plot) func(draw.Canvas) {
	return func(dc draw.Canvas) {
		rows := make([][]*plot.Plot, len(ps))
		for i, p := range ps {
			rows[i] = []*plot.Plot{p}
		}
		cs := plot.Align(rows, draw.Tiles{Rows: len(ps), Cols: 1, PadY: vg.Points(4)}, dc)
		for i, p := range ps {
			p.Draw(cs[i][0])
		}
	}
}

// buckets splits n points into at most max runs of near-equal length: [lo, hi) each.
func buckets(n, max int) [][2]int {
	if n == 0 {
		return nil
	}
	k := min(n, max)
	out := make([][2]int, k)
	for i := range k {
		out[i] = [2]int{i * n / k, (i + 1) * n / k}
	}
	return out
}

// downsample averages the points (x, y) in at most max equal runs; NaN values are left out,
// and a run without a value gives no point.
func downsample(xs, ys []float64, max int) plotter.XYs {
	var out plotter.XYs
	for _, b := range buckets(len(xs), max) {
		var sx, sy float64
		n := 0
		for i := b[0]; i < b[1]; i++ {
			if math.IsNaN(ys[i]) || math.IsInf(ys[i], 0) {
				continue
			}
			sx, sy = sx+xs[i], sy+ys[i]
			n++
		}
		if n > 0 {
			out = append(out, plotter.XY{X: sx / float64(n), Y: sy / float64(n)})
		}
	}
	return out
}

// addLine adds a line (with point marks when there are few points, so that one step shows)
// to p and to its legend.
func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dashed bool, name string) error {
	if len(xys) == 0 {
		return nil
	}
	l, err := plotter.NewLine(xys)
	if err != nil {
		return err
	}
	l.Color, l.Width = c, vg.Points(1.5)
	if dashed {
		l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	}
	p.Add(l)
	thumbs := []plot.Thumbnailer{l}
	if len(xys) <= 50 {
		s, err := plotter.NewScatter(xys)
		if err != nil {
			return err
		}
		s.Color, s.Shape, s.Radius = c, draw.CircleGlyph{}, vg.Points(2.5)
		p.Add(s)
		thumbs = append(thumbs, s)
	}
	if name != "" {
		p.Legend.Add(name, thumbs...)
	}
	return nil
}

// addBand adds the area between lo and hi (same x) to p.
func addBand(p *plot.Plot, lo, hi plotter.XYs, c color.Color) error {
	if len(lo) < 2 {
		return nil
	}
	ring := make(plotter.XYs, 0, 2*len(lo))
	ring = append(ring, lo...)
	for i := len(hi) - 1; i >= 0; i-- {
		ring = append(ring, hi[i])
	}
	poly, err := plotter.NewPolygon(ring)
	if err != nil {
		return err
	}
	poly.Color, poly.LineStyle.Width = c, 0
	p.Add(poly)
	return nil
}

// signedArea adds the area between y = 0 and the positive part of xys in pos, and the negative
// part in neg: φ shaded by its sign.
func signedArea(p *plot.Plot, xys plotter.XYs, pos, neg color.Color) error {
	if len(xys) < 2 {
		return nil
	}
	for _, part := range []struct {
		keep func(float64) float64
		c    color.Color
	}{{func(y float64) float64 { return math.Max(y, 0) }, pos}, {func(y float64) float64 { return math.Min(y, 0) }, neg}} {
		ring := make(plotter.XYs, 0, len(xys)+2)
		ring = append(ring, plotter.XY{X: xys[0].X, Y: 0})
		for _, pt := range xys {
			ring = append(ring, plotter.XY{X: pt.X, Y: part.keep(pt.Y)})
		}
		ring = append(ring, plotter.XY{X: xys[len(xys)-1].X, Y: 0})
		poly, err := plotter.NewPolygon(ring)
		if err != nil {
			return err
		}
		poly.Color, poly.LineStyle.Width = part.c, 0
		p.Add(poly)
	}
	return nil
}

// logAxis puts a logarithmic scale on a, whose data are > 0, widening a range of one value
// (plot would widen it by ±1, below 0).
func logAxis(a *plot.Axis) {
	a.Scale = plot.LogScale{}
	a.Tick.Marker = decadeTicks{}
	if a.Min == a.Max {
		a.Min, a.Max = a.Min/2, a.Max*2
	}
}

// decadeTicks labels the powers of ten of a log axis (every other one over many decades) and
// marks 2…9 between them. plot's LogTicks multiplies its way up and labels 1e-5 as
// 9.999999999999999e-06.
type decadeTicks struct{}

func (decadeTicks) Ticks(lo, hi float64) []plot.Tick {
	first, last := int(math.Floor(math.Log10(lo))), int(math.Ceil(math.Log10(hi)))
	every := 1 + (last-first)/8
	var ticks []plot.Tick
	for e := first; e <= last; e++ {
		decade := math.Pow10(e)
		label := ""
		if (e-first)%every == 0 {
			label = strconv.FormatFloat(decade, 'g', -1, 64)
		}
		ticks = append(ticks, plot.Tick{Value: decade, Label: label})
		for m := 2; m < 10 && e < last; m++ {
			ticks = append(ticks, plot.Tick{Value: float64(m) * decade})
		}
	}
	return ticks
}

// stepTicks are plot's default ticks at whole steps only.
type stepTicks struct{}

func (stepTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	if hi-lo <= 12 {
		for v := math.Ceil(lo); v <= hi; v++ {
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
		}
		return ticks
	}
	for _, t := range (plot.DefaultTicks{}).Ticks(lo, hi) {
		if t.Value == math.Trunc(t.Value) {
			if t.Label != "" {
				t.Label = strconv.FormatFloat(t.Value, 'f', 0, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}
