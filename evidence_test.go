package upstreamtier

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// What counts as evidence that an upstream is down, and what does not:
// real resolvers fail per name and clients choose the names and types.

// One broken domain at tier 1 never takes it down, however many of its
// names fail in a row: the suspicion probe asks a name it answered before,
// and that is answered.
// Broken names are answered by tier 2, good ones by tier 1.
func TestBrokenDomainKeepsUpstreamUp(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, healthStanza, up...)
	changes := watch(t, ut)
	up[0].SetRules(faultdns.Rule{Zone: "broken.test", Mode: faultdns.ServFail})

	for i := range 20 {
		q := newClientQuery(fmt.Sprintf("n%d.broken.test", i), dns.TypeA)
		m, _ := serve(t, ut, q, false)
		expectFrom(t, q, m, up[1])
		if i%4 == 0 {
			q := newClientQuery(fmt.Sprintf("good%d.example.org", i), dns.TypeA)
			m, _ := serve(t, ut, q, i%8 == 0)
			expectFrom(t, q, m, up[0])
		}
	}
	// Suspicion probes went out and were answered; wait for the last one.
	ut.life.probes.Wait()
	expectNoChange(t, changes)
	if testutil.ToFloat64(probeCount.WithLabelValues("", "site", up[0].Addr(), probeSuspect, "ok")) == 0 {
		t.Error("failover rcodes piled up and no probe checked the upstream")
	}
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[0])
}

// Transfers and types that cannot be asked are answered by the plugin at
// once, over UDP and TCP, and never reach an upstream; the meta types that
// are forwarded never move health, even when every answer fails.
func TestClientChosenTypesNeverMoveHealth(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		fall 1
		health_check 10ms
		attempt_timeout 200ms
	}`, up...)
	changes := watch(t, ut)

	local := map[uint16]int{
		dns.TypeAXFR: dns.RcodeNotImplemented, dns.TypeIXFR: dns.RcodeNotImplemented, dns.TypeTKEY: dns.RcodeNotImplemented,
		dns.TypeNone: dns.RcodeFormatError, dns.TypeOPT: dns.RcodeFormatError, dns.TypeTSIG: dns.RcodeFormatError,
	}
	for qtype, rcode := range local {
		for _, tcp := range []bool{false, true} {
			q := newClientQuery("example.org", qtype)
			m, _ := serve(t, ut, q, tcp)
			if m == nil || m.Rcode != rcode || m.Id != q.Id {
				t.Fatalf("%s: want %s, got\n%v", dns.TypeToString[qtype], dns.RcodeToString[rcode], m)
			}
			if e := ede(m); e == nil || e.InfoCode != dns.ExtendedErrorCodeNotSupported {
				t.Errorf("%s: want EDE Not Supported, got %v", dns.TypeToString[qtype], e)
			}
		}
	}
	if n := up[0].Queries() + up[1].Queries(); n != 0 {
		t.Fatalf("%d queries of types answered locally reached an upstream", n)
	}

	// Forwarded meta types whose every answer fails: REFUSED, or silence.
	for _, mode := range []faultdns.Mode{faultdns.Refused, faultdns.Blackhole} {
		for _, s := range up {
			s.SetRules(faultdns.Rule{Qtypes: []uint16{dns.TypeANY, dns.TypeMAILA, dns.TypeMAILB}, Mode: mode})
		}
		for i, qtype := range []uint16{dns.TypeANY, dns.TypeMAILA, dns.TypeMAILB, dns.TypeANY} {
			serve(t, ut, newClientQuery(fmt.Sprintf("meta%d.example.org", i), qtype), false)
		}
	}
	ut.life.probes.Wait()
	expectNoChange(t, changes)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[0])
}

// An upstream that answers SERVFAIL to everything, the probe included,
// goes down after fall answers and one probe.
func TestAllServfailGoesDown(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, healthStanza, up...)
	changes := watch(t, ut)
	up[0].SetMode(faultdns.ServFail)
	name := names()
	for range 2 {
		q := newClientQuery(name(), dns.TypeA)
		m, _ := serve(t, ut, q, false)
		expectFrom(t, q, m, up[1])
	}
	expectChange(t, changes, up[0], false)
	if got := testutil.ToFloat64(upstreamDownReason.WithLabelValues("", "site", up[0].Addr(), "rcode")); got != 1 {
		t.Errorf("upstream_down_reason{rcode} = %v, want 1", got)
	}
}

// A dead standby tier is probed at startup and shown down before any
// query needs it; failover then skips it.
func TestDeadStandbyKnownBeforeFailover(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		tier public %s
		health_check 10ms
		attempt_timeout 200ms
		fall 2
	}`, up...)
	changes := watch(t, ut)
	up[1].SetMode(faultdns.Closed)
	ut.startProbing()
	expectChange(t, changes, up[1], false)
	if got := testutil.ToFloat64(tierAvailable.WithLabelValues("", "isp")); got != 0 {
		t.Errorf("tier_available{isp} = %v, want 0", got)
	}

	up[0].SetMode(faultdns.Refused)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[2])
	if n := up[1].QueriesFor("www.example.org"); n != 0 {
		t.Errorf("the dead standby tier got %d client queries", n)
	}
}

