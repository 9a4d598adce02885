package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/miekg/dns"
)

// Plot geometry in pixels.
const (
	plotW      = 1400
	marginL    = 120 // room for the latency labels
	marginR    = 30
	headerH    = 80 // title and legend
	panelTitle = 30
	lostBand   = 24 // the strip above the 2 s line where lost queries go
	lostGap    = 12 // between the strip and the 2 s line, so their labels do not touch
	panelPlot  = 220
	panelAxis  = 34
	panelH     = panelTitle + lostBand + lostGap + panelPlot + panelAxis
	footerH    = 40
	textScale  = 2
)

// The latency axis runs from 50 µs to the client timeout, log scale.
const latMin = 50 * time.Microsecond

var (
	colBG     = color.RGBA{255, 255, 255, 255}
	colFault  = color.RGBA{255, 226, 226, 255}
	colGrid   = color.RGBA{225, 225, 225, 255}
	colAxis   = color.RGBA{60, 60, 60, 255}
	colTier1  = color.RGBA{31, 119, 180, 255}
	colTier2  = color.RGBA{44, 160, 44, 255}
	colFail   = color.RGBA{255, 127, 14, 255}
	colLost   = color.RGBA{214, 39, 40, 255}
	colWrong  = color.RGBA{148, 103, 189, 255}
	colLostBG = color.RGBA{250, 240, 240, 255}
)

