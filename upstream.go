package upstreamtier

import (
	"runtime"
	"time"

	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"
)

// Upstream is one server of a tier, reached through CoreDNS's proxy package,
// which owns the transports and the connection pool.
type Upstream struct {
	addr      string // host:port
	transport string // transport.DNS or transport.TLS
	tier      *Tier
	proxy     *proxy.Proxy
}

func newUpstream(addr, trans string, t *Tier) *Upstream {
	return &Upstream{addr: addr, transport: trans, tier: t, proxy: proxy.NewProxy(pluginName, addr, trans)}
}

// Addr returns the upstream's address, with a tls:// prefix for DoT.
func (u *Upstream) Addr() string {
	if u.transport == transport.TLS {
		return "tls://" + u.addr
	}
	return u.addr
}

// start opens the connection pool. The interval only feeds the proxy's own
// prober, which this plugin never triggers.
func (u *Upstream) start(readTimeout time.Duration) {
	u.proxy.SetReadTimeout(readTimeout)
	u.proxy.Start(time.Second)
}

// stop closes the connection pool now rather than when the garbage collector
// gets to the proxy's finalizer, so a reload leaves no goroutine or socket
// behind. The finalizer is removed first because it would stop the
// transport a second time, and that panics.
func (u *Upstream) stop() {
	u.proxy.Stop()
	runtime.SetFinalizer(u.proxy, nil)
	u.proxy.GetTransport().Stop()
}