// With no tier available, one good probe brings an upstream back: every
// client is getting SERVFAIL meanwhile, so rise is not waited for.
func TestAllDownFailsBackOnOneProbe(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier ad1 %s
		tier ad2 %s
		fall 1
		rise 5
		health_check 10ms
	}`, up...)
	changes := watch(t, ut)
	for _, s := range up {
		s.SetMode(faultdns.Closed)
	}
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	expectChanges(t, changes, false, up...)

	before := testutil.ToFloat64(probeCount.WithLabelValues("", "ad2", up[1].Addr(), probeDown, "ok"))
	up[1].SetMode(faultdns.OK)
	expectChange(t, changes, up[1], true)
	if n := testutil.ToFloat64(probeCount.WithLabelValues("", "ad2", up[1].Addr(), probeDown, "ok")) - before; n != 1 {
		t.Errorf("%v good probes before coming back, want 1", n)
	}
}

// A name that tier 1 just failed goes straight to tier 2 while the memory
// holds it, costing tier 1 nothing; with the memory off, tier 1 is asked
// every time.
func TestFailoverMemory(t *testing.T) {
	for _, tc := range []struct {
		memory string
		asked  int64 // queries tier 1 gets for the name
	}{{"failover_memory 1h", 1}, {"failover_memory off", 3}} {
		t.Run(tc.memory, func(t *testing.T) {
			up := startUpstreams(t, 2)
			ut := newPlugin(t, "upstreamtier {\n tier mem1 %s\n tier mem2 %s\n fall 100\n "+tc.memory+"\n}", up...)
			up[0].SetRules(faultdns.Rule{Zone: "bogus.test", Mode: faultdns.ServFail})
			skips := testutil.ToFloat64(memorySkips.WithLabelValues("", "mem1"))
			for _, name := range []string{"www.bogus.test", "WWW.Bogus.TEST", "www.bogus.test"} {
				q := newClientQuery(name, dns.TypeA)
				m, _ := serve(t, ut, q, false)
				expectFrom(t, q, m, up[1])
			}
			if n := up[0].QueriesFor("www.bogus.test"); n != tc.asked {
				t.Errorf("tier 1 was asked %d times, want %d", n, tc.asked)
			}
			if n := testutil.ToFloat64(memorySkips.WithLabelValues("", "mem1")) - skips; n != float64(3-tc.asked) {
				t.Errorf("failover_memory_skips_total increased by %v, want %d", n, 3-tc.asked)
			}
			// Another type of the same name is not remembered.
			q := newClientQuery("www.bogus.test", dns.TypeAAAA)
			serve(t, ut, q, false)
			if n := up[0].QueriesFor("www.bogus.test"); n != tc.asked+1 {
				t.Errorf("AAAA did not go to tier 1 first")
			}
		})
	}
}

// The memory skips a tier only when a later one may still answer: when
// every tier failed the name, tier 1 is asked again.
func TestFailoverMemoryNeverStrandsAName(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier st1 %s
		tier st2 %s
		fall 100
		failover_memory 1h
	}`, up...)
	for _, s := range up {
		s.SetRules(faultdns.Rule{Zone: "bogus.test", Mode: faultdns.ServFail})
	}
	for range 2 {
		m, _ := serve(t, ut, newClientQuery("www.bogus.test", dns.TypeA), false)
		if m.Rcode != dns.RcodeServerFailure {
			t.Fatalf("want SERVFAIL, got %s", dns.RcodeToString[m.Rcode])
		}
	}
	if n := up[0].QueriesFor("www.bogus.test"); n != 2 {
		t.Errorf("tier 1 was asked %d times, want 2", n)
	}
}