// plotLatency draws one panel per forwarder: each query's latency at its send time, the fault window shaded.
func plotLatency(path, title string, runs []*faultRun, timeout time.Duration) error {
	img := image.NewRGBA(image.Rect(0, 0, plotW, headerH+len(runs)*panelH+footerH))
	fillRect(img, 0, 0, plotW, img.Bounds().Dy(), colBG)
	drawText(img, marginL, 12, title, textScale, colAxis)
	legend(img, marginL, 40)

	var span time.Duration // the same x scale in every panel, so they line up
	for _, r := range runs {
		recs := r.load.records
		span = max(span, time.Duration(recs[len(recs)-1].sent))
	}
	// The last batch may go out a tick after the planned end; that must not add an empty second.
	span = time.Duration(math.Ceil((span - 100*time.Millisecond).Seconds())) * time.Second
	for i, r := range runs {
		panel(img, headerH+i*panelH, r, span, timeout)
	}
	caption := "SECONDS SINCE THE LOAD STARTED"
	drawText(img, marginL+(plotW-marginL-marginR-textWidth(caption, textScale))/2, img.Bounds().Dy()-footerH+8, caption, textScale, colAxis)

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// legend draws the colour key at (x, y), wrapping to a second row when the first is full.
func legend(img *image.RGBA, x, y int) {
	items := []struct {
		label string
		c     color.Color
	}{{"TIER 1 ANSWER", colTier1}, {"TIER 2 ANSWER", colTier2}, {"SERVFAIL / OTHER RCODE", colFail}, {"LOST (NO ANSWER IN 2 S)", colLost}, {"FAULT WINDOW", colFault}, {"WRONG ANSWER", colWrong}}
	x0 := x
	for _, it := range items {
		if x+22+textWidth(it.label, textScale) > plotW-marginR {
			x, y = x0, y+20
		}
		fillRect(img, x, y, 14, 14, it.c)
		drawText(img, x+22, y, it.label, textScale, colAxis)
		x += 22 + textWidth(it.label, textScale) + 36
	}
}

// panel draws one forwarder's run with its top at y.
func panel(img *image.RGBA, y int, r *faultRun, span, timeout time.Duration) {
	x0, x1 := marginL, plotW-marginR
	band := y + panelTitle           // top of the lost strip
	top := band + lostBand + lostGap // the client timeout line
	bottom := top + panelPlot
	xOf := func(t time.Duration) int { return x0 + int(float64(x1-x0)*float64(t)/float64(span)) }
	logMin, logMax := math.Log(float64(latMin)), math.Log(float64(timeout))
	yOf := func(d time.Duration) int {
		f := (math.Log(float64(max(d, latMin))) - logMin) / (logMax - logMin)
		return bottom - int(f*float64(panelPlot))
	}

	lost, wrong := 0, 0
	for i := range r.load.records {
		if _, ok := r.load.records[i].latency(timeout); !ok {
			lost++
		} else if r.load.records[i].wrong {
			wrong++
		}
	}
	counts := fmt.Sprintf("%d SENT, %d LOST", len(r.load.records), lost)
	if wrong > 0 {
		counts += fmt.Sprintf(", %d WRONG", wrong)
	}
	drawText(img, x0, y+6, fmt.Sprintf("%s   (%s)", r.forwarder, counts), textScale, colAxis)

	fillRect(img, x0, band, x1-x0, lostBand, colLostBG)
	for _, w := range r.outages() {
		fillRect(img, xOf(w.from), band, xOf(w.to)-xOf(w.from), top+panelPlot-band, colFault)
	}
	drawText(img, x0-textWidth("LOST", textScale)-8, band+5, "LOST", textScale, colLost)
	lastLabel := band - 100 // labels go top down, so the timeout's always shows
	for _, tick := range []struct {
		d     time.Duration
		label string
	}{{timeout, timeout.String()}, {time.Second, "1S"}, {100 * time.Millisecond, "100MS"}, {10 * time.Millisecond, "10MS"}, {time.Millisecond, "1MS"}, {100 * time.Microsecond, "0.1MS"}} {
		ty := yOf(tick.d)
		fillRect(img, x0, ty, x1-x0, 1, colGrid)
		if ty-lastLabel < 18 {
			continue // too close to the label above (1 s under a 2 s timeout)
		}
		drawText(img, x0-textWidth(tick.label, textScale)-8, ty-7, tick.label, textScale, colAxis)
		lastLabel = ty
	}
	step := 2 * time.Second
	if span > 40*time.Second {
		step = 5 * time.Second
	}
	for t := time.Duration(0); t <= span; t += step {
		tx := xOf(t)
		fillRect(img, tx, top, 1, panelPlot, colGrid)
		fillRect(img, tx, bottom, 1, 6, colAxis)
		label := strconv.Itoa(int(t.Seconds()))
		drawText(img, tx-textWidth(label, textScale)/2, bottom+10, label, textScale, colAxis)
	}
	fillRect(img, x0, bottom, x1-x0, 1, colAxis)
	fillRect(img, x0, band, 1, top+panelPlot-band, colAxis)

	for i := range r.load.records {
		rec := &r.load.records[i]
		x := xOf(time.Duration(rec.sent))
		d, ok := rec.latency(timeout)
		switch {
		case !ok:
			// Spread lost marks over the band by index, so their density shows.
			cross(img, x, band+4+(i*7)%(lostBand-8), colLost)
		case rec.rcode != dns.RcodeSuccess:
			fillRect(img, x, yOf(d)-1, 2, 2, colFail)
		case rec.wrong:
			fillRect(img, x-1, yOf(d)-2, 4, 4, colWrong)
		case rec.tier == 1:
			fillRect(img, x, yOf(d)-1, 2, 2, colTier1)
		default:
			fillRect(img, x, yOf(d)-1, 2, 2, colTier2)
		}
	}
}

// cross draws a small x centred on (x, y).
func cross(img *image.RGBA, x, y int, c color.Color) {
	for d := -2; d <= 2; d++ {
		img.Set(x+d, y+d, c)
		img.Set(x+d, y-d, c)
	}
}

// fillRect fills the w x h rectangle at (x, y), clipped to the image.
func fillRect(img *image.RGBA, x, y, w, h int, c color.Color) {
	r := image.Rect(x, y, x+w, y+h).Intersect(img.Bounds())
	for py := r.Min.Y; py < r.Max.Y; py++ {
		for px := r.Min.X; px < r.Max.X; px++ {
			img.Set(px, py, c)
		}
	}
}
