package upstreamtier

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The metrics follow a scripted outage of tier 1 and its recovery. Tier
// names are unique to this test because the metrics are process-wide.
func TestMetrics(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier m1 %s
		tier m2 %s
		fall 1
		rise 2
		health_check 10ms
	}`, up...)
	changes := watch(t, ut)
	site, isp := up[0].Addr(), up[1].Addr()
	metric := func(name string, v float64, want float64) {
		t.Helper()
		if v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	// Counters are process-wide and survive -count runs: compare increases.
	base := map[string]float64{
		"failures": testutil.ToFloat64(attemptFailures.WithLabelValues("", "m1", site, "rcode")),
		"requests": testutil.ToFloat64(requestsCount.WithLabelValues("", "m2", isp, "NOERROR")),
		"failover": testutil.ToFloat64(failoverCount.WithLabelValues("", "m1", "m2")),
		"failback": testutil.ToFloat64(failbackCount.WithLabelValues("", "m2", "m1")),
		"probes":   testutil.ToFloat64(probeCount.WithLabelValues("", "m1", site, probeDown, "ok")),
		"none":     testutil.ToFloat64(failoverCount.WithLabelValues("", "m2", "")) + testutil.ToFloat64(failoverCount.WithLabelValues("", "m1", "")),
	}

	metric("upstream_healthy{m1}", testutil.ToFloat64(upstreamHealthy.WithLabelValues("", "m1", site)), 1)
	metric("serving_tier{m1}", testutil.ToFloat64(servingTier.WithLabelValues("", "m1")), 1)

	up[0].SetMode(faultdns.Refused)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[1])
	expectChange(t, changes, up[0], false)

	metric("attempt_failures_total{m1,rcode}", testutil.ToFloat64(attemptFailures.WithLabelValues("", "m1", site, "rcode"))-base["failures"], 1)
	metric("requests_total{m2,NOERROR}", testutil.ToFloat64(requestsCount.WithLabelValues("", "m2", isp, "NOERROR"))-base["requests"], 1)
	metric("upstream_healthy{m1}", testutil.ToFloat64(upstreamHealthy.WithLabelValues("", "m1", site)), 0)
	metric("upstream_down_reason{m1,rcode}", testutil.ToFloat64(upstreamDownReason.WithLabelValues("", "m1", site, "rcode")), 1)
	metric("tier_available{m1}", testutil.ToFloat64(tierAvailable.WithLabelValues("", "m1")), 0)
	metric("serving_tier{m1}", testutil.ToFloat64(servingTier.WithLabelValues("", "m1")), 0)
	metric("serving_tier{m2}", testutil.ToFloat64(servingTier.WithLabelValues("", "m2")), 1)
	metric("failovers_total{m1->m2}", testutil.ToFloat64(failoverCount.WithLabelValues("", "m1", "m2"))-base["failover"], 1)
	if n := testutil.CollectAndCount(attemptDuration); n == 0 {
		t.Error("no attempt_duration_seconds series")
	}

	up[0].SetMode(faultdns.OK)
	expectChange(t, changes, up[0], true)
	metric("failbacks_total{m2->m1}", testutil.ToFloat64(failbackCount.WithLabelValues("", "m2", "m1"))-base["failback"], 1)
	metric("serving_tier{m1}", testutil.ToFloat64(servingTier.WithLabelValues("", "m1")), 1)
	metric("probes_total{m1,ok}", testutil.ToFloat64(probeCount.WithLabelValues("", "m1", site, probeDown, "ok"))-base["probes"], 2)
	metric("upstream_healthy{m1}", testutil.ToFloat64(upstreamHealthy.WithLabelValues("", "m1", site)), 1)

	// Everything down: SERVFAIL counted as all_down.
	up[0].SetMode(faultdns.Refused)
	up[1].SetMode(faultdns.Refused)
	serve(t, ut, newClientQuery("www2.example.org", dns.TypeA), false)
	expectChanges(t, changes, false, up...)
	// The two go down in either order: the last serving tier is m1 or m2.
	none := testutil.ToFloat64(failoverCount.WithLabelValues("", "m2", "")) + testutil.ToFloat64(failoverCount.WithLabelValues("", "m1", ""))
	metric("failovers_total{->none}", none-base["none"], 1)
	before := testutil.ToFloat64(servfailCount.WithLabelValues("", "all_down"))
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	metric("servfail_total{all_down} increase", testutil.ToFloat64(servfailCount.WithLabelValues("", "all_down"))-before, 1)
}

func TestHedgeMetric(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier h1 %s %s {
			policy sequential
		}
		hedge 5ms
		fall 100
	}`, up...)
	up[0].SetMode(faultdns.Slow)
	up[0].SetDelay(200 * time.Millisecond)
	before := testutil.ToFloat64(hedgeCount.WithLabelValues("", "h1"))
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[1])
	if n := testutil.ToFloat64(hedgeCount.WithLabelValues("", "h1")) - before; n != 1 {
		t.Errorf("hedges_total{h1} = %v, want 1", n)
	}
}

