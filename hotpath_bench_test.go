package upstreamtier

import (
	"context"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/forward"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/coredns/coredns/plugin/test"

	"github.com/miekg/dns"
)

// BenchmarkConfigSize shows that a query's cost does not grow with the
// configuration: a healthy query to 2 upstreams in 1 tier, and to 100
// upstreams in 10 tiers (default policy, random), against the same kind of
// local upstreams. allocs/op must be equal:
//
//	go test -run '^$' -bench ConfigSize -benchmem -count 6 .
func BenchmarkConfigSize(b *testing.B) {
	for _, size := range []struct {
		name         string
		tiers, width int
	}{
		{"2upstreams-1tier", 1, 2},
		{"100upstreams-10tiers", 10, 10},
	} {
		b.Run(size.name, func(b *testing.B) {
			up := startUpstreams(b, size.tiers*size.width)
			var stanza strings.Builder
			stanza.WriteString("upstreamtier {\n")
			for i := range size.tiers {
				stanza.WriteString(" tier t" + string(rune('a'+i)) + strings.Repeat(" %s", size.width) + "\n")
			}
			stanza.WriteString("}")
			benchmarkHandler(b, newPlugin(b, stanza.String(), up...))
		})
	}
}

// BenchmarkServeDNSParallel is BenchmarkServeDNS with many queries in
// flight at once (64 per CPU), where a pool too small for the
// concurrency dials a socket per query:
//
//	go test -run '^$' -bench ServeDNSParallel -benchmem -count 6 .
func BenchmarkServeDNSParallel(b *testing.B) {
	up := startUpstreams(b, 1)
	b.Run("upstreamtier", func(b *testing.B) {
		ut := newPlugin(b, `upstreamtier {
			tier site %s
		}`, up...)
		pool := ut.tiers[0].upstreams()[0].link.(interface{ Dials() int64 })
		before := pool.Dials()
		benchmarkParallel(b, ut)
		b.ReportMetric(float64(pool.Dials()-before)/float64(b.N), "dials/op")
	})
	b.Run("forward", func(b *testing.B) {
		f := forward.New()
		f.SetProxy(proxy.NewProxy("forward", up[0].Addr(), transport.DNS))
		b.Cleanup(func() { f.OnShutdown() })
		benchmarkParallel(b, f)
	})
}

// benchmarkParallel measures h answering queries from 64 goroutines per CPU.
func benchmarkParallel(b *testing.B, h plugin.Handler) { //nolint:thelper // the benchmark itself, which b.Run calls: a failure is its own line, not its caller's
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		q := newClientQuery("www.example.org", dns.TypeA)
		for pb.Next() {
			rec := dnstest.NewRecorder(&test.ResponseWriter{})
			if _, err := h.ServeDNS(ctx, rec, q); err != nil || rec.Msg == nil || rec.Msg.Rcode != dns.RcodeSuccess {
				b.Errorf("no answer: %v", err)
				return
			}
		}
	})
}
