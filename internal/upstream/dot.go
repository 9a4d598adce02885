package upstreamtier

import (
	"context"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/dnspool"
)

// dotLink carries DNS over TLS (RFC 7858) on the plugin's own TCP pool,
// dialling through crypto/tls, and not through CoreDNS's pkg/proxy as DoH
// and DoQ do. The proxy's DoT reads until its fixed read timeout whatever
// the attempt's context says, and rewrites the request's ID in place: each
// attempt would need a copy of the request and a goroutine of its own to
// stop at its adaptive deadline, which cost a quarter more CPU per query
// than forward (see the README's encrypted benchmark). On the pool an
// attempt writes its own packed query and sets its own deadlines, as over
// plain TCP; the handshake and session resumption are crypto/tls's, and
// certificates are always verified. A new connection is dialled and shaken
// hands with in the background, so an attempt on a server that hangs in
// the handshake is hedged at its first checkpoint (see dnspool.Pool.dial).
type dotLink struct {
	pool *dnspool.Pool
}

// dotExpire is how long an idle DoT connection is kept unless expire says
// otherwise: CoreDNS's default for encrypted upstreams, as a handshake
// costs more than keeping a connection.
const dotExpire = 10 * time.Second

// newDoT returns the link of u, a tls:// upstream.
func newDoT(u *Upstream, d dialing) *dotLink {
	opts := d.pool
	opts.TLS = tierTLSConfig(u.tier, u.serverName)
	if opts.Expire <= 0 {
		opts.Expire = dotExpire
	}
	return &dotLink{pool: dnspool.New(u.addr, "tcp", opts)}
}

func (l *dotLink) network(string) string { return "tcp" }

func (l *dotLink) send(ctx context.Context, _ string, q attemptQuery, deadline time.Time) (pending, error) {
	p, err := sendTCP(ctx, l.pool, q.pkt, deadline)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (l *dotLink) stop() { l.pool.Close(shutdownGrace) }
