package upstreamtier

import (
	"testing"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// The last tier's silence is evidence as any other's: every tier can die
// at once, and all-down must then be declared as fast as one tier's death.
// The attempts may wait 30 s here, so a query that waited for an attempt
// timeout instead of the silence shows as a 30 s test, not as a timing
// threshold.

// silentStanzas are configurations whose every upstream goes silent at
// once: a single upstream, and two tiers.
var silentStanzas = map[string]struct {
	stanza    string
	upstreams int
}{
	"one upstream": {`upstreamtier {
		tier only %s
		attempt_timeout 30s
		timeout 30s
	}`, 1},
	"two tiers": {`upstreamtier {
		tier site %s
		tier isp %s
		attempt_timeout 30s
		timeout 30s
	}`, 2},
}

// When every upstream goes silent (blackholed, or frozen: the kernel
// takes the datagrams, nothing answers), the queries waiting get SERVFAIL
// with EDE 22 once their upstreams are found silent, the upstreams are
// marked down on that evidence, and from then on every query gets the
// immediate SERVFAIL without reaching any upstream. When they answer
// again, probes bring them back.
func TestAllSilentDeclaredAllDown(t *testing.T) {
	for name, tc := range silentStanzas {
		t.Run(name, func(t *testing.T) {
			up := startUpstreams(t, tc.upstreams)
			ut := newPlugin(t, tc.stanza, up...)
			changes := watch(t, ut)
			for _, u := range upstreamsOf(ut) {
				u.startupProbe()
			}
			qname := names()
			for range 3 { // the upstreams answer: their RTT is known
				q := newClientQuery(qname(), dns.TypeA)
				m, _ := serve(t, ut, q, false)
				expectFrom(t, q, m, up[0])
			}
			for _, s := range up {
				s.SetMode(faultdns.Blackhole)
			}
			for len(ut.tiers) > 0 && ut.tiers[len(ut.tiers)-1].available() {
				m, _ := serve(t, ut, newClientQuery(qname(), dns.TypeA), false)
				expectServfail22(t, m)
			}
			expectChanges(t, changes, false, up...)

			q := newClientQuery(qname(), dns.TypeA)
			m, _ := serve(t, ut, q, false)
			expectServfail22(t, m)
			for _, s := range up {
				if n := s.QueriesFor(q.Question[0].Name); n != 0 {
					t.Errorf("with every upstream down, %s got the client's query", s.Addr())
				}
				s.SetMode(faultdns.OK)
			}
			expectChanges(t, changes, true, up...)
			q = newClientQuery(qname(), dns.TypeA)
			m, _ = serve(t, ut, q, false)
			expectFrom(t, q, m, up[0])
		})
	}
}

// A lone DoH or DoQ upstream's exchange runs in the query's goroutine
// until the answer: when the upstream is silent, its silence is asked about
// all the same, and when it is down on that evidence (all tiers down), the
// query waiting on it gets the SERVFAIL at once, not after its 30 s attempt.
func TestLoneEncryptedSilenceEndsQuery(t *testing.T) {
	for _, scheme := range []string{"https", "quic"} {
		t.Run(scheme, func(t *testing.T) {
			addr := silentEncrypted(t, scheme)
			ut := newPlugin(t, "upstreamtier {\n tier site "+scheme+"://"+addr+"%"+dotServerName+"\n timeout 30s\n attempt_timeout 30s\n health_check 10ms\n}")
			var m *dns.Msg
			within(t, "a query on a silent lone "+scheme+" upstream", func() {
				m, _ = serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
			})
			expectServfail22(t, m)
			if upstreamsOf(ut)[0].available() {
				t.Fatal("the query ended before its upstream was down")
			}
		})
	}
}
