package main

import (
	"maps"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestIsBrokenShare(t *testing.T) {
	for _, share := range []float64{0, 0.2, 0.5, 1} {
		const n = 100000
		broken := 0
		for i := range n {
			if isBroken(i, share) {
				broken++
			}
		}
		if got := float64(broken) / n; got < share-0.01 || got > share+0.01 {
			t.Errorf("share %v: %v of the queries broken", share, got)
		}
	}
}

func TestIsBrokenIsStable(t *testing.T) {
	first := make([]bool, 1000)
	for i := range first {
		first[i] = isBroken(i, 0.2)
	}
	for i, b := range first {
		if isBroken(i, 0.2) != b {
			t.Fatalf("query %d classified two ways", i)
		}
	}
}

func TestBrokenName(t *testing.T) {
	b := &bench{}
	for i := range 1000 {
		under := dns.IsSubDomain(brokenZone, b.brokenName(i))
		if under != isBroken(i, 0.2) {
			t.Fatalf("query %d: name %s, broken %v", i, b.brokenName(i), isBroken(i, 0.2))
		}
		if !dns.IsSubDomain("bench.example.", b.brokenName(i)) {
			t.Fatalf("query %d: name %s outside bench.example.", i, b.brokenName(i))
		}
	}
}

func TestParseSample(t *testing.T) {
	for _, tc := range []struct {
		line   string
		ok     bool
		name   string
		labels map[string]string
		value  float64
	}{
		{line: `go_goroutines 42`, ok: true, name: "go_goroutines", labels: map[string]string{}, value: 42},
		{line: `coredns_upstreamtier_upstream_healthy{server="dns://:53",tier="t1",upstream="127.0.0.1:1053"} 0`, ok: true,
			name: utHealthy, labels: map[string]string{"server": "dns://:53", "tier": "t1", "upstream": "127.0.0.1:1053"}},
		{line: `x{a="q\"uote",b="c,d"} 1.5e3 1700000000`, ok: true, name: "x", labels: map[string]string{"a": `q"uote`, "b": "c,d"}, value: 1500},
		{line: `# HELP go_goroutines Number of goroutines.`},
		{line: ``},
		{line: `x{a="unterminated} 1`},
		{line: `x notanumber`},
	} {
		m, ok := parseSample(tc.line)
		if ok != tc.ok {
			t.Errorf("%q: ok %v, want %v", tc.line, ok, tc.ok)
			continue
		}
		if ok && (m.name != tc.name || m.value != tc.value || !maps.Equal(m.labels, tc.labels)) {
			t.Errorf("%q: got %+v", tc.line, m)
		}
	}
}

func TestCounterGrowth(t *testing.T) {
	text := func(s string) []metric { return parseMetrics(strings.NewReader(s)) }
	before := text(`coredns_upstreamtier_failovers_total{from="t1",to="t2"} 1
coredns_proxy_healthcheck_failures_total{proxy_name="forward",to="127.0.0.1:1"} 2
`)
	after := text(`coredns_upstreamtier_failovers_total{from="t1",to="t2"} 4
coredns_upstreamtier_failovers_total{from="t2",to=""} 1
coredns_proxy_healthcheck_failures_total{proxy_name="forward",to="127.0.0.1:1"} 2
go_goroutines 9
`)
	w := &healthWatch{names: map[string]string{"127.0.0.1:1": "t1"}}
	got := counterGrowth(before, after, w.key)
	want := map[string]float64{"failovers t1→t2": 3, "failovers t2→none": 1}
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestRcodeCell(t *testing.T) {
	got := rcodeCell(map[int]int{dns.RcodeRefused: 3, noAnswer: 1, dns.RcodeServerFailure: 3, unreadable: 1, 23: 1})
	if want := "SERVFAIL 3, REFUSED 3, unreadable 1, none 1, BADCOOKIE 1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := rcodeCell(nil); got != "–" {
		t.Errorf("empty: got %q", got)
	}
}

// Only probes of kind down say an upstream was marked down.
func TestHealthWatchKeyProbeKinds(t *testing.T) {
	w := &healthWatch{names: map[string]string{"127.0.0.1:1": "t1"}}
	for kind, want := range map[string]string{"down": "probes of down t1", "": "probes of down t1", "standby": "", "suspect": "", "liveness": ""} {
		m := metric{name: utProbes, labels: map[string]string{"upstream": "127.0.0.1:1", "kind": kind}}
		if got := w.key(m); got != want {
			t.Errorf("kind %q: key %q, want %q", kind, got, want)
		}
	}
}
