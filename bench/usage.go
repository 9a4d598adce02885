package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// usage is one reading of a forwarder's memory and goroutines.
type usage struct {
	at         time.Duration // since the sampler started
	rss        int64         // resident set in bytes; 0 if unread
	goroutines int           // -1 if unread or the forwarder is not written in Go
}

// drain is the wait after a load before the end reading, past every forwarder's
// query deadline, so the queries still in flight have finished and what remains is kept.
const drain = 6 * time.Second

// metricsClient reads /metrics; a reading slower than a second is dropped, not waited for.
var metricsClient = &http.Client{Timeout: time.Second}

// usageNow reads p's VmRSS from /proc/PID/status and go_goroutines from its metrics.
func (p *process) usageNow() usage {
	u := usage{goroutines: -1}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				var kb int64
				fmt.Sscan(v, &kb) // "  12345 kB"
				u.rss = kb << 10
			}
		}
	}
	if p.metrics != "" {
		if n, err := goroutines(p.metrics); err == nil {
			u.goroutines = n
		}
	}
	return u
}

// goroutines returns the go_goroutines gauge from the Prometheus text at url.
func goroutines(url string) (int, error) {
	resp, err := metricsClient.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			io.Copy(io.Discard, resp.Body) // lets the connection be reused
			return int(f), err
		}
	}
	return 0, fmt.Errorf("no go_goroutines in %s", url)
}

// sampler reads a forwarder's usage once a second, from its start until stopped.
type sampler struct {
	p       *process
	start   time.Time
	stopc   chan struct{}
	done    sync.WaitGroup
	samples []usage // written by the sampling goroutine until it is done
}

// sample takes a first reading at once, then one every second in the background.
func sample(p *process) *sampler {
	s := &sampler{p: p, start: time.Now(), stopc: make(chan struct{})}
	s.read()
	s.done.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-s.stopc:
				return
			case <-tick.C:
				s.read()
			}
		}
	})
	return s
}

// read appends one reading, timed from before it was taken.
func (s *sampler) read() {
	at := time.Since(s.start)
	u := s.p.usageNow()
	u.at = at
	s.samples = append(s.samples, u)
}

// stop ends the sampling with one last reading and returns them all, in time order.
func (s *sampler) stop() []usage {
	close(s.stopc)
	s.done.Wait()
	s.read()
	return s.samples
}

// usageSummary is a forwarder's usage at the start and end of a run and its peak.
type usageSummary struct {
	g0, g1, gMax int   // goroutines; -1 if never read
	r0, r1, rMax int64 // RSS in bytes
}

// summarise takes as start the first reading at or after from, as end the last at or before to, and the peaks between.
func summarise(us []usage, from, to time.Duration) usageSummary {
	s := usageSummary{g0: -1, g1: -1, gMax: -1}
	for _, u := range us {
		if u.at < from || u.at > to {
			continue
		}
		if s.r0 == 0 {
			s.r0 = u.rss
		}
		if s.g0 < 0 {
			s.g0 = u.goroutines
		}
		if u.rss > 0 {
			s.r1 = u.rss
		}
		if u.goroutines >= 0 {
			s.g1 = u.goroutines
		}
		s.gMax, s.rMax = max(s.gMax, u.goroutines), max(s.rMax, u.rss)
	}
	return s
}

// rssFlat is the memory half of both verdicts: later ≤ start × 1.25 + 5 MiB.
func rssFlat(start, later int64) bool { return later <= start+start/4+5<<20 }

// goroutineCell renders three goroutine counts a / b / c, or a dash for a forwarder that reports none.
func goroutineCell(a, b, c int) string {
	if a < 0 {
		return "–"
	}
	return fmt.Sprintf("%d / %d / %d", a, b, c)
}

// rssCell renders three RSS readings a / b / c in MiB.
func rssCell(a, b, c int64) string { return mib(a) + " / " + mib(b) + " / " + mib(c) }

// mib formats bytes in MiB with one decimal.
func mib(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
