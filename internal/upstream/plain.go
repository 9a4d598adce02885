package upstream

import (
	"context"
	"errors"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/dnspool"

	"github.com/miekg/dns"
)

// plainLink carries plain DNS to the upstream: UDP over a multiplexer of
// a few long-lived sockets (dnspool.Mux), TCP over a pool of connections
// (dnspool.Pool), the transport that serves most queries: no dial, no copy
// of the request and no goroutine on its path. Nothing outside this file
// knows that UDP and TCP attempts are two types.
type plainLink struct {
	udp                 *dnspool.Mux
	tcp                 *dnspool.Pool
	forceTCP, preferUDP bool
}

func newPlain(cfg Config) *plainLink {
	return &plainLink{udp: dnspool.NewMux(cfg.Addr, cfg.Pool), tcp: dnspool.New(cfg.Addr, cfg.Pool), forceTCP: cfg.ForceTCP, preferUDP: cfg.PreferUDP}
}

// InUse returns how many queries wait on the link's sockets and
// connections.
func (l *plainLink) InUse() int { return l.udp.InUse() + l.tcp.InUse() }

// Dials returns how many UDP sockets the link has opened.
func (l *plainLink) Dials() int64 { return l.udp.Dials() }

// network is the protocol a client query over clientProto is sent on,
// after the tier's force_tcp or prefer_udp.
func (l *plainLink) Network(clientProto string) string {
	switch {
	case l.forceTCP:
		return "tcp"
	case l.preferUDP:
		return "udp"
	}
	return clientProto
}

// Send implements Link.
func (l *plainLink) Send(ctx context.Context, clientProto string, q Query, deadline time.Time) (Pending, error) {
	if l.Network(clientProto) == "tcp" {
		return sendTCP(ctx, l.tcp, q.Packet, deadline)
	}
	c, err := l.udp.Send(ctx, q.Packet.wire, int(q.Packet.size), deadline)
	if err != nil {
		return nil, err
	}
	return &udpPending{l: l, call: c, pkt: q.Packet}, nil
}

// sendTCP sends pkt on a connection of the TCP (or TLS) pool.
func sendTCP(ctx context.Context, pool *dnspool.Pool, pkt Packet, deadline time.Time) (*tcpPending, error) {
	c, err := pool.Send(ctx, pkt.wire, deadline)
	if err != nil {
		return nil, err
	}
	return &tcpPending{pool: pool, conn: c, pkt: pkt}, nil
}

// Stop implements Link.
func (l *plainLink) Stop(grace time.Duration) {
	l.udp.Close(grace)
	l.tcp.Close(grace)
}

// udpPending is a plain-DNS query over UDP waiting on the multiplexer.
type udpPending struct {
	l    *plainLink
	call *dnspool.Call
	pkt  Packet
}

func (p *udpPending) Await(deadline time.Time) (*dns.Msg, error) {
	b, err := p.call.Await(deadline)
	return decode(b, err, &p.pkt, "udp")
}

func (p *udpPending) AwaitCtx(ctx context.Context, deadline time.Time) (*dns.Msg, error) {
	b, err := p.call.AwaitCtx(ctx, deadline)
	return decode(b, err, &p.pkt, "udp")
}

// finish ends the call. The one rule for asking again: over TCP when a
// tier with prefer_udp got a truncated answer (prefer_udp only says how to
// ask first). The wire is copied: the query may be copying it for another
// attempt meanwhile.
func (p *udpPending) Finish(ctx context.Context, m *dns.Msg, err error, deadline time.Time) (*dns.Msg, error) {
	p.call.Done()
	if err == nil && m.Truncated && p.l.preferUDP {
		m, err = exchangeTCP(ctx, p.l.tcp, p.pkt.Clone(), deadline)
	}
	return m, err
}

// tcpPending is a query over plain TCP or TLS waiting on its pooled
// connection.
type tcpPending struct {
	pool *dnspool.Pool
	conn *dnspool.Conn
	pkt  Packet
}

func (p *tcpPending) Await(deadline time.Time) (*dns.Msg, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b, err := p.conn.Await(*bp, deadline)
	return decode(b, err, &p.pkt, "tcp")
}

func (p *tcpPending) AwaitCtx(ctx context.Context, deadline time.Time) (*dns.Msg, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	b, err := p.conn.AwaitCtx(ctx, *bp, deadline)
	return decode(b, err, &p.pkt, "tcp")
}

// decode unpacks the answer read. One cut to the client's
// buffer size over UDP is handed on as a truncated answer, so that the
// client retries over TCP, as forward does.
func decode(b []byte, err error, pkt *Packet, proto string) (*dns.Msg, error) {
	if err != nil {
		return nil, err
	}
	m, err := unpackAnswer(b, pkt)
	if err == nil {
		return m, nil
	}
	if proto == "udp" && len(b) >= max(int(pkt.size), dns.MinMsgSize) {
		m.Answer, m.Ns, m.Extra, m.Truncated = nil, nil, nil, true
		return m, nil
	}
	return nil, ErrMalformed
}

// finish releases the connection. The one rule for asking again: when
// the pooled connection had been closed by the upstream before we used it
// (as a server does when idle, or after so many queries on one: miekg/dns's
// default is 128), on the next connection, until one was not pooled. Each
// such try discards a pooled connection, so it ends with a new one at the
// latest. The wire is copied: the query may be copying it for another
// attempt meanwhile.
func (p *tcpPending) Finish(ctx context.Context, m *dns.Msg, err error, deadline time.Time) (*dns.Msg, error) {
	if !p.conn.Done(err) {
		return m, err
	}
	return exchangeTCP(ctx, p.pool, p.pkt.Clone(), deadline)
}

// exchangeTCP sends pkt over TCP and waits for the answer, again on the
// next connection while the one drawn from the pool had been closed by
// the upstream.
func exchangeTCP(ctx context.Context, pool *dnspool.Pool, pkt Packet, deadline time.Time) (*dns.Msg, error) {
	for {
		p, err := sendTCP(ctx, pool, pkt, deadline)
		if err != nil {
			return nil, err
		}
		m, err := p.AwaitCtx(ctx, deadline)
		if !p.conn.Done(err) || ctx.Err() != nil {
			return m, err
		}
	}
}

// ErrMalformed is the error of an answer that does not unpack.
var ErrMalformed = errors.New("malformed answer")
