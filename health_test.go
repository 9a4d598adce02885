package upstreamtier

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// change is one health transition of an upstream.
type change struct {
	addr string
	up   bool
}

// healthLine is the log line of a health change, as upstreamChanged
// writes it: the upstream's address (with its scheme for encrypted ones)
// and whether it is down or up.
var healthLine = regexp.MustCompile(`upstream (\S+) of tier \S+ is (down|up again)`)

// watch returns the health changes of ut's upstreams, read from the log
// lines the plugin writes for them, until the test ends.
func watch(t testing.TB, ut *UpstreamTier) <-chan change {
	lines := listenLog(t)
	ch := make(chan change, 64)
	go func() {
		for line := range lines {
			m := healthLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			_, addr, found := strings.Cut(m[1], "://")
			if !found {
				addr = m[1]
			}
			if ownsAddr(ut, addr) {
				ch <- change{addr, m[2] == "up again"}
			}
		}
	}()
	return ch
}

// ownsAddr reports whether addr is an upstream of ut.
func ownsAddr(ut *UpstreamTier, addr string) bool {
	for _, t := range ut.tiers {
		for _, u := range t.upstreams() {
			if u.addr == addr {
				return true
			}
		}
	}
	return false
}

// expectChanges waits for the next health changes, one per server, in any
// order: attempts and probes report on their own goroutines.
func expectChanges(t *testing.T, ch <-chan change, up bool, servers ...*faultdns.Server) {
	t.Helper()
	want := map[string]bool{}
	for _, s := range servers {
		want[s.Addr()] = true
	}
	for len(want) > 0 {
		select {
		case c := <-ch:
			if !want[c.addr] || c.up != up {
				t.Fatalf("health change %+v, want one of %v up=%t", c, want, up)
			}
			delete(want, c.addr)
		case <-time.After(time.Minute): // a safety net, not a timing assertion
			t.Fatalf("no health change for %v up=%t", want, up)
		}
	}
}

// names returns a fresh query name each call: the failover memory would
// send a name that just failed straight to the next tier.
func names() func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("www%d.example.org", n)
	}
}

// expectChange waits for the next health change and checks it.
func expectChange(t *testing.T, ch <-chan change, s *faultdns.Server, up bool) {
	t.Helper()
	select {
	case c := <-ch:
		if c.addr != s.Addr() || c.up != up {
			t.Fatalf("health change %+v, want %s up=%t", c, s.Addr(), up)
		}
	case <-time.After(time.Minute): // a safety net, not a timing assertion
		t.Fatalf("no health change for %s up=%t", s.Addr(), up)
	}
}

const healthStanza = `upstreamtier {
	tier site %s
	tier isp %s
	attempt_timeout 200ms
	health_check 20ms
	fall 2
	rise 2
}`

// fall failed attempts in a row mark an upstream down; from then on it
// sees no client query, only probes, and rise good probes bring it back:
// the queries fail back at once.
func TestFallAndRise(t *testing.T) {
	for _, fault := range []faultdns.Mode{faultdns.Blackhole, faultdns.Closed, faultdns.ServFail, faultdns.Refused, faultdns.WrongQuestion, faultdns.Garbage} {
		t.Run(fault.String(), func(t *testing.T) {
			up := startUpstreams(t, 2)
			ut := newPlugin(t, healthStanza, up...)
			changes := watch(t, ut)
			up[0].SetMode(fault)
			name := names()

			for range 2 {
				q := newClientQuery(name(), dns.TypeA)
				m, _ := serve(t, ut, q, false)
				expectFrom(t, q, m, up[1])
			}
			expectChange(t, changes, up[0], false)

			// Down: queries go straight to tier 2. The probes to tier 1
			// ask for ".", so the count of queries for the client's
			// name shows no client query reached it.
			before := up[0].QueriesFor("www.example.org.")
			for range 5 {
				q := newClientQuery("www.example.org", dns.TypeA)
				m, _ := serve(t, ut, q, false)
				expectFrom(t, q, m, up[1])
			}
			if n := up[0].QueriesFor("www.example.org.") - before; n != 0 {
				t.Fatalf("a down upstream got %d client queries", n)
			}

			up[0].SetMode(faultdns.OK)
			expectChange(t, changes, up[0], true)
			q := newClientQuery("www.example.org", dns.TypeA)
			m, _ := serve(t, ut, q, false)
			expectFrom(t, q, m, up[0])
		})
	}
}

