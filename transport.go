package upstreamtier

import (
	"context"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/dnspool"
	"github.com/upstreamtier/upstreamtier/internal/upstream"

	"github.com/miekg/dns"
)

// An upstream's queries go over its link (internal/upstream), which alone
// knows the transport; this file is where the plugin's view of an
// upstream, its tier's options and the plugin's pool options, becomes the
// link's Config.

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

// linkConfig returns the transport configuration of u.
func linkConfig(u *Upstream, d dialing) upstream.Config {
	t := u.tier
	cfg := upstream.Config{
		Addr:        u.addr,
		Scheme:      u.scheme,
		DoHMethod:   t.dohMethod,
		ForceTCP:    t.opts.ForceTCP,
		PreferUDP:   t.opts.PreferUDP,
		Pool:        d.pool,
		ReadTimeout: d.readTimeout,
	}
	if encrypted(u.scheme) {
		cfg.TLS = upstream.TLSConfig(t.tlsConfig, u.serverName+t.tlsServerName)
	}
	return cfg
}

// exchange sends one query to the upstream and waits for its answer until
// the deadline or until ctx is done.
func (u *Upstream) exchange(ctx context.Context, clientProto string, q upstream.Query, deadline time.Time) (*dns.Msg, error) {
	return upstream.Exchange(ctx, u.link, clientProto, q, deadline)
}
