package upstreamtier

import (
	"sync/atomic"

	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/upstreamtier/upstreamtier/internal/upstream"
)

// Upstream is one server of a tier. Its queries go over its link, which
// alone knows the transport (internal/upstream).
type Upstream struct {
	addr       string // host:port
	scheme     string // transport.DNS, TLS, HTTPS or QUIC: how it is written and told apart
	serverName string // the name its certificate must have, when not the tier's tls_servername
	tier       *Tier
	hc         *healthCheck  // the plugin's health settings
	life       *lifecycle    // the plugin's, for probes and their contexts
	state      *tierState    // the plugin's, told when the upstream goes down or up
	link       upstream.Link // set at start

	health  health
	metrics atomic.Pointer[upstreamSeries] // hot-path metric children, for the last server label seen

	host    *hostName   // the host name this is an address of, or nil
	retired atomic.Bool // the host name no longer resolves to it: probes end
}

func newUpstream(addr, scheme, serverName string, t *Tier, ut *UpstreamTier) *Upstream {
	return &Upstream{addr: addr, scheme: scheme, serverName: serverName, tier: t, hc: ut.hc, life: ut.life, state: ut.state}
}

// Addr returns the upstream's address, with its scheme but for plain DNS:
// tls://, https:// or quic://.
func (u *Upstream) Addr() string {
	if u.scheme == transport.DNS {
		return u.addr
	}
	return u.scheme + "://" + u.addr
}

// start opens the upstream's link.
func (u *Upstream) start(d dialing) { u.link = upstream.New(linkConfig(u, d)) }

// stop closes the link, if startup got to open it, ending the reads still
// waiting on the upstream.
func (u *Upstream) stop() {
	if u.link != nil {
		u.link.Stop(shutdownGrace)
	}
}