// One failure is not enough to mark an upstream down, and a success in
// between starts the count again. The attempt timeout is long: the
// blackholed query's own attempt on tier 1 must still be waiting when the
// query is answered by tier 2 (one failure, its liveness check), or it
// would time out as a second failure in a row; under load in CI the
// liveness check and tier 2 took longer than the 200 ms of healthStanza.
func TestFallCountsConsecutiveFailures(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, strings.Replace(healthStanza, "attempt_timeout 200ms", "attempt_timeout 3s", 1), up...)
	name := names()
	u := ut.tiers[0].upstreams()[0]
	counted := false // some blackholed query counted as a failure
	for range 3 {
		up[0].SetMode(faultdns.Blackhole)
		serve(t, ut, newClientQuery(name(), dns.TypeA), false)
		u.health.mu.Lock()
		counted = counted || u.health.fails > 0
		u.health.mu.Unlock()
		up[0].SetMode(faultdns.OK)
		q := newClientQuery(name(), dns.TypeA)
		m, _ := serve(t, ut, q, false)
		expectFrom(t, q, m, up[0])
	}
	if !counted {
		t.Fatal("no blackholed query counted as a failure: the test shows nothing")
	}
	if !u.available() {
		t.Fatal("upstream marked down without fall failures in a row")
	}
}

// Probes that get a failover rcode keep the upstream down.
func TestProbeFailoverRcodeKeepsDown(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, healthStanza, up...)
	changes := watch(t, ut)
	up[0].SetMode(faultdns.ServFail)
	name := names()
	for range 2 {
		serve(t, ut, newClientQuery(name(), dns.TypeA), false)
	}
	expectChange(t, changes, up[0], false)

	// Several probes come and fail while tier 1 answers SERVFAIL.
	waitQueries(t, up[0], up[0].Queries()+3)
	if ut.tiers[0].upstreams()[0].available() {
		t.Fatal("upstream brought back by probes answered SERVFAIL")
	}
	up[0].SetMode(faultdns.OK)
	expectChange(t, changes, up[0], true)
}

// Probes ask for the health_check domain, with or without RD.
func TestProbeDomain(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, "upstreamtier {\n tier site %s\n tier isp %s\n health_check 10ms domain probe.example no_rec\n fall 1\n}", up...)
	changes := watch(t, ut)
	up[0].SetMode(faultdns.Refused)
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	expectChange(t, changes, up[0], false)
	up[0].SetMode(faultdns.OK)
	expectChange(t, changes, up[0], true)
	if up[0].QueriesFor("probe.example.") < 1 {
		t.Fatal("no probe asked for the health_check domain")
	}
}

// With every upstream down, all_down servfail answers at once without
// sending anything upstream.
func TestAllDownServfail(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, "upstreamtier {\n tier site %s\n tier isp %s\n fall 1\n health_check 1m\n}", up...)
	changes := watch(t, ut)
	for _, s := range up {
		s.SetMode(faultdns.Refused)
	}
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	expectChanges(t, changes, false, up...)

	before := up[0].Queries() + up[1].Queries()
	m, err := serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	if e := ede(m); m.Rcode != dns.RcodeServerFailure || e == nil || e.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
		t.Fatalf("want SERVFAIL with EDE 22, got\n%s", m)
	}
	if err == nil {
		t.Error("want an error for the errors plugin")
	}
	if n := up[0].Queries() + up[1].Queries() - before; n != 0 {
		t.Errorf("%d queries sent upstream while everything was down", n)
	}
}

// all_down try gives the upstream that went down last one try.
func TestAllDownTry(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, "upstreamtier {\n tier site %s\n tier isp %s\n fall 1\n health_check 1m\n all_down try\n}", up...)
	changes := watch(t, ut)
	up[0].SetMode(faultdns.Refused)
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	expectChange(t, changes, up[0], false)
	up[1].SetMode(faultdns.Refused)
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	expectChange(t, changes, up[1], false)

	up[1].SetMode(faultdns.OK)
	before := up[0].Queries()
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[1])
	if up[0].Queries() != before {
		t.Error("all_down try sent the query to more than the last upstream up")
	}
}

// A slow upstream is hedged within its tier: the other upstream of the
// tier answers, the slow one's late answer is dropped without harm, and
// the lower tier sees nothing.
func TestHedge(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, "upstreamtier {\n tier site %s %s {\n policy sequential\n }\n tier isp %s\n hedge 10ms\n attempt_timeout 1s\n fall 100\n}", up...)
	up[0].SetMode(faultdns.Slow)
	up[0].SetDelay(300 * time.Millisecond)
	for _, tcp := range []bool{false, true} {
		q := newClientQuery("www.example.org", dns.TypeA)
		m, err := serve(t, ut, q, tcp)
		if err != nil {
			t.Fatal(err)
		}
		expectFrom(t, q, m, up[1])
	}
	if n := up[0].QueriesFor("www.example.org"); n != 2 {
		t.Errorf("the slow upstream got %d queries, want 2", n)
	}
	if n := up[2].Queries(); n != 0 {
		t.Errorf("the lower tier got %d queries", n)
	}
}

