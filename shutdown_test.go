package upstreamtier

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// hangGuard bounds how long a test waits for something that must not
// wait on the network: a hang detector far below the timeouts configured,
// not a performance assertion.
const hangGuard = 20 * time.Second

// blackhole is a UDP socket on 127.0.0.1 that reads every query and never
// answers, closed when the test ends.
func blackhole(tb testing.TB) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, dns.MaxMsgSize)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

// silentTCP is a TCP server on 127.0.0.1 that takes every connection and
// never says a word, as a hung server whose kernel still accepts: a TLS
// handshake with it waits for ever. Each connection accepted is sent on
// accepted (up to 16 unread) and closed when the test ends.
func silentTCP(tb testing.TB) (addr string, accepted <-chan net.Conn) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tb.Cleanup(func() { c.Close() })
			select {
			case conns <- c:
			default:
			}
		}
	}()
	return l.Addr().String(), conns
}

// shutdownWithin runs OnShutdown and fails the test if it has not
// returned within hangGuard.
func shutdownWithin(t *testing.T, ut *UpstreamTier) {
	t.Helper()
	within(t, "OnShutdown with a blackholed upstream", func() { ut.OnShutdown() })
}

// within runs f and fails the test if it has not returned within
// hangGuard.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		f()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatalf("%s still running after %s", what, hangGuard)
	}
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
			var addr string
			if scheme == "quic" {
				addr = blackhole(t)
			} else {
				addr, _ = silentTCP(t)
			}
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

// newPluginAddrs is newPlugin with addresses instead of servers.
func newPluginAddrs(t *testing.T, stanza string, addrs ...string) *UpstreamTier {
	t.Helper()
	args := make([]any, len(addrs))
	for i, a := range addrs {
		args[i] = a
	}
	return newPlugin(t, fmt.Sprintf(stanza, args...))
}

// waitProbing waits until the upstream at addr has a probe or an attempt
// on the wire, so that a shutdown finds it in flight.
func waitProbing(t *testing.T, ut *UpstreamTier, addr string) {
	t.Helper()
	waitFor(t, "an exchange in flight with "+addr, func() bool {
		for _, tr := range ut.tiers {
			for _, u := range tr.upstreams() {
				if l, ok := u.link.(interface{ InUse() int }); ok && u.addr == addr && l.InUse() > 0 {
					return true
				}
			}
		}
		return false
	})
}

// waitFor polls cond until it holds, failing the test after hangGuard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	guard := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(guard) {
			t.Fatalf("waited %s for %s", hangGuard, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveBackground sends n client queries to ut, each in a goroutine of
// its own; the group is done when all are answered.
func serveBackground(t *testing.T, ut *UpstreamTier, n int) *sync.WaitGroup {
	t.Helper()
	var served sync.WaitGroup
	for range n {
		served.Go(func() {
			serveRcode(t, ut, newClientQuery("www.example.org", dns.TypeA))
		})
	}
	return &served
}

func waitGroupWithin(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	within(t, what, wg.Wait)
}
