package upstreamtier

import (
	"fmt"
	"strings"
	"testing"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// What a probe proves: any well-formed answer shows the upstream is
// there. Not every upstream answers the probe name: an authoritative
// server or a stub REFUSES `. NS`, a template answering one type gets
// SERVFAIL or NOTIMP for NS.

// probeRcodes are what upstreams that are not recursive resolvers answer
// the probe name.
var probeRcodes = []faultdns.Mode{faultdns.Refused, faultdns.ServFail, faultdns.NXDomain, faultdns.NotImp}

// failProbeName makes s answer the probe name (`. NS`) in mode m, and
// every other query normally.
func failProbeName(t *testing.T, s *faultdns.Server, m faultdns.Mode) {
	t.Helper()
	if err := s.SetRules(faultdns.Rule{Zone: ".", Qtypes: []uint16{dns.TypeNS}, Mode: m}); err != nil {
		t.Fatal(err)
	}
}

// probesOf returns how many probes of kind went to s with the result.
func probesOf(tier string, s *faultdns.Server, kind, result string) float64 {
	return testutil.ToFloat64(probeCount.WithLabelValues("", tier, s.Addr(), kind, result))
}

// A startup probe answered with any rcode leaves the upstream up, alone
// or in any position, and it answers the client names.
func TestProbeAnyRcodeLeavesUp(t *testing.T) {
	for _, m := range probeRcodes {
		t.Run(m.String(), func(t *testing.T) {
			up := startUpstreams(t, 2)
			ut := newPlugin(t, healthStanza, up...)
			changes := watch(t, ut)
			for _, s := range up {
				failProbeName(t, s, m)
			}
			for _, u := range upstreamsOf(ut) {
				if !u.startupProbe() {
					t.Fatalf("the startup probe of %s failed", u.addr)
				}
			}
			expectNoChange(t, changes)
			for _, tcp := range []bool{false, true} {
				q := newClientQuery("www.example.org", dns.TypeA)
				m, _ := serve(t, ut, q, tcp)
				expectFrom(t, q, m, up[0])
			}
			if n := up[1].QueriesFor("www.example.org"); n != 0 {
				t.Errorf("tier 2 got %d client queries while tier 1 answers", n)
			}
		})
	}
}

// A down upstream whose probes get a failover rcode for the probe name
// comes back: the probe shows it is there again.
func TestDownProbeAnyRcodeBringsBack(t *testing.T) {
	for _, m := range probeRcodes {
		t.Run(m.String(), func(t *testing.T) {
			up := startUpstreams(t, 2)
			ut := newPlugin(t, healthStanza, up...)
			changes := watch(t, ut)
			up[0].SetMode(faultdns.Closed)
			name := names()
			for range 2 {
				q := newClientQuery(name(), dns.TypeA)
				m, _ := serve(t, ut, q, false)
				expectFrom(t, q, m, up[1])
			}
			expectChange(t, changes, up[0], false)
			up[0].SetMode(faultdns.OK)
			failProbeName(t, up[0], m)
			expectChange(t, changes, up[0], true)
			q := newClientQuery(name(), dns.TypeA)
			m, _ := serve(t, ut, q, false)
			expectFrom(t, q, m, up[0])
		})
	}
}

// With health_check domain, the operator says every upstream serves the
// name: then its rcode counts, as before.
func TestProbeDomainRcodeCounts(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		health_check 20ms domain probe.example
	}`, up...)
	changes := watch(t, ut)
	up[0].SetRules(faultdns.Rule{Zone: "probe.example", Mode: faultdns.Refused})
	ut.startProbing()
	expectChange(t, changes, up[0], false)
	up[0].SetRules()
	expectChange(t, changes, up[0], true)
}

// An upstream that fails every client name (an ACL refusing us, or a
// SERVFAIL for everything) is there and useless: no client sees its
// rcode while a lower tier answers, it is down after fall client queries
// and gets no client query after, only probes that ask client names,
// until it answers again. It goes down whether or not it answers the
// probe name well.
func TestFailsEveryNameGoesDown(t *testing.T) {
	for _, m := range []faultdns.Mode{faultdns.Refused, faultdns.RefusedBare, faultdns.ServFail} {
		for _, probeName := range []string{"answered", "failed"} {
			t.Run(m.String()+"/probe name "+probeName, func(t *testing.T) {
				up := startUpstreams(t, 2)
				ut := newPlugin(t, healthStanza, up...)
				changes := watch(t, ut)
				if probeName == "failed" {
					up[0].SetMode(m)
				}
				upstreamsOf(ut)[0].startupProbe()
				up[0].SetMode(m)
				name := names()
				for range 2 { // fall
					q := newClientQuery(name(), dns.TypeA)
					m, _ := serve(t, ut, q, false)
					expectFrom(t, q, m, up[1])
				}
				expectChange(t, changes, up[0], false)

				probes := up[0].Queries()
				downProbes := probesOf("site", up[0], probeDown, "fail") + probesOf("site", up[0], probeDown, "ok")
				for range 20 {
					q := newClientQuery(name(), dns.TypeA)
					m, _ := serve(t, ut, q, true)
					expectFrom(t, q, m, up[1])
				}
				// What reached tier 1 since are probes, and one more may be
				// on its way, received and not yet counted as a probe.
				if got := probesOf("site", up[0], probeDown, "fail") + probesOf("site", up[0], probeDown, "ok") - downProbes; float64(up[0].Queries()-probes) > got+1 {
					t.Errorf("tier 1 got %d queries after it went down, %v of them probes", up[0].Queries()-probes, got)
				}
				up[0].SetMode(faultdns.OK)
				expectChange(t, changes, up[0], true)
				q := newClientQuery(name(), dns.TypeA)
				m, _ := serve(t, ut, q, false)
				expectFrom(t, q, m, up[0])
			})
		}
	}
}

// An upstream that fails every name, alone, gives clients a fast error:
// after fall queries it is down, every client gets SERVFAIL with EDE 22 at
// once, and it is back when it answers a client's name again.
func TestFailsEveryNameAlone(t *testing.T) {
	for _, mode := range []faultdns.Mode{faultdns.Refused, faultdns.RefusedBare} {
		t.Run(mode.String(), func(t *testing.T) {
			up := startUpstreams(t, 1)
			ut := newPlugin(t, `upstreamtier {
		tier only %s
		health_check 20ms
	}`, up...)
			changes := watch(t, ut)
			up[0].SetMode(mode)
			upstreamsOf(ut)[0].startupProbe()
			name := names()
			for range 2 {
				serve(t, ut, newClientQuery(name(), dns.TypeA), false)
			}
			expectChange(t, changes, up[0], false)
			m, _ := serve(t, ut, newClientQuery(name(), dns.TypeA), false)
			if e := ede(m); m.Rcode != dns.RcodeServerFailure || e == nil || e.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
				t.Fatalf("want SERVFAIL with EDE 22, got\n%s", m)
			}
			up[0].SetMode(faultdns.OK)
			expectChange(t, changes, up[0], true)
		})
	}
}

// An authoritative server that REFUSES names outside its zone, and the
// probe name, alone: the first client names are outside its zone, so it
// goes down; a client name of its zone, passed over meanwhile, is what its
// down probe asks, and brings it back.
func TestStubDownComesBackOnItsNames(t *testing.T) {
	up := startUpstreams(t, 1)
	ut := newPlugin(t, `upstreamtier {
		tier origin %s
		health_check 20ms
	}`, up...)
	changes := watch(t, ut)
	up[0].SetRules(faultdns.Rule{Zone: "origin.test", Mode: faultdns.OK}, faultdns.Rule{Mode: faultdns.Refused})
	upstreamsOf(ut)[0].startupProbe()
	for range 2 {
		serve(t, ut, newClientQuery(fmt.Sprintf("outside%d.example.org", 0), dns.TypeA), false)
	}
	expectChange(t, changes, up[0], false)
	serve(t, ut, newClientQuery("www.origin.test", dns.TypeA), false)
	expectChange(t, changes, up[0], true)
	q := newClientQuery("www.origin.test", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[0])
	// Names outside its zone now fail over one by one; the suspicion
	// probe asks the zone's name again, which is answered.
	for i := range 10 {
		serve(t, ut, newClientQuery(fmt.Sprintf("outside%d.example.org", i), dns.TypeA), false)
	}
	ut.life.probes.Wait()
	expectNoChange(t, changes)
}

// The startup log names an upstream that fails the probe name, once, and
// the option that has probes check answers.
func TestStartupLogNamesProbeNameFailure(t *testing.T) {
	logs := watchLog(t)
	up := startUpstreams(t, 1)
	failProbeName(t, up[0], faultdns.Refused)
	ut := newPlugin(t, `upstreamtier {
		tier origin %s
	}`, up...)
	ut.startProbing()
	line := logs.wait(t, "fails the probe name")
	if !strings.Contains(line, up[0].Addr()) || !strings.Contains(line, "health_check INTERVAL domain NAME") {
		t.Errorf("the log line does not name the upstream and the option:\n%s", line)
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
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		health_check 10ms domain probe.example no_rec
		fall 1
	}`, up...)
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
