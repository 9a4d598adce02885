package upstreamtier

import (
	"errors"
	"testing"

	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

// next RCODE and next_on_nodata hand an upstream's answer to the next
// plugin; everything else reaches the client.
func TestNextRcodeAndNodata(t *testing.T) {
	up := startUpstreams(t, 2)
	for _, s := range up {
		if err := s.SetRules(faultdns.Rule{Zone: "nx.example.org", Mode: faultdns.NXDomain}, faultdns.Rule{Zone: "bad.example.org", Mode: faultdns.ServFail}); err != nil {
			t.Fatal(err)
		}
	}
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		next NXDOMAIN SERVFAIL
		next_on_nodata
	}`, up...)
	tests := []struct {
		name  string
		qtype uint16
		next  bool
	}{
		{"www.example.org", dns.TypeA, false},
		{"www.nx.example.org", dns.TypeA, true},
		{"www.example.org", dns.TypeAAAA, true}, // NODATA
		{"www.bad.example.org", dns.TypeA, true},
	}
	for _, tc := range tests {
		q := newClientQuery(tc.name, tc.qtype)
		m, err := serve(t, ut, q, false)
		switch {
		case tc.next && !errors.Is(err, errNextCalled):
			t.Errorf("%s %s: want the next plugin, got %v\n%v", tc.name, dns.TypeToString[tc.qtype], err, m)
		case !tc.next && err != nil:
			t.Errorf("%s %s: want the upstream's answer, got %v", tc.name, dns.TypeToString[tc.qtype], err)
		}
	}
	// SERVFAIL is a failover rcode: every tier is asked before the query
	// goes on.
	for i, s := range up {
		if n := s.QueriesFor("www.bad.example.org."); n == 0 {
			t.Errorf("tier %d was not asked for the SERVFAIL name before the next plugin", i+1)
		}
	}
}

// Without a next plugin the answer is the client's, as in forward.
func TestNextWithoutNextPlugin(t *testing.T) {
	up := startUpstreams(t, 1)
	if err := up[0].SetRules(faultdns.Rule{Zone: "nx.example.org", Mode: faultdns.NXDomain}); err != nil {
		t.Fatal(err)
	}
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		next NXDOMAIN
	}`, up...)
	ut.Next = nil
	m, err := serve(t, ut, newClientQuery("www.nx.example.org", dns.TypeA), false)
	if err != nil || m == nil || m.Rcode != dns.RcodeNameError {
		t.Fatalf("want the upstream's NXDOMAIN, got %v, %v", m, err)
	}
}

// fall 0, as forward's max_fails 0: an upstream that fails every query is
// never marked down, so every query still tries it first.
func TestFallZeroNeverMarksDown(t *testing.T) {
	up := startUpstreams(t, 2)
	if err := up[0].SetMode(faultdns.ServFail); err != nil {
		t.Fatal(err)
	}
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		fall 0
		failover_memory off
	}`, up...)
	const queries = 10
	for range queries {
		q := newClientQuery("www.example.org", dns.TypeA)
		m, err := serve(t, ut, q, false)
		if err != nil {
			t.Fatal(err)
		}
		expectFrom(t, q, m, up[1])
	}
	if !ut.tiers[0].upstreams()[0].available() {
		t.Error("the failing upstream was marked down with fall 0")
	}
	if n := up[0].Queries(); n != queries {
		t.Errorf("the failing upstream got %d queries, want %d: every query, and no probe", n, queries)
	}
}
