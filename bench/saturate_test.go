package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRoundOrderAlternates(t *testing.T) {
	turns := make([]int, 0, 4*3)
	for k := range 4 {
		turns = append(turns, roundOrder(k, 3)...)
	}
	if want := []int{0, 1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0}; !slices.Equal(turns, want) {
		t.Errorf("turns %v, want %v", turns, want)
	}
}

func TestSatRound(t *testing.T) {
	r := satRound{sent: 1100, answered: 1000, elapsed: 2 * time.Second, cpu: 50 * time.Millisecond}
	if r.qps() != 500 || r.cpuPerQuery() != 50*time.Microsecond {
		t.Errorf("qps %v, CPU per query %v; want 500, 50µs", r.qps(), r.cpuPerQuery())
	}
	if n := lossNote("x", []satRound{r}); !strings.Contains(n, "9.09 %") {
		t.Errorf("loss note %q, want 9.09 %% lost", n)
	}
	if n := lossNote("x", []satRound{{sent: 10, answered: 10}}); n != "" {
		t.Errorf("loss note %q for no loss", n)
	}
}

func TestSpreadAndRatios(t *testing.T) {
	ds := []time.Duration{70 * time.Microsecond, 62 * time.Microsecond, 66 * time.Microsecond, 64 * time.Microsecond}
	// The upper middle of an even count.
	if got := spread(ds, µs); got != "66.0 (62.0–70.0)" {
		t.Errorf("spread %q", got)
	}
	if got := spread([]float64(nil), twoDecimals); got != "–" {
		t.Errorf("spread of nothing %q", got)
	}
	half := []time.Duration{35 * time.Microsecond, 31 * time.Microsecond}
	if got := ratios(half, ds); !slices.Equal(got, []float64{0.5, 0.5}) {
		t.Errorf("ratios %v, want [0.5 0.5] (as many as the shorter)", got)
	}
}

func TestOverheads(t *testing.T) {
	round := func(cpu time.Duration) satRound { return satRound{answered: 1000, elapsed: time.Second, cpu: cpu} }
	floor := &tputConfig{sat: []satRound{round(30 * time.Millisecond), round(40 * time.Millisecond)}}
	c := &tputConfig{f: forwarder{coredns: true}, sat: []satRound{round(60 * time.Millisecond), round(65 * time.Millisecond)}}
	if got := c.overheads(floor); !slices.Equal(got, []time.Duration{30 * time.Microsecond, 25 * time.Microsecond}) {
		t.Errorf("overheads %v, want round by round [30µs 25µs]", got)
	}
	if got := (&tputConfig{sat: c.sat}).overheads(floor); got != nil {
		t.Errorf("a forwarder not built on coredns has overheads %v", got)
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
BenchmarkServeDNS/upstreamtier-2         	   42010	     26370 ns/op	    2008 B/op	      20 allocs/op
BenchmarkServeDNS/upstreamtier-2         	   45716	     25881 ns/op	    2008 B/op	      20 allocs/op
BenchmarkServeDNS/upstreamtier-2         	   45716	     27000 ns/op	    2010 B/op	      21 allocs/op
BenchmarkServeDNS/forward-2              	   45696	     26353 ns/op	    2032 B/op	      22 allocs/op
BenchmarkServeDNSConfigSize/10tiers-100upstreams 	   100	     1.5 ns/op	    2169 B/op	      22 allocs/op
PASS
`
	got := parseGoBench(out)
	want := map[string]goBenchResult{
		"ServeDNS/upstreamtier":                   {ns: 26370, bytes: 2008, allocs: 20},
		"ServeDNS/forward":                        {ns: 26353, bytes: 2032, allocs: 22},
		"ServeDNSConfigSize/10tiers-100upstreams": {ns: 1.5, bytes: 2169, allocs: 22},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %+v, want %+v", k, got[k], w)
		}
	}
}

func TestParseDnsperf(t *testing.T) {
	out := `Statistics:

  Queries sent:         100000
  Queries completed:    99990 (99.99%)
  Queries lost:         10 (0.01%)

  Response codes:       NOERROR 99980 (99.99%), SERVFAIL 10 (0.01%)
  Average packet size:  request 37, response 53
  Run time (s):         5.000921
  Queries per second:   19994.316

  Average Latency (s):  0.004923 (min 0.000063, max 0.026001)
`
	res, err := parseDnsperf(out)
	if err != nil {
		t.Fatal(err)
	}
	if res.values["Queries sent"] != 100000 || res.values["Run time (s)"] != 5.000921 || res.values["Queries per second"] != 19994.316 {
		t.Errorf("values %v", res.values)
	}
	if res.rcodes["NOERROR"] != 99980 || res.rcodes["SERVFAIL"] != 10 {
		t.Errorf("rcodes %v", res.rcodes)
	}
	if _, err := parseDnsperf("dnsperf: invalid option"); err == nil {
		t.Error("no error for output without statistics")
	}
}

func TestTierStanza(t *testing.T) {
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4"}
	want := "upstreamtier {\n        tier t1 127.0.0.1:1 127.0.0.1:2\n        tier t2 127.0.0.1:3 127.0.0.1:4\n    }"
	if got := tierStanza(addrs, 2, 2); got != want {
		t.Errorf("stanza\n%s\nwant\n%s", got, want)
	}
}
