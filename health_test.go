package upstreamtier

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

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

// With every upstream down, all_down servfail answers at once without
// sending anything upstream.
func TestAllDownServfail(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		fall 1
		health_check 1m
	}`, up...)
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
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		fall 1
		health_check 1m
		all_down try
	}`, up...)
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

// An upstream that flaps, going down again soon after coming back, is
// probed further backed off each time: the hysteresis that keeps it from
// taking traffic back at every blip.
func TestFlappingBacksOff(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		fall 1
		rise 1
		health_check 10ms
	}`, up...)
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
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		fall 1
		health_check 10ms
	}`, up...)
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

// A timeout does not count against an upstream that answered another query
// since the attempt started: it is alive, only busy or dropping a few.
func TestTimeoutOfLiveUpstreamNotCounted(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		fall 2
		hedge off
		attempt_timeout 1s
	}`, up...)
	changes := watch(t, ut)

	// This one name is dropped, and so are its retries; every other
	// query is answered.
	up[0].SetRules(faultdns.Rule{Zone: "dropped.example.org", Mode: faultdns.Blackhole})
	var wg sync.WaitGroup
	wg.Go(func() {
		q := newClientQuery("dropped.example.org", dns.TypeA)
		m, _ := serve(t, ut, q, false)
		expectFrom(t, q, m, up[1]) // after tier 1's timeout
	})
	waitQueries(t, up[0], 1)
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
