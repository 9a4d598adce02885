package upstreamtier

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// shutdownWithin runs OnShutdown and fails the test if it has not
// returned within hangGuard.
func shutdownWithin(t *testing.T, ut *UpstreamTier) {
	t.Helper()
	within(t, "OnShutdown with a blackholed upstream", func() { ut.OnShutdown() })
}

// Shutdown ends the startup probes, a liveness probe and client queries
// waiting on a blackholed upstream, whatever attempt_timeout says: with
// the largest the plugin accepts (30s) configured, it returns long before.
func TestShutdownBlackholed(t *testing.T) {
	for _, proto := range []string{"udp", "tcp"} {
		t.Run(proto, func(t *testing.T) {
			bh := blackhole(t)
			stanza := "upstreamtier {\n tier site " + bh + " {\n prefer_udp\n }\n timeout 30s\n attempt_timeout 30s\n}"
			if proto == "tcp" {
				// A listener that never accepts: the handshake completes in
				// the kernel's backlog, and nothing is ever read or answered.
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				stanza = "upstreamtier {\n tier site " + l.Addr().String() + " {\n force_tcp\n }\n timeout 30s\n attempt_timeout 30s\n}"
			}
			ut := newPlugin(t, stanza)
			ut.startProbing()

			served := serveBackground(t, ut, 3) // they wait on the upstream
			waitProbing(t, ut, ut.tiers[0].upstreams()[0].addr)

			shutdownWithin(t, ut)
			waitGroupWithin(t, served, "client queries")
		})
	}
}

// Shutdown does not wait for encrypted probes or queries either, not
// even for a TLS handshake that never ends or for a lone upstream, whose
// exchange runs in the query's own goroutine.
func TestShutdownBlackholedEncrypted(t *testing.T) {
	for _, scheme := range []string{"tls", "https", "quic"} {
		t.Run(scheme, func(t *testing.T) {
			addr := silentEncrypted(t, scheme)
			ut := newPlugin(t, "upstreamtier {\n tier site "+scheme+"://"+addr+"%"+dotServerName+"\n timeout 30s\n attempt_timeout 30s\n max_concurrent 10\n}")
			ut.startProbing()
			served := serveBackground(t, ut, 1)
			waitFor(t, "the query in flight", func() bool { return ut.concurrent.Load() > 0 })
			shutdownWithin(t, ut)
			waitGroupWithin(t, served, "client query")
		})
	}
}

// A reload is a shutdown of the old instance, then a start of the new
// one: the old one lets go of its probes and queries waiting on a
// blackholed upstream at once, and the new one serves.
func TestReloadBlackholed(t *testing.T) {
	up := startUpstreams(t, 1)
	bh := blackhole(t)
	old := newPluginAddrs(t, `upstreamtier {
		tier site %s
		timeout 30s
		attempt_timeout 30s
	}`, bh)
	old.startProbing()
	served := serveBackground(t, old, 1)
	waitProbing(t, old, bh)
	shutdownWithin(t, old)

	fresh := newPluginAddrs(t, `upstreamtier {
		tier site %s
		tier isp %s
		timeout 30s
		attempt_timeout 30s
	}`, up[0].Addr(), bh)
	fresh.startProbing()
	q := newClientQuery("www.example.org", dns.TypeA)
	var m *dns.Msg
	within(t, "the new instance's query", func() { m, _ = serve(t, fresh, q, false) })
	expectFrom(t, q, m, up[0])
	waitGroupWithin(t, served, "the old instance's client query")
	shutdownWithin(t, fresh)
}

// Goroutines of attempts that lost to another answer do not outlive their
// query: after many queries that a blackholed tier 1 cannot answer and a
// healthy tier 2 does, with a large attempt_timeout, the goroutine count
// falls back to about where it started. The abandoned attempts are no
// evidence: only probes take the silent upstream down.
func TestAbandonedAttemptsEnd(t *testing.T) {
	up := startUpstreams(t, 2)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		tier isp %s
		timeout 30s
		attempt_timeout 30s
		fall 100
		health_check 1m
	}`, up...)
	// The RTTs are learnt while tier 1 answers; then it goes silent.
	for range 20 {
		serveRcode(t, ut, newClientQuery("warm.example.org", dns.TypeA))
	}
	base := runtime.NumGoroutine()
	up[0].SetMode(faultdns.Blackhole)

	const clients, each = 50, 20
	var served sync.WaitGroup
	for c := range clients {
		served.Go(func() {
			for i := range each {
				q := newClientQuery(nameFor(c, i), dns.TypeA)
				if m, _ := serve(t, ut, q, false); m == nil || m.Rcode != dns.RcodeSuccess {
					t.Errorf("query %d of client %d: no answer: %v", i, c, m)
					return
				}
			}
		})
	}
	waitGroupWithin(t, &served, "client queries")
	after := runtime.NumGoroutine()

	// Probes may still be in flight; a few goroutines either way is noise.
	waitFor(t, "goroutines back to the baseline", func() bool { return runtime.NumGoroutine() <= base+10 })
	t.Logf("goroutines: %d before the queries, %d as the last was answered, %d now", base, after, runtime.NumGoroutine())
	for _, u := range ut.tiers[0].upstreams() {
		if !u.available() {
			t.Logf("tier 1 was marked down (by a probe)")
		}
	}
}

func nameFor(c, i int) string { return fmt.Sprintf("c%d-q%d.example.org", c, i) }