// serveWithMetadata runs a query with the metadata plugin's context and
// returns the plugin's metadata values.
func serveWithMetadata(t *testing.T, ut *UpstreamTier, q *dns.Msg) map[string]string {
	t.Helper()
	ctx := metadata.ContextWithMetadata(context.Background())
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	ut.ServeDNS(ctx, rec, q)
	values := map[string]string{}
	for _, label := range []string{"tier", "upstream", "attempts", "hedged"} {
		if f := metadata.ValueFunc(ctx, pluginName+"/"+label); f != nil {
			values[label] = f()
		}
	}
	return values
}

func TestMetadata(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		hedge off
	}`, up...)
	ut.metadata = true
	up[0].SetMode(faultdns.Refused)

	got := serveWithMetadata(t, ut, newClientQuery("www.example.org", dns.TypeA))
	want := map[string]string{"tier": "isp", "upstream": up[1].Addr(), "attempts": "2", "hedged": "0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metadata %v, want %v", got, want)
	}

	up[1].SetMode(faultdns.Refused)
	got = serveWithMetadata(t, ut, newClientQuery("www.example.org", dns.TypeA))
	if got["tier"] != "-" || got["upstream"] != "-" {
		t.Errorf("metadata of a SERVFAIL: %v, want tier and upstream -", got)
	}
}

// Ready latches once an upstream has answered a startup or down probe.
func TestReady(t *testing.T) {
	up := startUpstreams(t, 2)
	up[0].SetMode(faultdns.Closed)
	up[1].SetMode(faultdns.Closed)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		attempt_timeout 200ms
		health_check 10ms
	}`, up...)
	changes := watch(t, ut)
	if ut.Ready() {
		t.Fatal("ready before any upstream answered")
	}
	ut.startProbing()
	// Two failed startup probes each, the first one and its confirmation.
	down := map[string]bool{}
	for range 2 {
		c := <-changes
		down[c.addr] = !c.up
	}
	if !down[up[0].Addr()] || !down[up[1].Addr()] {
		t.Fatalf("want both upstreams down after failed startup probes, got %v", down)
	}
	if ut.Ready() {
		t.Fatal("ready although no upstream answered")
	}
	up[1].SetMode(faultdns.OK)
	expectChange(t, changes, up[1], true)
	if !ut.Ready() {
		t.Fatal("not ready although tier 2 answered")
	}
}

// leftovers returns the stacks of goroutines running this package's code.
func leftovers() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var found []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "upstreamtier.(*") && !strings.Contains(g, "testing.tRunner") {
			found = append(found, g)
		}
	}
	return found
}

// openFiles returns the number of open file descriptors of the process.
func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(fds)
}

// After a shutdown, as the reload plugin does it, nothing of the old
// configuration survives: no goroutine, probe or socket; and a query in
// flight during it still gets its answer.
func TestShutdownLeavesNothing(t *testing.T) {
	up := startUpstreams(t, 3)
	files := openFiles(t)

	ut := newPlugin(t, `upstreamtier {
	tier site %s
	tier isp %s
	tier public %s
	fall 1
	health_check 10ms
	hedge 5ms
	attempt_timeout 300ms
}`, up...)
	changes := watch(t, ut)
	// Tier 1 down and probed; tier 2 slow so queries are hedged to tier 3.
	up[0].SetMode(faultdns.Blackhole)
	up[1].SetMode(faultdns.Slow)
	up[1].SetDelay(50 * time.Millisecond)
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), true)
	expectChange(t, changes, up[0], false)
	for range 5 {
		serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	}

	// A query waiting on tier 2 while the plugin shuts down.
	up[2].SetMode(faultdns.Blackhole)
	var wg sync.WaitGroup
	var inFlight *dns.Msg
	sent := up[1].Queries()
	wg.Go(func() {
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		ut.ServeDNS(context.Background(), rec, newClientQuery("inflight.example.org", dns.TypeA))
		inFlight = rec.Msg
	})
	waitQueries(t, up[1], sent+1)
	ut.OnShutdown()
	wg.Wait()
	if inFlight == nil || inFlight.Rcode != dns.RcodeSuccess || len(inFlight.Answer) != 1 {
		t.Errorf("query in flight during shutdown got %v", inFlight)
	}

	// Attempts abandoned to hedges end at their own deadline, within
	// attempt_timeout; wait for that rather than assert a time.
	deadline := time.Now().Add(time.Minute)
	for len(leftovers()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := leftovers(); len(l) > 0 {
		t.Fatalf("%d goroutines survive the shutdown:\n%s", len(l), strings.Join(l, "\n\n"))
	}
	if n := openFiles(t); n > files {
		t.Errorf("%d file descriptors open after shutdown, %d before", n, files)
	}
}
