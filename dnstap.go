package upstreamtier

import (
	"context"
	"net"
	"time"

	"github.com/coredns/coredns/plugin/dnstap"
	"github.com/coredns/coredns/plugin/dnstap/msg"
	"github.com/coredns/coredns/request"

	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
)

// dnstapChain returns the dnstap plugins of a server block, which chain.
func dnstapChain(t *dnstap.Dnstap) []*dnstap.Dnstap {
	taps := []*dnstap.Dnstap{t}
	for next, ok := t.Next.(*dnstap.Dnstap); ok; next, ok = next.Next.(*dnstap.Dnstap) {
		taps = append(taps, next)
	}
	return taps
}

// toDnstap tells the dnstap plugins about a query forwarded to u and its
// answer (nil when there was none), as forward does.
func (ut *UpstreamTier) toDnstap(ctx context.Context, state request.Request, u *Upstream, proto string, reply *dns.Msg, start time.Time) {
	host, port, _ := net.SplitHostPort(u.addr)
	ip := net.ParseIP(host)
	p, _ := net.LookupPort("tcp", port)
	var to net.Addr = &net.UDPAddr{IP: ip, Port: p}
	if proto == "tcp" {
		to = &net.TCPAddr{IP: ip, Port: p}
	}
	for _, t := range ut.taps {
		q := new(tap.Message)
		msg.SetQueryTime(q, start)
		msg.SetResponseAddress(q, to)
		if t.IncludeRawMessage {
			q.QueryMessage, _ = state.Req.Pack()
		}
		msg.SetType(q, tap.Message_FORWARDER_QUERY)
		t.TapMessageWithMetadata(ctx, q, state)

		if reply == nil {
			continue
		}
		r := new(tap.Message)
		msg.SetQueryTime(r, start)
		msg.SetResponseAddress(r, to)
		msg.SetResponseTime(r, time.Now())
		if t.IncludeRawMessage {
			r.ResponseMessage, _ = reply.Pack()
		}
		msg.SetType(r, tap.Message_FORWARDER_RESPONSE)
		t.TapMessageWithMetadata(ctx, r, state)
	}
}
