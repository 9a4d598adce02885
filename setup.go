package upstreamtier

import (
	"net"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/dnstap"

	"github.com/miekg/dns"
)

// Defaults. The query budget stays under the 5 s a glibc stub waits before
// it retries, so the client always gets our answer, even a SERVFAIL.
// An attempt may take as long as a recursive resolver's slow cache miss
// while the resolver keeps answering; a silent one is found out long before.
const (
	defaultTimeout        = 4 * time.Second
	defaultAttemptTimeout = 2 * time.Second
	defaultInterval       = 250 * time.Millisecond
	defaultStandby        = 30 * time.Second
	defaultFall           = 2
	defaultRise           = 2
	defaultMaxHedges      = 100
	defaultMemoryTTL      = 5 * time.Second
	defaultMemorySize     = 10000
)

// defaultFailover are the rcodes that mean "this upstream cannot answer".
var defaultFailover = []int{dns.RcodeServerFailure, dns.RcodeRefused}

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	p := newParser(c)
	ut, err := p.parse()
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		ut.Next = next
		return ut
	})
	c.OnStartup(func() error {
		cfg := dnsserver.GetConfig(c)
		if err := p.checkServer(cfg); err != nil {
			return plugin.Error(pluginName, err)
		}
		ut.state.server = serverLabel(cfg)
		ut.metadata = cfg.Handler("metadata") != nil
		if tap, ok := cfg.Handler("dnstap").(*dnstap.Dnstap); ok {
			ut.taps = dnstapChain(tap)
		}
		if err := ut.OnStartup(); err != nil {
			return plugin.Error(pluginName, err)
		}
		ut.initMetrics()
		ut.startProbing()
		return nil
	})
	c.OnRestart(func() error { ut.life.interruptAttempts(); return nil })
	c.OnShutdown(ut.OnShutdown)
	return nil
}

// serverLabel returns the server label CoreDNS gives this server block's
// first listen address, as metrics.WithServer does for queries.
func serverLabel(cfg *dnsserver.Config) string {
	host := ""
	if len(cfg.ListenHosts) > 0 {
		host = cfg.ListenHosts[0]
	}
	addr := net.JoinHostPort(host, cfg.Port)
	if a, err := net.ResolveTCPAddr("tcp", addr); err == nil {
		addr = a.String()
	}
	return cfg.Transport + "://" + addr
}

// OnStartup resolves the host names, opens the upstreams' connection pools
// and sets the health gauges: every upstream is taken to be up until
// attempts say otherwise.
func (ut *UpstreamTier) OnStartup() error {
	if err := ut.resolveHostNames(); err != nil {
		return err
	}
	for _, t := range ut.tiers {
		for _, u := range t.upstreams() {
			u.start(ut.dialing())
			upstreamHealthy.WithLabelValues(ut.state.server, t.name, u.Addr()).Set(1)
		}
	}
	ut.state.update()
	return nil
}

// OnShutdown stops the probes and closes the upstreams' connection pools.
func (ut *UpstreamTier) OnShutdown() error {
	ut.shutdown.Do(func() {
		ut.life.shutdown()
		for _, t := range ut.tiers {
			for _, u := range t.upstreams() {
				u.stop()
			}
		}
	})
	return nil
}

// newUpstreamTier returns a plugin with the default configuration, wired
// to its health checks: the parser only changes what the Corefile sets.
func newUpstreamTier() *UpstreamTier {
	ut := &UpstreamTier{timeout: defaultTimeout, maxHedges: defaultMaxHedges, memory: newFailoverMemory(defaultMemoryTTL, defaultMemorySize), resolver: resolver{timeout: 2 * time.Second}}
	ut.hc = &healthCheck{interval: defaultInterval, standby: defaultStandby, domain: ".", fall: defaultFall, rise: defaultRise}
	ut.life = newLifecycle()
	ut.state = &tierState{life: ut.life}
	return ut
}
