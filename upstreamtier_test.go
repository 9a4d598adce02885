package upstreamtier

import (
	"errors"
	"testing"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

const threeTiers = `upstreamtier {
	tier site %s
	tier isp %s
	tier public %s
	attempt_timeout 250ms
	timeout 2s
}`

func TestHealthyFirstTierAnswers(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, threeTiers, up...)
	for _, tcp := range []bool{false, true} {
		q := newClientQuery("www.example.org", dns.TypeA)
		m, err := serve(t, ut, q, tcp)
		if err != nil {
			t.Fatal(err)
		}
		expectFrom(t, q, m, up[0])
	}
	if up[1].Queries()+up[2].Queries() != 0 {
		t.Errorf("lower tiers saw %d and %d queries while tier 1 was healthy", up[1].Queries(), up[2].Queries())
	}
}

// Every way tier 1 can fail sends the query to tier 2 and never lets a
// wrong answer through.
func TestFailoverToNextTier(t *testing.T) {
	faults := []faultdns.Mode{
		faultdns.Blackhole, faultdns.Closed, faultdns.ServFail, faultdns.Refused,
		faultdns.WrongID, faultdns.WrongQuestion, faultdns.Garbage,
	}
	for _, fault := range faults {
		for _, tcp := range []bool{false, true} {
			name := fault.String() + map[bool]string{false: "/udp", true: "/tcp"}[tcp]
			t.Run(name, func(t *testing.T) {
				up := startUpstreams(t, 3)
				ut := newPlugin(t, threeTiers, up...)
				if err := up[0].SetMode(fault); err != nil {
					t.Fatal(err)
				}
				q := newClientQuery("www.example.org", dns.TypeA)
				m, err := serve(t, ut, q, tcp)
				if err != nil {
					t.Fatal(err)
				}
				expectFrom(t, q, m, up[1])
				if fault != faultdns.Closed && up[0].Queries() == 0 {
					t.Error("tier 1 was never tried")
				}
				if up[2].Queries() != 0 {
					t.Errorf("tier 3 saw %d queries although tier 2 answered", up[2].Queries())
				}
			})
		}
	}
}

func TestFailoverAcrossThreeTiers(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, threeTiers, up...)
	up[0].SetMode(faultdns.Blackhole)
	up[1].SetMode(faultdns.ServFail)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, err := serve(t, ut, q, false)
	if err != nil {
		t.Fatal(err)
	}
	expectFrom(t, q, m, up[2])
}

// Inside a tier the other upstreams are tried before the next tier.
func TestFailoverInsideTier(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, `upstreamtier {
	tier site %s %s {
		policy sequential
	}
	tier isp %s
	attempt_timeout 250ms
}`, up...)
	up[0].SetMode(faultdns.Refused)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, err := serve(t, ut, q, false)
	if err != nil {
		t.Fatal(err)
	}
	expectFrom(t, q, m, up[1])
}

func TestAllDownServfailWithEDE(t *testing.T) {
	for _, fault := range []faultdns.Mode{faultdns.Closed, faultdns.ServFail, faultdns.Blackhole} {
		t.Run(fault.String(), func(t *testing.T) {
			up := startUpstreams(t, 3)
			ut := newPlugin(t, threeTiers, up...)
			for _, s := range up {
				s.SetMode(fault)
			}
			q := newClientQuery("www.example.org", dns.TypeA)
			m, err := serve(t, ut, q, false)
			if err == nil {
				t.Error("want an error for the errors plugin, got nil")
			}
			if m == nil || m.Rcode != dns.RcodeServerFailure || m.Id != q.Id {
				t.Fatalf("want SERVFAIL to query %d, got\n%v", q.Id, m)
			}
			e := ede(m)
			if e == nil || e.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
				t.Fatalf("want EDE %d (No Reachable Authority), got %v", dns.ExtendedErrorCodeNoReachableAuthority, e)
			}
			t.Logf("EDE: %s", e.ExtraText)
		})
	}
}

// A client without EDNS0 gets no OPT record back (RFC 6891), so no EDE.
func TestAllDownWithoutEDNS(t *testing.T) {
	up := startUpstreams(t, 1)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
	}`, up...)
	up[0].SetMode(faultdns.Closed)
	q := new(dns.Msg)
	q.SetQuestion("www.example.org.", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	if m == nil || m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("want SERVFAIL, got %v", m)
	}
	if m.IsEdns0() != nil {
		t.Errorf("OPT record in the answer to a query without one:\n%s", m)
	}
}

// The query budget bounds the whole walk: with every tier blackholed the
// client gets SERVFAIL once the budget is spent, and the attempt that would
// outlast the budget is cut short.
func TestQueryBudget(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, `upstreamtier {
	tier site %s
	tier isp %s
	tier public %s
	attempt_timeout 200ms
	timeout 300ms
	hedge off
	fall 100
}`, up...)
	for _, s := range up {
		s.SetMode(faultdns.Blackhole)
	}
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	if m == nil || m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("want SERVFAIL, got %v", m)
	}
	name := "www.example.org."
	if up[0].QueriesFor(name) != 1 || up[1].QueriesFor(name) != 1 {
		t.Errorf("tiers 1 and 2 got %d and %d queries, want 1 each", up[0].QueriesFor(name), up[1].QueriesFor(name))
	}
	if up[2].Queries() != 0 {
		t.Errorf("tier 3 got %d queries after the budget was spent", up[2].Queries())
	}
}

// NXDOMAIN is an answer unless failover says otherwise.
func TestFailoverRcodes(t *testing.T) {
	up := startUpstreams(t, 2)
	up[0].SetMode(faultdns.NXDomain)
	q := newClientQuery("www.example.org", dns.TypeA)

	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
	}`, up...)
	m, _ := serve(t, ut, q, false)
	if m == nil || m.Rcode != dns.RcodeNameError {
		t.Fatalf("want NXDOMAIN passed through, got %v", m)
	}

	ut = newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		failover NXDOMAIN
	}`, up...)
	m, _ = serve(t, ut, q, false)
	expectFrom(t, q, m, up[1])
}

// Truncation works as in forward: the UDP client gets the truncated answer
// and retries over TCP, which goes upstream over TCP.
func TestTruncated(t *testing.T) {
	up := startUpstreams(t, 2)
	up[0].SetMode(faultdns.Truncate)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
	}`, up...)
	q := newClientQuery("www.example.org", dns.TypeA)

	m, err := serve(t, ut, q, false)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || len(m.Answer) != 0 || m.Id != q.Id {
		t.Fatalf("want the truncated answer of tier 1 over UDP, got\n%s", m)
	}
	m, err = serve(t, ut, q, true)
	if err != nil {
		t.Fatal(err)
	}
	expectFrom(t, q, m, up[0])
	if up[1].Queries() != 0 {
		t.Error("a truncated answer made the plugin fail over")
	}
}

