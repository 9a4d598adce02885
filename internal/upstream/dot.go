package upstream

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/dnspool"
)

// dotLink carries DNS over TLS (RFC 7858) on the plugin's own TCP pool,
// dialling through crypto/tls, and not through CoreDNS's pkg/proxy as DoH
// and DoQ do. The proxy's DoT reads until its fixed read timeout whatever
// the attempt's context says, and rewrites the request's ID in place: each
// attempt would need a copy of the request and a goroutine of its own to
// stop at its adaptive deadline, which cost measurably more CPU per
// query than forward (bench/README.md, the encrypted scenario). On the pool an
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

// newDoT returns the link of a tls:// upstream.
func newDoT(cfg Config) *dotLink {
	opts := cfg.Pool
	opts.TLS = cfg.TLS
	if opts.Expire <= 0 {
		opts.Expire = dotExpire
	}
	return &dotLink{pool: dnspool.New(cfg.Addr, opts)}
}

// Network implements Link: DoT runs over TCP.
func (l *dotLink) Network(string) string { return "tcp" }

// Send implements Link.
func (l *dotLink) Send(ctx context.Context, _ string, q Query, deadline time.Time) (Pending, error) {
	p, err := sendTCP(ctx, l.pool, q.Packet, deadline)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Stop implements Link.
func (l *dotLink) Stop(grace time.Duration) { l.pool.Close(grace) }

// TLSConfig returns the configuration connections are verified with.
func (l *dotLink) TLSConfig() *tls.Config { return l.pool.TLSConfig() }
