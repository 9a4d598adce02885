package main

import (
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestPlotLatency draws two panels of every kind of point and checks the PNG is the figure's size.
func TestPlotLatency(t *testing.T) {
	runs := make([]*faultRun, 2)
	for k := range runs {
		lr := &loadResult{records: make([]record, 2000)}
		for i := range lr.records {
			rec := &lr.records[i]
			rec.sent = int64(time.Duration(i) * 5 * time.Millisecond)
			rec.tier = 1
			switch {
			case i%97 == 0: // lost
				continue
			case i%89 == 0:
				rec.rcode = dns.RcodeServerFailure
			case i%83 == 0:
				rec.wrong = true
			case i > 800 && i < 1400:
				rec.tier = 2
			}
			rec.recv.Store(rec.sent + int64(time.Duration(1+i%50)*time.Millisecond))
		}
		runs[k] = &faultRun{forwarder: []string{"upstreamtier", "forward"}[k], load: lr, faultAt: 4 * time.Second, recoverAt: 7 * time.Second}
	}
	path := filepath.Join(t.TempDir(), "p.png")
	if p := os.Getenv("PLOT_TEST_OUT"); p != "" {
		path = p
	}
	if err := plotLatency(path, "blackhole: tier 1 drops every query", runs, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if w := img.Bounds().Dx(); w != 1400 {
		t.Errorf("width %d, want 1400", w)
	}
	if h := img.Bounds().Dy(); h < 600 {
		t.Errorf("height %d, want two panels' worth", h)
	}
}
