package upstreamtier

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/forward"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
)

// BenchmarkServeDNS compares the healthy hot path of upstreamtier with
// CoreDNS forward, both against the same local upstream, in one run:
//
//	go test -run '^$' -bench ServeDNS -benchmem -count 6 .
func BenchmarkServeDNS(b *testing.B) {
	up := startUpstreams(b, 1)[0]

	b.Run("upstreamtier", func(b *testing.B) {
		ut := newPlugin(b, "upstreamtier {\n tier site %s\n tier isp 127.0.0.1:1\n}", up)
		benchmarkHandler(b, ut)
	})
	b.Run("forward", func(b *testing.B) {
		f := forward.New()
		f.SetProxy(proxy.NewProxy("forward", up.Addr(), transport.DNS))
		b.Cleanup(func() { f.OnShutdown() })
		benchmarkHandler(b, f)
	})
}

func benchmarkHandler(b *testing.B, h plugin.Handler) {
	q := newClientQuery("www.example.org", dns.TypeA)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		if _, err := h.ServeDNS(ctx, rec, q); err != nil || rec.Msg == nil || rec.Msg.Rcode != dns.RcodeSuccess {
			b.Fatalf("no answer: %v", err)
		}
	}
}
