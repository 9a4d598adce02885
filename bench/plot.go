package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/miekg/dns"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Figure geometry: 14 in at 100 dpi is 1400 pixels wide.
const (
	plotDPI   = 100
	plotW     = 14 * vg.Inch
	headerH   = 0.95 * vg.Inch // the title and the legend
	panelH    = 3.3 * vg.Inch
	footerH   = 0.1 * vg.Inch
	textSize  = 11 // points: tick labels, legend
	titleSize = 13 // points: the figure's and each panel's title
)

// The latency axis runs from 50 µs to the client timeout, log scale. Above the timeout, after a
// gap, a band holds the lost queries: in decades of the log scale, so its height does not depend
// on the timeout.
const (
	latMin      = 50 * time.Microsecond
	lostGapDec  = 0.25 // decades between the timeout line and the band
	lostBandDec = 0.5  // decades the band spans
)

var (
	colFault  = color.RGBA{255, 226, 226, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colTier1  = color.RGBA{31, 119, 180, 255}
	colTier2  = color.RGBA{44, 160, 44, 255}
	colFail   = color.RGBA{255, 127, 14, 255}
	colLost   = color.RGBA{214, 39, 40, 255}
	colWrong  = color.RGBA{148, 103, 189, 255}
	colLostBG = color.RGBA{250, 240, 240, 255}
)

func init() { plot.DefaultFont = font.Font{Typeface: "Liberation", Variant: "Sans"} }

// plotLatency draws one panel per forwarder: each query's latency at its send time, the fault window shaded.
func plotLatency(path, title string, runs []*faultRun, timeout time.Duration) error {
	var span time.Duration // the same x scale in every panel, so they line up
	for _, r := range runs {
		recs := r.load.records
		span = max(span, time.Duration(recs[len(recs)-1].sent))
	}
	// The last batch may go out a tick after the planned end; that must not add an empty second.
	span = max(time.Second, time.Duration(math.Ceil((span-100*time.Millisecond).Seconds()))*time.Second)

	plots := make([][]*plot.Plot, len(runs))
	for i, r := range runs {
		plots[i] = []*plot.Plot{panel(r, span, timeout)}
	}
	plots[len(runs)-1][0].X.Label.Text = "seconds since the load started"

	img := vgimg.NewWith(vgimg.UseWH(plotW, headerH+vg.Length(len(runs))*panelH+footerH), vgimg.UseDPI(plotDPI))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Path())
	header(dc, title, timeout)
	tiles := draw.Tiles{Rows: len(runs), Cols: 1, PadTop: headerH, PadBottom: footerH, PadLeft: vg.Points(8), PadRight: vg.Points(20), PadY: vg.Points(14)}
	for i, c := range plot.Align(plots, tiles, dc) {
		plots[i][0].Draw(c[0])
	}

	f, err := os.Create(path) //nolint:gosec // G304: the plot goes where -out says
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// header draws the figure's title and, below it, the colour key in one row, wrapping when full.
func header(dc draw.Canvas, title string, timeout time.Duration) {
	left, top := dc.Min.X+vg.Points(20), dc.Max.Y-vg.Points(10)
	sty := draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, titleSize), Handler: plot.DefaultTextHandler, YAlign: draw.YTop}
	dc.FillText(sty, vg.Point{X: left, Y: top}, title)

	sty.Font = font.From(plot.DefaultFont, textSize)
	items := []struct {
		label string
		thumb plot.Thumbnailer
	}{
		{"tier 1 answer", swatch{c: colTier1}},
		{"tier 2 answer", swatch{c: colTier2}},
		{"SERVFAIL / other rcode", swatch{c: colFail}},
		{"lost (no answer in " + timeout.String() + ")", swatch{c: colLost, cross: true}},
		{"wrong answer", swatch{c: colWrong}},
		{"fault window", swatch{c: colFault}},
	}
	box := vg.Points(10)
	x, y := left, top-vg.Points(titleSize+14)
	for _, it := range items {
		w := box + vg.Points(6) + sty.Width(it.label) + vg.Points(28)
		if x+w > dc.Max.X-vg.Points(20) {
			x, y = left, y-vg.Points(textSize+8)
		}
		it.thumb.Thumbnail(&draw.Canvas{Canvas: dc.Canvas, Rectangle: vg.Rectangle{Min: vg.Point{X: x, Y: y - box}, Max: vg.Point{X: x + box, Y: y}}})
		dc.FillText(sty, vg.Point{X: x + box + vg.Points(6), Y: y + vg.Points(1)}, it.label)
		x += w
	}
}