// A slow answer from an upstream that is alive is waited for, not hedged to
// a lower tier: its probe is answered at once, so the cache miss is worth
// the wait. A silent upstream, whose probe goes unanswered too, is left for
// the lower tier long before its attempt times out.
func TestSlowMissStaysInTier(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, "upstreamtier {\n tier site %s\n tier isp %s\n hedge 10ms\n attempt_timeout 2s\n fall 100\n}", up...)
	up[0].SetRules(faultdns.Rule{Zone: "miss.example.org", Mode: faultdns.Slow, Delay: 300 * time.Millisecond})
	q := newClientQuery("slow.miss.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[0])
	if n := up[1].Queries(); n != 0 {
		t.Fatalf("the lower tier got %d queries for a slow miss of a live upstream", n)
	}
	if up[0].QueriesFor(".") == 0 {
		t.Error("no liveness probe was sent while the miss was pending")
	}

	up[0].SetMode(faultdns.Blackhole)
	q = newClientQuery("www.example.org", dns.TypeA)
	m, _ = serve(t, ut, q, false)
	expectFrom(t, q, m, up[1])
}

// Without hedging, a slow upstream is waited for: with hedge off, and when
// the plugin-wide cap on hedges in flight leaves no slot free.
func TestNoHedge(t *testing.T) {
	tests := []struct {
		name      string
		stanza    string
		maxHedges int64
	}{
		{"hedge off", "upstreamtier {\n tier site %s\n tier isp %s\n hedge off\n attempt_timeout 1s\n}", defaultMaxHedges},
		{"no hedge slot", "upstreamtier {\n tier site %s\n tier isp %s\n hedge 10ms\n fall 100\n}", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := startUpstreams(t, 2)
			ut := newPlugin(t, tc.stanza, up...)
			ut.maxHedges = tc.maxHedges
			up[0].SetMode(faultdns.Slow)
			up[0].SetDelay(50 * time.Millisecond)
			q := newClientQuery("www.example.org", dns.TypeA)
			m, _ := serve(t, ut, q, false)
			expectFrom(t, q, m, up[0])
			if up[1].Queries() != 0 {
				t.Error("tier 2 got a hedge")
			}
		})
	}
}

// An upstream that flaps, going down again soon after coming back, is
// probed further backed off each time: the hysteresis that keeps it from
// taking traffic back at every blip.
func TestFlappingBacksOff(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, "upstreamtier {\n tier site %s\n tier isp %s\n fall 1\n rise 1\n health_check 10ms\n}", up...)
	changes := watch(t, ut)
	u := ut.tiers[0].upstreams()[0]
	name := names()
	for i := range maxFlaps + 2 {
		up[0].SetMode(faultdns.Refused)
		serve(t, ut, newClientQuery(name(), dns.TypeA), false)
		expectChange(t, changes, up[0], false)
		u.health.mu.Lock()
		flaps := u.health.flaps
		u.health.mu.Unlock()
		if want := min(i, maxFlaps); flaps != want {
			t.Fatalf("flap %d: backoff level %d, want %d", i, flaps, want)
		}
		up[0].SetMode(faultdns.OK)
		expectChange(t, changes, up[0], true)
	}
}

// Shutdown ends the probes of down upstreams.
func TestShutdownStopsProbes(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, "upstreamtier {\n tier site %s\n tier isp %s\n fall 1\n health_check 10ms\n}", up...)
	changes := watch(t, ut)
	up[0].SetMode(faultdns.Blackhole)
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	expectChange(t, changes, up[0], false)
	ut.OnShutdown() // returns once every probe loop has ended
	n := up[0].Queries()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := up[0].WaitQueries(ctx, n+1); err == nil {
		t.Fatal("a probe was sent after shutdown")
	}
}

// A hedge refused for want of a slot does not use up its candidate: when
// the attempt in flight fails, the query fails over to that candidate.
func TestHedgeCapKeepsCandidate(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, "upstreamtier {\n tier site %s\n tier isp %s\n tier public %s\n hedge 10ms\n attempt_timeout 200ms\n fall 100\n}", up...)
	ut.maxHedges = 0
	up[0].SetMode(faultdns.Blackhole)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[1])
}

// A timeout does not count against an upstream that answered another query
// since the attempt started: it is alive, only busy or dropping a few.
func TestTimeoutOfLiveUpstreamNotCounted(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, "upstreamtier {\n tier site %s\n tier isp %s\n fall 2\n hedge off\n attempt_timeout 1s\n}", up...)
	changes := watch(t, ut)

	up[0].SetMode(faultdns.Slow)
	up[0].SetDelay(time.Hour) // the queries that arrive now are never answered
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		q := newClientQuery("dropped.example.org", dns.TypeA)
		m, _ := serve(t, ut, q, false)
		expectFrom(t, q, m, up[1]) // after tier 1's timeout
	}()
	waitQueries(t, up[0], 1)
	up[0].SetMode(faultdns.OK)
	q := newClientQuery("answered.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[0])
	wg.Wait()

	select {
	case c := <-changes:
		t.Fatalf("upstream marked down by a timeout while it answered: %+v", c)
	default:
	}
	// Silence now: the liveness probe each query sends is not answered,
	// one piece of evidence per query; the attempts themselves are
	// abandoned when tier 2 answers, and are none.
	up[0].SetMode(faultdns.Blackhole)
	serve(t, ut, newClientQuery("dropped2.example.org", dns.TypeA), false)
	serve(t, ut, newClientQuery("dropped3.example.org", dns.TypeA), false)
	expectChange(t, changes, up[0], false)
}
