package upstreamtier

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/forward"
	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"
)

// BenchmarkServeDNSDoT compares upstreamtier with CoreDNS forward against
// the same DNS-over-TLS upstream, one query at a time and many in flight:
//
//	go test -run '^$' -bench 'ServeDNSDoT' -benchmem -count 6 .
func BenchmarkServeDNSDoT(b *testing.B) {
	addr, ca := startDoT(b, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	handlers := []struct {
		name string
		new  func(b *testing.B) plugin.Handler
	}{
		{"upstreamtier", func(b *testing.B) plugin.Handler {
			b.Helper()
			return newPlugin(b, fmt.Sprintf(`upstreamtier {
				tier site tls://%s {
					tls %s
					tls_servername %s
				}
			}`, addr, ca, dotServerName))
		}},
		{"forward", func(b *testing.B) plugin.Handler {
			b.Helper()
			return forwardDoT(b, addr, ca)
		}},
	}
	for _, h := range handlers {
		b.Run(h.name, func(b *testing.B) { benchmarkHandler(b, h.new(b)) })
		b.Run(h.name+"-parallel", func(b *testing.B) { benchmarkParallel(b, h.new(b)) })
	}
}

// forwardDoT returns CoreDNS forward to the DoT upstream at addr, whose
// certificate is signed by the CA in the PEM file ca, as its setup makes it.
func forwardDoT(b *testing.B, addr, ca string) *forward.Forward {
	b.Helper()
	pem, err := os.ReadFile(ca)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	f := forward.New()
	p := proxy.NewProxy("forward", addr, transport.TLS)
	p.SetTLSConfig(&tls.Config{RootCAs: roots, ServerName: dotServerName, ClientSessionCache: tls.NewLRUClientSessionCache(10)})
	f.SetProxy(p)
	b.Cleanup(func() { f.OnShutdown() })
	return f
}