// panel returns one forwarder's run as a plot: x seconds since the load started, y latency in
// seconds on a log scale, lost queries in the band above the timeout.
func panel(r *faultRun, span, timeout time.Duration) *plot.Plot {
	lostLo := timeout.Seconds() * math.Pow(10, lostGapDec)
	lostHi := lostLo * math.Pow(10, lostBandDec)

	var tier1, tier2, fail, wrong, lost plotter.XYs
	for i := range r.load.records {
		rec := &r.load.records[i]
		x := time.Duration(rec.sent).Seconds()
		d, ok := rec.latency(timeout)
		y := max(d, latMin).Seconds()
		switch {
		case !ok:
			// Spread lost marks over the band by index, so their density shows.
			f := 0.1 + 0.8*float64(i*7%17)/16
			lost = append(lost, plotter.XY{X: x, Y: lostLo * math.Pow(lostHi/lostLo, f)})
		case rec.rcode != dns.RcodeSuccess:
			fail = append(fail, plotter.XY{X: x, Y: y})
		case rec.wrong:
			wrong = append(wrong, plotter.XY{X: x, Y: y})
		case rec.tier == 1:
			tier1 = append(tier1, plotter.XY{X: x, Y: y})
		default:
			tier2 = append(tier2, plotter.XY{X: x, Y: y})
		}
	}

	p := plot.New()
	counts := fmt.Sprintf("%d sent, %d lost", len(r.load.records), len(lost))
	if len(wrong) > 0 {
		counts += fmt.Sprintf(", %d wrong", len(wrong))
	}
	p.Title.Text = fmt.Sprintf("%s   (%s)", r.forwarder, counts)
	p.Title.TextStyle.Font.Size = titleSize
	p.X.Min, p.X.Max = 0, span.Seconds()
	p.Y.Min, p.Y.Max = latMin.Seconds(), lostHi
	p.X.Padding, p.Y.Padding = 0, 0
	p.Y.Scale = plot.LogScale{}
	p.X.Tick.Label.Font.Size, p.Y.Tick.Label.Font.Size, p.X.Label.TextStyle.Font.Size = textSize, textSize, textSize

	xTicks := xTicks(span)
	yTicks := yTicks(timeout)
	p.X.Tick.Marker = plot.ConstantTicks(xTicks)
	p.Y.Tick.Marker = plot.ConstantTicks(append(yTicks, plot.Tick{Value: math.Sqrt(lostLo * lostHi), Label: "lost"}))

	p.Add(backdrop{outages: r.outages(), lostLo: lostLo, lostHi: lostHi, xTicks: xTicks, yTicks: yTicks})
	for _, s := range []struct {
		xys   plotter.XYs
		c     color.Color
		r     vg.Length
		shape draw.GlyphDrawer
	}{
		{tier1, colTier1, 0.7, draw.BoxGlyph{}},
		{tier2, colTier2, 0.7, draw.BoxGlyph{}},
		{fail, colFail, 0.7, draw.BoxGlyph{}},
		{wrong, colWrong, 1.5, draw.BoxGlyph{}},
		{lost, colLost, 2, draw.CrossGlyph{}},
	} {
		if len(s.xys) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(s.xys)
		if err != nil {
			continue // only for NaN or infinite values, which send times and latencies are not
		}
		sc.GlyphStyle = draw.GlyphStyle{Color: s.c, Radius: s.r, Shape: s.shape}
		p.Add(sc)
	}
	return p
}

// xTicks returns the time axis's ticks: every 2 s, every 5 s past 40 s.
func xTicks(span time.Duration) []plot.Tick {
	step := 2 * time.Second
	if span > 40*time.Second {
		step = 5 * time.Second
	}
	var ticks []plot.Tick
	for t := time.Duration(0); t <= span; t += step {
		ticks = append(ticks, plot.Tick{Value: t.Seconds(), Label: strconv.Itoa(int(t.Seconds()))})
	}
	return ticks
}

// yTicks returns the latency axis's ticks, decades from 0.1 ms and the timeout; a decade too
// close under the timeout (1 s under 2 s) keeps its grid line but not its label.
func yTicks(timeout time.Duration) []plot.Tick {
	ticks := []plot.Tick{{Value: timeout.Seconds(), Label: timeout.String()}}
	for _, tick := range []struct {
		d     time.Duration
		label string
	}{{time.Second, "1 s"}, {100 * time.Millisecond, "100 ms"}, {10 * time.Millisecond, "10 ms"}, {time.Millisecond, "1 ms"}, {100 * time.Microsecond, "0.1 ms"}} {
		switch {
		case tick.d >= timeout:
		case float64(timeout)/float64(tick.d) < 3:
			ticks = append(ticks, plot.Tick{Value: tick.d.Seconds(), Label: " "})
		default:
			ticks = append(ticks, plot.Tick{Value: tick.d.Seconds(), Label: tick.label})
		}
	}
	return ticks
}

// backdrop is what the points are drawn over: the lost band, the fault windows and the grid.
type backdrop struct {
	outages        []window
	lostLo, lostHi float64
	xTicks, yTicks []plot.Tick
}

// Plot implements plot.Plotter.
func (b backdrop) Plot(c draw.Canvas, p *plot.Plot) {
	tx, ty := p.Transforms(&c)
	fill := func(x0, x1, y0, y1 vg.Length, col color.Color) {
		c.FillPolygon(col, c.ClipPolygonXY([]vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}))
	}
	line := func(pts ...vg.Point) {
		c.StrokeLines(draw.LineStyle{Color: colGrid, Width: vg.Points(0.6)}, c.ClipLinesXY(pts)...)
	}
	bandLo, bandHi := ty(b.lostLo), c.Max.Y
	fill(c.Min.X, c.Max.X, bandLo, bandHi, colLostBG)
	for _, w := range b.outages {
		fill(tx(w.from.Seconds()), tx(w.to.Seconds()), c.Min.Y, c.Max.Y, colFault)
	}
	for _, t := range b.yTicks {
		line(vg.Point{X: c.Min.X, Y: ty(t.Value)}, vg.Point{X: c.Max.X, Y: ty(t.Value)})
	}
	for _, t := range b.xTicks {
		line(vg.Point{X: tx(t.Value), Y: c.Min.Y}, vg.Point{X: tx(t.Value), Y: ty(b.yTicks[0].Value)})
	}
}

// swatch is a legend key: a filled square, or a cross for lost queries.
type swatch struct {
	c     color.Color
	cross bool
}

// Thumbnail implements plot.Thumbnailer.
func (s swatch) Thumbnail(c *draw.Canvas) {
	if s.cross {
		c.DrawGlyph(draw.GlyphStyle{Color: s.c, Radius: (c.Max.X - c.Min.X) / 2, Shape: draw.CrossGlyph{}}, c.Center())
		return
	}
	c.SetColor(s.c)
	c.Fill(c.Path())
}
