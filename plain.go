package upstreamtier

import (
	"context"
	"errors"
	"time"

	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/upstreamtier/upstreamtier/internal/dnspool"

	"github.com/miekg/dns"
)

// plainLink carries plain DNS over the upstream's own UDP and TCP pools
// (internal/dnspool), the transport that serves most queries: no dial, no
// copy of the request and no goroutine on its path.
type plainLink struct {
	udp, tcp *dnspool.Pool
	opts     *proxy.Options // the tier's force_tcp and prefer_udp
}

func newPlain(addr string, opts *proxy.Options, pool dnspool.Options) *plainLink {
	return &plainLink{udp: dnspool.New(addr, "udp", pool), tcp: dnspool.New(addr, "tcp", pool), opts: opts}
}

// network is the protocol a client query over clientProto is sent on,
// after the tier's force_tcp or prefer_udp.
func (l *plainLink) network(clientProto string) string {
	switch {
	case l.opts.ForceTCP:
		return "tcp"
	case l.opts.PreferUDP:
		return "udp"
	}
	return clientProto
}

func (l *plainLink) pool(proto string) *dnspool.Pool {
	if proto == "tcp" {
		return l.tcp
	}
	return l.udp
}

func (l *plainLink) send(ctx context.Context, clientProto string, q attemptQuery, deadline time.Time) (pending, error) {
	return l.sendOver(ctx, l.network(clientProto), q.pkt, deadline)
}

func (l *plainLink) sendOver(ctx context.Context, proto string, pkt packet, deadline time.Time) (*plainPending, error) {
	c, err := l.pool(proto).Send(ctx, pkt.wire, int(pkt.size), deadline)
	if err != nil {
		return nil, err
	}
	return &plainPending{l: l, conn: c, pkt: pkt, proto: proto}, nil
}

func (l *plainLink) stop() {
	l.udp.Close(shutdownGrace)
	l.tcp.Close(shutdownGrace)
}

// plainPending is a plain-DNS query waiting on its pooled connection.
type plainPending struct {
	l     *plainLink
	conn  *dnspool.Conn
	pkt   packet
	proto string
}

func (p *plainPending) await(deadline time.Time) (*dns.Msg, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return p.decode(p.conn.Await(*bp, deadline))
}

func (p *plainPending) awaitCtx(ctx context.Context, deadline time.Time) (*dns.Msg, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return p.decode(p.conn.AwaitCtx(ctx, *bp, deadline))
}

// decode unpacks the answer read. One cut to the client's buffer size
// over UDP is handed on as a truncated answer, so that the client retries
// over TCP, as forward does.
func (p *plainPending) decode(b []byte, err error) (*dns.Msg, error) {
	if err != nil {
		return nil, err
	}
	m, err := unpackAnswer(b, &p.pkt)
	if err == nil {
		return m, nil
	}
	if p.proto == "udp" && len(b) >= max(int(p.pkt.size), dns.MinMsgSize) {
		m.Answer, m.Ns, m.Extra, m.Truncated = nil, nil, nil, true
		return m, nil
	}
	return nil, errMalformed
}

// finish releases the connection. The one rule for asking again: once,
// on a fresh connection, when the pooled TCP connection had been closed by
// the upstream before we used it; and over TCP when a tier with prefer_udp
// got a truncated answer over UDP (prefer_udp only says how to ask first).
// The wire is copied for either: the query may be copying it for another
// attempt meanwhile.
func (p *plainPending) finish(ctx context.Context, m *dns.Msg, err error, deadline time.Time) (*dns.Msg, error) {
	if p.conn.Done(err) {
		m, err = p.l.exchangeOver(ctx, p.proto, p.pkt.clone(), deadline)
	}
	if err == nil && m.Truncated && p.proto == "udp" && p.l.opts.PreferUDP {
		m, err = p.l.exchangeOver(ctx, "tcp", p.pkt.clone(), deadline)
	}
	return m, err
}

// exchangeOver sends pkt over proto and waits for the answer, with no
// second try.
func (l *plainLink) exchangeOver(ctx context.Context, proto string, pkt packet, deadline time.Time) (*dns.Msg, error) {
	p, err := l.sendOver(ctx, proto, pkt, deadline)
	if err != nil {
		return nil, err
	}
	m, err := p.awaitCtx(ctx, deadline)
	p.conn.Done(err)
	return m, err
}

// errMalformed is the error of an answer that does not unpack.
var errMalformed = errors.New("malformed answer")
