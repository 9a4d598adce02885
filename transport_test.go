package upstreamtier

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// An upstream that closes each connection after one query (as servers do
// after so many: miekg/dns's default is 128) leaves the pool holding
// connections it has closed. A query that draws several of them in a row
// still gets its answer, over a new connection: over plain TCP and over
// TLS.
func TestUpstreamClosedPooledConnections(t *testing.T) {
	const inFlight = 4
	t.Run("tcp", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &dns.Server{Listener: l, Net: "tcp", MaxTCPQueries: 1, Handler: meetFirst(inFlight, dns.HandlerFunc(answerDoT))}
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
		ut := newPlugin(t, fmt.Sprintf(`upstreamtier {
			tier tcp %s {
				force_tcp
			}
		}`, l.Addr()))
		checkClosedPooled(t, ut, inFlight)
	})
	t.Run("tls", func(t *testing.T) {
		addr, caFile := startDoTServer(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), func(srv *dns.Server) {
			srv.MaxTCPQueries = 1
			srv.Handler = meetFirst(inFlight, srv.Handler)
		})
		ut := newPlugin(t, fmt.Sprintf(`upstreamtier {
			tier dot tls://%s {
				tls %s
				tls_servername %s
			}
		}`, addr, caFile, dotServerName))
		checkClosedPooled(t, ut, inFlight)
	})
}

// checkClosedPooled sends inFlight queries at once, which the upstream
// answers together, each on a connection of its own that it then closes,
// and then one more, which draws those connections from the pool.
func checkClosedPooled(t *testing.T, ut *UpstreamTier, inFlight int) {
	t.Helper()
	answers := make(chan *dns.Msg, inFlight)
	for range inFlight {
		go func() {
			_, m := serveRcode(t, ut, newClientQuery("www.example.org", dns.TypeA))
			answers <- m
		}()
	}
	for range inFlight {
		if m := <-answers; m == nil || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("a first query got %v", m)
		}
	}
	m, err := serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := answerIP(t, m); !got.Equal(dotAnswer) {
		t.Fatalf("answer %s, want %s", got, dotAnswer)
	}
}

// meetFirst makes the first n queries to h wait until all n have come,
// so that each has come on a connection of its own.
func meetFirst(n int, h dns.Handler) dns.Handler {
	arrived := make(chan struct{}, n)
	all := make(chan struct{})
	var once sync.Once
	return dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		select {
		case arrived <- struct{}{}:
			if len(arrived) == n {
				once.Do(func() { close(all) })
			}
			<-all
		default:
		}
		h.ServeDNS(w, r)
	})
}
