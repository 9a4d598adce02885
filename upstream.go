package upstreamtier

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"

	"github.com/miekg/dns"
)

// Upstream is one server of a tier. Plain DNS goes over the upstream's own
// connection pools (see conn.go); DNS over TLS through CoreDNS's pkg/proxy.
type Upstream struct {
	addr      string // host:port
	transport string // transport.DNS or transport.TLS
	tier      *Tier
	hc        *healthCheck

	udp, tcp *connPool
	proxy    *proxy.Proxy // DoT only

	health  health
	metrics atomic.Pointer[upstreamSeries] // hot-path metric children, for the last server label seen

	host    *hostName   // the host name this is an address of, or nil
	retired atomic.Bool // the host name no longer resolves to it: probes end
}

func newUpstream(addr, trans string, t *Tier, hc *healthCheck) *Upstream {
	u := &Upstream{addr: addr, transport: trans, tier: t, hc: hc}
	if trans == transport.TLS {
		u.proxy = proxy.NewProxy(pluginName, addr, trans)
	} else {
		u.udp = &connPool{addr: addr, proto: "udp"}
		u.tcp = &connPool{addr: addr, proto: "tcp"}
	}
	return u
}

// Addr returns the upstream's address, with a tls:// prefix for DoT.
func (u *Upstream) Addr() string {
	if u.transport == transport.TLS {
		return "tls://" + u.addr
	}
	return u.addr
}

// proto returns the protocol to the upstream for a client query over
// clientProto, after the tier's force_tcp or prefer_udp.
func (u *Upstream) proto(clientProto string) string {
	switch {
	case u.tier.opts.ForceTCP:
		return "tcp"
	case u.tier.opts.PreferUDP:
		return "udp"
	}
	return clientProto
}

// pool returns the connection pool for proto.
func (u *Upstream) pool(proto string) *connPool {
	if proto == "tcp" {
		return u.tcp
	}
	return u.udp
}

// exchange sends one query to the upstream and waits for its answer until
// the deadline or until ctx is done: over DoT through pkg/proxy, which
// sends req; otherwise over the pool for proto, which sends pkt. Both are
// the caller's own: they are modified.
func (u *Upstream) exchange(ctx context.Context, proto string, req *dns.Msg, pkt packet, deadline time.Time) (*dns.Msg, error) {
	if u.transport == transport.TLS {
		return u.exchangeDoT(ctx, req, deadline)
	}
	m, err := u.pool(proto).exchange(ctx, pkt, deadline)
	return u.untruncate(ctx, proto, m, err, pkt, deadline)
}

// untruncate asks again over TCP when a tier with prefer_udp got a
// truncated answer over UDP: prefer_udp only says how to ask first. wire is
// copied, so the caller's stays as it is.
func (u *Upstream) untruncate(ctx context.Context, proto string, m *dns.Msg, err error, pkt packet, deadline time.Time) (*dns.Msg, error) {
	if err != nil || !m.Truncated || proto != "udp" || !u.tier.opts.PreferUDP || u.transport == transport.TLS {
		return m, err
	}
	return u.tcp.exchange(ctx, pkt.clone(), deadline)
}

// start opens the DoT connection pool; plain DNS pools need no start.
func (u *Upstream) start(readTimeout time.Duration) {
	if u.proxy != nil {
		u.proxy.SetReadTimeout(readTimeout)
		u.proxy.Start(time.Second) // only feeds the proxy's own prober, never triggered
	}
}

// stop closes the connection pools, ending the reads still waiting on the
// upstream; DoT attempts in flight were let go when the plugin's lifetime
// ended (see exchangeDoT). The proxy's finalizer is removed before
// its transport is stopped now, rather than whenever the garbage collector
// gets to it, because it would stop it a second time, and that panics.
func (u *Upstream) stop() {
	if u.proxy != nil {
		u.proxy.Stop()
		runtime.SetFinalizer(u.proxy, nil)
		u.proxy.GetTransport().Stop()
		return
	}
	u.udp.close()
	u.tcp.close()
}
