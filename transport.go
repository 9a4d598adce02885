package upstreamtier

import (
	"context"
	"time"

	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/upstreamtier/upstreamtier/internal/dnspool"

	"github.com/miekg/dns"
)

// A link carries one upstream's queries over its transport: plain DNS
// (plain.go), DNS over TLS (dot.go), or DNS over HTTPS or QUIC
// (proxied.go). Each transport
// is one type, made in newLink; nothing else knows which one an upstream
// uses.
type link interface {
	// send writes the attempt's query for a client query that came over
	// clientProto; the answer is awaited on the pending exchange returned.
	// A dial ends at the deadline or when ctx is done.
	send(ctx context.Context, clientProto string, q attemptQuery, deadline time.Time) (pending, error)
	// network is the protocol the query travels on for a client query
	// over clientProto, "udp" or "tcp", as dnstap reports it.
	network(clientProto string) string
	// stop closes the connections, ending the reads still waiting on the
	// upstream after the grace the client attempts in flight are given.
	stop()
}

// pending is a query sent to an upstream and not yet answered.
type pending interface {
	// await waits for the answer until the deadline. A timeout leaves the
	// query pending: it may be awaited again.
	await(deadline time.Time) (*dns.Msg, error)
	// awaitCtx waits for the answer until the deadline or until ctx is
	// done, with ctx's error.
	awaitCtx(ctx context.Context, deadline time.Time) (*dns.Msg, error)
	// finish ends the exchange after the last await, with what that
	// gave. The transport may ask once more, as its rules say, within
	// the same deadline and ctx; it returns the exchange's last word.
	finish(ctx context.Context, m *dns.Msg, err error, deadline time.Time) (*dns.Msg, error)
}

// attemptQuery is what an attempt sends: the client's query, which the
// transport leaves as it found it, and the attempt's own packed copy of
// it, which the transport may write into.
type attemptQuery struct {
	req   *dns.Msg
	pkt   packet
	alone bool // no other upstream may take over: the transport may block until the answer
	// A transport that blocks the caller until the answer calls
	// stalled.askSilence(start, done) if none has come by checkAt, done
	// closed when the exchange is over, so that the upstream's silence is
	// still asked about and can end the query.
	stalled        silenceAsker
	start, checkAt time.Time
}

// silenceAsker asks, until done is closed, whether an upstream has sent
// anything back since an attempt started: silence is evidence, and all
// tiers down ends the attempts in flight.
type silenceAsker interface {
	askSilence(since time.Time, done <-chan struct{})
}

// dialing is how every upstream of the plugin connects, from the top of
// its block.
type dialing struct {
	readTimeout time.Duration   // attempt_timeout: the longest DoH or DoQ waits to read
	pool        dnspool.Options // source_address, expire, max_age, max_idle_conns
}

// dialing returns how the plugin's upstreams connect.
func (ut *UpstreamTier) dialing() dialing {
	return dialing{readTimeout: ut.attemptTimeout, pool: ut.pool}
}

// newLink returns the link of u over its transport.
func newLink(u *Upstream, d dialing) link {
	switch u.scheme {
	case transport.DNS:
		return newPlain(u.addr, &u.tier.opts, d.pool)
	case transport.TLS:
		return newDoT(u, d)
	}
	return newProxied(u, d)
}

// exchange sends one query to the upstream and waits for its answer until
// the deadline or until ctx is done.
func (u *Upstream) exchange(ctx context.Context, clientProto string, q attemptQuery, deadline time.Time) (*dns.Msg, error) {
	p, err := u.link.send(ctx, clientProto, q, deadline)
	if err != nil {
		return nil, err
	}
	m, err := p.awaitCtx(ctx, deadline)
	return p.finish(ctx, m, err, deadline)
}
