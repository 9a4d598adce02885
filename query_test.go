package upstreamtier

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

// A slow upstream is hedged within its tier: the other upstream of the
// tier answers, the slow one's late answer is dropped without harm, and
// the lower tier sees nothing.
func TestHedge(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, `upstreamtier {
		tier site %s %s {
			policy sequential
		}
		tier isp %s
		hedge 10ms
		attempt_timeout 1s
		fall 100
	}`, up...)
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
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		hedge 10ms
		attempt_timeout 2s
		fall 100
	}`, up...)
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
		{"hedge off", `upstreamtier {
			tier site %s
			tier isp %s
			hedge off
			attempt_timeout 1s
		}`, defaultMaxHedges},
		{"no hedge slot", `upstreamtier {
			tier site %s
			tier isp %s
			hedge 10ms
			fall 100
		}`, 0},
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

// A hedge refused for want of a slot does not use up its candidate: when
// the attempt in flight fails, the query fails over to that candidate.
func TestHedgeCapKeepsCandidate(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		tier public %s
		hedge 10ms
		attempt_timeout 200ms
		fall 100
	}`, up...)
	ut.maxHedges = 0
	up[0].SetMode(faultdns.Blackhole)
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[1])
}