// Entries expire after their TTL, hash collisions do not mix names, and
// the memory holds one bit per tier.
func TestFailoverMemoryEntries(t *testing.T) {
	fm := newFailoverMemory(time.Hour, 100)
	fm.remember("a.example.", dns.TypeA, 0)
	fm.remember("A.EXAMPLE.", dns.TypeA, 2)
	if got := fm.failed("a.Example.", dns.TypeA); got != 0b101 {
		t.Errorf("failed tiers %b, want 101", got)
	}
	if fm.remember("a.example.", dns.TypeA, maxRememberedTiers) {
		t.Error("a tier beyond the bits was remembered")
	}
	// A colliding key with another name does not match.
	fm.names.Add(memoKey("b.example.", dns.TypeA), memo{name: "c.example.", qtype: dns.TypeA, tiers: 1, expires: time.Now().Add(time.Hour).UnixNano()})
	if fm.failed("b.example.", dns.TypeA) != 0 {
		t.Error("an entry for another name matched")
	}
	// An expired entry among live ones does not count.
	fm.names.Add(memoKey("old.example.", dns.TypeA), memo{name: "old.example.", qtype: dns.TypeA, tiers: 1, expires: time.Now().Add(-time.Second).UnixNano()})
	if fm.failed("old.example.", dns.TypeA) != 0 {
		t.Error("an expired entry counts while others are alive")
	}

	expired := newFailoverMemory(-time.Second, 100)
	expired.remember("a.example.", dns.TypeA, 0)
	if expired.failed("a.example.", dns.TypeA) != 0 {
		t.Error("an expired entry still counts")
	}
	var off *failoverMemory
	if off.failed("a.example.", dns.TypeA) != 0 || off.remember("a.example.", dns.TypeA, 0) {
		t.Error("a memory that is off remembers")
	}
}

// A query whose upstream goes silent moves on to the next tier once a
// liveness probe goes unanswered, long before its own attempt would time
// out: here the attempt timeout is the whole budget, so waiting it out
// would be a SERVFAIL. fall 100 keeps the upstream up throughout.
func TestSilentUpstreamLeftForNextTier(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		timeout 3s
		attempt_timeout 3s
		fall 100
	}`, up...)
	q := newClientQuery("primed.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[0])

	up[0].SetMode(faultdns.Blackhole)
	for i := range 3 {
		q := newClientQuery(fmt.Sprintf("silent%d.example.org", i), dns.TypeA)
		m, _ := serve(t, ut, q, i == 1)
		expectFrom(t, q, m, up[1])
	}
	if !ut.tiers[0].upstreams()[0].available() {
		t.Error("marked down before fall pieces of evidence")
	}
}

// A query does not wait out the attempt_timeout on an upstream that has
// never sent anything back: after firstContact it is taken for silent and
// the query moves on, while the liveness probe, which waits up to the
// attempt_timeout for the verdict that is evidence, is still in flight.
func TestFirstContactSilence(t *testing.T) {
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // reads, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	up := startUpstreams(t, 1)
	ut := newPlugin(t, "upstreamtier {\n tier site "+silent.LocalAddr().String()+"\n tier isp %s\n attempt_timeout 20s\n timeout 25s\n}", up...)

	q := newClientQuery("www.example.org", dns.TypeA)
	m, err := serve(t, ut, q, false)
	if err != nil {
		t.Fatal(err)
	}
	expectFrom(t, q, m, up[0])
	// Before, the query moved on when the probe or the attempt gave up,
	// both after the attempt_timeout: one of these was counted first.
	probes := probeCount.WithLabelValues("", "site", silent.LocalAddr().String(), probeLiveness, "fail")
	timeouts := attemptFailures.WithLabelValues("", "site", silent.LocalAddr().String(), "timeout")
	if p, a := testutil.ToFloat64(probes), testutil.ToFloat64(timeouts); p != 0 || a != 0 {
		t.Fatalf("%v failed liveness probes, %v timed-out attempts when the answer came: the query waited for them", p, a)
	}
	if !ut.tiers[0].upstreams()[0].available() {
		t.Fatal("tier 1 marked down without evidence")
	}
}
