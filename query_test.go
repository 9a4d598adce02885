package upstreamtier

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

// dropFirst is a UDP upstream on 127.0.0.1 that drops the first datagram
// of each query name and answers every other one, as a lossy link loses
// one: closed when the test ends.
func dropFirst(t *testing.T, ip net.IP) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		seen := map[string]bool{}
		buf := make([]byte, dns.MaxMsgSize)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
				continue
			}
			name := strings.ToLower(q.Question[0].Name)
			if q.Question[0].Qtype == dns.TypeA && !seen[name] {
				seen[name] = true // lost on the way
				continue
			}
			r := new(dns.Msg)
			r.SetReply(q)
			if q.Question[0].Qtype == dns.TypeA {
				r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: ip}}
			}
			b, _ := r.Pack()
			pc.WriteTo(b, from)
		}
	}()
	return pc.LocalAddr().String()
}

// A query whose datagram is lost on the way to the only upstream of its
// tier is sent again at the upstream's RTO and answered, instead of
// waiting for its attempt (30 s here) or going to the next tier; the
// retry shows in retries_total.
func TestLostDatagramRetried(t *testing.T) {
	up := startUpstreams(t, 1)
	lossy := dropFirst(t, net.IPv4(192, 0, 2, 77))
	ut := newPluginAddrs(t, `upstreamtier {
		tier site %s
		tier isp %s
		attempt_timeout 30s
		timeout 30s
	}`, lossy, up[0].Addr())
	before := testutil.ToFloat64(retryCount.WithLabelValues("", "site", lossy))
	for i := range 3 {
		q := newClientQuery(fmt.Sprintf("lost%d.example.org", i), dns.TypeA)
		m, _ := serve(t, ut, q, false)
		if got := answerIP(t, m); !got.Equal(net.IPv4(192, 0, 2, 77)) {
			t.Fatalf("answer %s, want tier 1's 192.0.2.77", got)
		}
	}
	if n := testutil.ToFloat64(retryCount.WithLabelValues("", "site", lossy)) - before; n != 3 {
		t.Errorf("retries_total grew by %v, want 3", n)
	}
	if n := up[0].Queries(); n != 0 {
		t.Errorf("tier 2 got %d queries", n)
	}
}
