package upstreamtier

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/forward"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/coredns/coredns/plugin/test"
	"github.com/upstreamtier/upstreamtier/internal/responder"

	"github.com/miekg/dns"
)

// The benchmarks' upstreams are an internal/responder, which answers in place
// without allocating, so allocs/op and B/op are the handler's own (and the
// recorder's two or so, the same for every handler), not the upstream's.
// (cd bench && go run . -scenarios throughput,configsize) runs them and tabulates
// their medians; by hand:
//
//	go test -run '^$' -bench 'ServeDNS' -benchmem -count 6 .

// BenchmarkServeDNS compares the healthy hot path of upstreamtier with
// CoreDNS forward, both against the same local upstream, in one run.
func BenchmarkServeDNS(b *testing.B) {
	up := startResponder(b, 1).Addrs()[0]

	b.Run("upstreamtier", func(b *testing.B) {
		ut := newPlugin(b, fmt.Sprintf(`upstreamtier {
			tier site %s
			tier isp 127.0.0.1:1
		}`, up))
		benchmarkHandler(b, ut)
	})
	b.Run("forward", func(b *testing.B) {
		f := forward.New()
		f.SetProxy(proxy.NewProxy("forward", up, transport.DNS))
		b.Cleanup(func() { f.OnShutdown() })
		benchmarkHandler(b, f)
	})
}

// BenchmarkServeDNSConfigSize runs healthy upstreamtier with 2 upstreams in
// 1 tier and with 100 upstreams in 10 tiers: a query's cost and
// allocations must not depend on how many upstreams and tiers there are.
func BenchmarkServeDNSConfigSize(b *testing.B) {
	for _, shape := range configShapes {
		b.Run(shape.String(), func(b *testing.B) {
			r := startResponder(b, shape.tiers*shape.perTier)
			benchmarkHandler(b, newPlugin(b, shape.stanza(r.Addrs())))
		})
	}
}

// configShape is an upstreamtier configuration of tiers × perTier upstreams.
type configShape struct{ tiers, perTier int }

var configShapes = []configShape{{1, 2}, {10, 10}}

// String names the shape for a sub-benchmark: 1tier-2upstreams, 10tiers-100upstreams.
func (s configShape) String() string {
	tiers := "tiers"
	if s.tiers == 1 {
		tiers = "tier"
	}
	return fmt.Sprintf("%d%s-%dupstreams", s.tiers, tiers, s.tiers*s.perTier)
}

// stanza returns the Corefile stanza with the addrs in tier order, perTier a tier.
func (s configShape) stanza(addrs []string) string {
	var st strings.Builder
	st.WriteString("upstreamtier {\n")
	for t := range s.tiers {
		fmt.Fprintf(&st, " tier t%d %s\n", t+1, strings.Join(addrs[t*s.perTier:(t+1)*s.perTier], " "))
	}
	st.WriteString("}")
	return st.String()
}

// startResponder starts a responder on n ports of 127.0.0.1, closed when the benchmark ends.
func startResponder(b *testing.B, n int) *responder.Responder {
	b.Helper()
	r, err := responder.Start(n, netip.MustParseAddr("192.0.2.53"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	return r
}

// benchmarkHandler measures h answering one query at a time.
func benchmarkHandler(b *testing.B, h plugin.Handler) { //nolint:thelper // the benchmark itself, which b.Run calls: a failure is its own line, not its caller's
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
