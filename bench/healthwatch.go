package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The metrics that show a coredns-based forwarder marked an upstream down
// (CoreDNS v1.15 names). forward marks a proxy down after max_fails failed
// health checks, 1 in the bench, so every failed check counts.
const (
	utHealthy       = "coredns_upstreamtier_upstream_healthy" // gauge, 0 while the upstream is down
	utFailovers     = "coredns_upstreamtier_failovers_total"  // the serving tier moved down
	utProbes        = "coredns_upstreamtier_probes_total"     // probes; those of kind down only go to down upstreams
	proxyHCFailures = "coredns_proxy_healthcheck_failures_total"
	forwardBroken   = "coredns_forward_healthcheck_broken_total" // every upstream was down
)

// healthReadEvery is how often the healthy gauge is read: a down spell shorter
// than this can slip between readings, but it also moves failovers or probes.
const healthReadEvery = 200 * time.Millisecond

// metric is one sample of the Prometheus text format.
type metric struct {
	name   string
	labels map[string]string
	value  float64
}

// parseMetrics reads the samples of the Prometheus text format, skipping comments and lines it cannot read.
func parseMetrics(r io.Reader) []metric {
	var ms []metric
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := parseSample(sc.Text()); ok {
			ms = append(ms, m)
		}
	}
	return ms
}

// parseSample parses one line: name{k="v",...} value, with an optional timestamp.
func parseSample(line string) (metric, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return metric{}, false
	}
	m := metric{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ ")
	if end <= 0 {
		return metric{}, false
	}
	m.name, line = line[:end], line[end:]
	if line[0] == '{' {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, ", ")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			k, rest, ok := strings.Cut(line, "=")
			if !ok {
				return metric{}, false
			}
			// Prometheus escapes \\, \" and \n in label values as Go does.
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return metric{}, false
			}
			v, _ := strconv.Unquote(q)
			m.labels[strings.TrimSpace(k)] = v
			line = rest[len(q):]
		}
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return metric{}, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return metric{}, false
	}
	m.value = v
	return m, true
}

// readMetrics fetches and parses the metrics at url.
func readMetrics(url string) ([]metric, error) {
	resp, err := metricsClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseMetrics(resp.Body), nil
}

// healthWatch reads a coredns-based forwarder's metrics while a run lasts, to tell whether it marked an upstream down.
type healthWatch struct {
	url   string
	names map[string]string // upstream address -> the name the tables use (t1, t2)
	stopc chan struct{}
	done  sync.WaitGroup

	first    []metric       // the counters before the run
	readings int            // healthy gauge readings taken
	downIn   map[string]int // upstream name -> readings in which it was down
	failed   int            // readings that failed, said in the verdict
}

// watchHealth starts watching p, whose upstreams are t1 and t2; it returns nil for a forwarder without metrics.
func watchHealth(p *process, t1, t2 string) *healthWatch {
	if p.metrics == "" {
		return nil
	}
	w := &healthWatch{url: p.metrics, names: map[string]string{t1: "t1", t2: "t2"}, stopc: make(chan struct{}), downIn: map[string]int{}}
	w.first = w.read()
	w.done.Go(func() {
		tick := time.NewTicker(healthReadEvery)
		defer tick.Stop()
		for {
			select {
			case <-w.stopc:
				return
			case <-tick.C:
				w.read()
			}
		}
	})
	return w
}

// read takes one reading, counts the upstreams whose healthy gauge is 0 in it, and returns it.
func (w *healthWatch) read() []metric {
	ms, err := readMetrics(w.url)
	if err != nil {
		w.failed++
		return nil
	}
	w.readings++
	for _, m := range ms {
		if m.name == utHealthy && m.value == 0 {
			w.downIn[w.upstream(m)]++
		}
	}
	return ms
}

// upstream names the upstream a sample is about, from its upstream (upstreamtier) or to (proxy) label.
func (w *healthWatch) upstream(m metric) string {
	addr := m.labels["upstream"]
	if addr == "" {
		addr = m.labels["to"]
	}
	if n, ok := w.names[addr]; ok {
		return n
	}
	return addr
}

// stop ends the watch with a last reading and returns the verdict for the table: "no", or "yes: " and the evidence.
func (w *healthWatch) stop() string {
	if w == nil {
		return "–"
	}
	close(w.stopc)
	w.done.Wait()
	last := w.read()
	var facts []string
	for _, n := range slices.Sorted(maps.Keys(w.downIn)) {
		facts = append(facts, fmt.Sprintf("%s down in %d of %d readings", n, w.downIn[n], w.readings))
	}
	grown := counterGrowth(w.first, last, w.key)
	for _, k := range slices.Sorted(maps.Keys(grown)) {
		facts = append(facts, fmt.Sprintf("%s %.0f", k, grown[k]))
	}
	verdict := "no"
	if len(facts) > 0 {
		verdict = "**yes**: " + strings.Join(facts, ", ")
	}
	if w.failed > 0 {
		verdict += fmt.Sprintf(" (%d metric readings failed)", w.failed)
	}
	return verdict
}

// key names a down-marking counter's sample for the verdict, "" for a metric that is not one.
func (w *healthWatch) key(m metric) string {
	switch m.name {
	case utFailovers:
		to := m.labels["to"]
		if to == "" {
			to = "none" // no tier was left
		}
		return "failovers " + m.labels["from"] + "→" + to
	case utProbes:
		// Probes of other kinds (standby, suspect, liveness) go to upstreams that are up.
		if kind := m.labels["kind"]; kind != "" && kind != "down" {
			return ""
		}
		return "probes of down " + w.upstream(m)
	case proxyHCFailures:
		return "health check failures " + w.upstream(m)
	case forwardBroken:
		return "all upstreams down"
	}
	return ""
}

// counterGrowth sums by key how much each counter grew from before to after; a counter first seen after grew from 0.
func counterGrowth(before, after []metric, key func(metric) string) map[string]float64 {
	id := func(m metric) string {
		return m.name + fmt.Sprint(m.labels) // fmt prints maps in key order
	}
	was := map[string]float64{}
	for _, m := range before {
		was[id(m)] = m.value
	}
	grown := map[string]float64{}
	for _, m := range after {
		k := key(m)
		if k == "" {
			continue
		}
		if d := m.value - was[id(m)]; d > 0 {
			grown[k] += d
		}
	}
	return grown
}