// With prefer_udp the plugin retries a truncated answer over TCP itself.
func TestPreferUDPRetriesTruncatedOverTCP(t *testing.T) {
	up := startUpstreams(t, 1)
	up[0].SetMode(faultdns.Truncate)
	ut := newPlugin(t, `upstreamtier {
		tier site %s {
			prefer_udp
		}
	}`, up...)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, err := serve(t, ut, q, true)
	if err != nil {
		t.Fatal(err)
	}
	expectFrom(t, q, m, up[0])
	if up[0].Queries() != 2 {
		t.Errorf("upstream got %d queries, want 2 (UDP, then TCP)", up[0].Queries())
	}
}

func TestForceTCP(t *testing.T) {
	up := startUpstreams(t, 1)
	up[0].SetMode(faultdns.Truncate) // truncates over UDP only
	ut := newPlugin(t, `upstreamtier {
		tier site %s {
			force_tcp
		}
	}`, up...)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, err := serve(t, ut, q, false)
	if err != nil {
		t.Fatal(err)
	}
	expectFrom(t, q, m, up[0])
}

// Names outside FROM or in except go to the next plugin.
func TestNotHandledGoesToNext(t *testing.T) {
	up := startUpstreams(t, 1)
	ut := newPlugin(t, `upstreamtier example.org {
		tier site %s
		except private.example.org
	}`, up...)
	for _, name := range []string{"www.example.com", "a.private.example.org"} {
		_, err := serve(t, ut, newClientQuery(name, dns.TypeA), false)
		if !errors.Is(err, errNextCalled) {
			t.Errorf("%s: want the next plugin, got %v", name, err)
		}
	}
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[0])
	if up[0].Queries() != 1 {
		t.Errorf("upstream got %d queries, want 1", up[0].Queries())
	}
}

// A tier's except keeps names away from it, even when the tiers above fail.
func TestTierExcept(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier public %s {
			except corp.example
		}
	}`, up...)
	up[0].SetMode(faultdns.Closed)

	q := newClientQuery("www.corp.example", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	if m == nil || m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("want SERVFAIL, got %v", m)
	}
	if up[1].Queries() != 0 {
		t.Fatalf("the public tier saw %d queries for an excepted name", up[1].Queries())
	}

	q = newClientQuery("www.example.org", dns.TypeA)
	m, _ = serve(t, ut, q, false)
	expectFrom(t, q, m, up[1])
}

// When no tier may see a name at all, the EDE says so.
func TestAllTiersBarred(t *testing.T) {
	up := startUpstreams(t, 1)
	ut := newPlugin(t, `upstreamtier {
		tier public %s {
			except corp.example
		}
	}`, up...)
	m, _ := serve(t, ut, newClientQuery("www.corp.example", dns.TypeA), false)
	if e := ede(m); m.Rcode != dns.RcodeServerFailure || e == nil || e.InfoCode != dns.ExtendedErrorCodeProhibited {
		t.Fatalf("want SERVFAIL with EDE Prohibited, got\n%s", m)
	}
}

func TestPolicies(t *testing.T) {
	const queries = 20
	tests := []struct {
		policy  string
		spreads bool // whether both upstreams see queries
	}{
		{"sequential", false},
		{"round_robin", true},
		{"random", true},
	}
	for _, tc := range tests {
		t.Run(tc.policy, func(t *testing.T) {
			up := startUpstreams(t, 2)
			// hedge off: on a slow machine a hedge would send a query twice.
			ut := newPlugin(t, "upstreamtier {\n tier site %s %s {\n policy "+tc.policy+"\n }\n hedge off\n}", up...)
			for range queries {
				serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
			}
			a, b := up[0].Queries(), up[1].Queries()
			if a+b != queries {
				t.Fatalf("upstreams got %d queries, want %d", a+b, queries)
			}
			if spreads := a > 0 && b > 0; spreads != tc.spreads {
				t.Errorf("queries split %d/%d", a, b)
			}
		})
	}
}
