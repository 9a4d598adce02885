package upstreamtier

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/dnstap"
	"github.com/coredns/coredns/plugin/pkg/parse"
	"github.com/coredns/coredns/plugin/pkg/proxy"
	pkgtls "github.com/coredns/coredns/plugin/pkg/tls"
	"github.com/coredns/coredns/plugin/pkg/transport"

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

const (
	topProperties  = "tier, except, failover, timeout, attempt_timeout, hedge, health_check, standby_probe, fall, rise, all_down, max_concurrent, failover_memory"
	tierProperties = "policy, except, tls, tls_servername, force_tcp, prefer_udp"
)

func init() { plugin.Register(pluginName, setup) }

func setup(c *caddy.Controller) error {
	ut, err := parseUpstreamTier(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		ut.Next = next
		return ut
	})
	c.OnStartup(func() error {
		cfg := dnsserver.GetConfig(c)
		ut.hc.server = serverLabel(cfg)
		ut.metadata = cfg.Handler("metadata") != nil
		if tap, ok := cfg.Handler("dnstap").(*dnstap.Dnstap); ok {
			ut.taps = dnstapChain(tap)
		}
		if err := ut.OnStartup(); err != nil {
			return err
		}
		ut.initMetrics()
		ut.startProbing()
		return nil
	})
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

// OnStartup opens the upstreams' connection pools and sets the health
// gauges: every upstream is taken to be up until attempts say otherwise.
func (ut *UpstreamTier) OnStartup() error {
	for _, t := range ut.tiers {
		for _, u := range t.upstreams {
			u.start(ut.attemptTimeout)
			upstreamHealthy.WithLabelValues(ut.hc.server, t.name, u.Addr()).Set(1)
		}
	}
	ut.tiersChanged()
	return nil
}

// OnShutdown stops the probes and closes the upstreams' connection pools.
func (ut *UpstreamTier) OnShutdown() error {
	ut.shutdown.Do(func() {
		ut.hc.shutdown()
		for _, t := range ut.tiers {
			for _, u := range t.upstreams {
				u.stop()
			}
		}
	})
	return nil
}

// parseUpstreamTier reads the one upstreamtier stanza of a server block.
func parseUpstreamTier(c *caddy.Controller) (*UpstreamTier, error) {
	var ut *UpstreamTier
	for c.Next() {
		if ut != nil {
			return nil, c.Err("only one upstreamtier stanza per server block; put all tiers in it")
		}
		var err error
		if ut, err = parseStanza(c); err != nil {
			return nil, err
		}
	}
	return ut, nil
}

func parseStanza(c *caddy.Controller) (*UpstreamTier, error) {
	ut := &UpstreamTier{timeout: defaultTimeout, maxHedges: defaultMaxHedges, memory: newFailoverMemory(defaultMemoryTTL, defaultMemorySize)}
	ut.hc = &healthCheck{interval: defaultInterval, standby: defaultStandby, domain: ".", fall: defaultFall, rise: defaultRise, stop: make(chan struct{})}
	ut.hc.changed = ut.healthChanged
	from, err := parseZones(c, c.RemainingArgs(), "FROM")
	if err != nil {
		return nil, err
	}
	ut.from = plugin.OriginsFromArgsOrServerBlock(from, c.ServerBlockKeys)

	seen := map[string]bool{}
	for c.NextBlock() {
		prop := c.Val()
		if prop != "tier" && seen[prop] {
			return nil, c.Errf("%s given twice", prop)
		}
		seen[prop] = true
		if err := parseProperty(c, ut, prop); err != nil {
			return nil, err
		}
	}

	if len(ut.tiers) == 0 {
		return nil, c.Err("no tier defined: expected at least one 'tier NAME TO...' line in the upstreamtier block")
	}
	if ut.attemptTimeout == 0 {
		ut.attemptTimeout = min(defaultAttemptTimeout, ut.timeout)
	}
	if ut.attemptTimeout > ut.timeout {
		return nil, c.Errf("attempt_timeout %s is longer than timeout %s: one attempt cannot outlast the whole query", ut.attemptTimeout, ut.timeout)
	}
	if ut.failover == nil {
		ut.failover = rcodeSet(defaultFailover)
	}
	ut.hc.limit, ut.hc.failover = ut.attemptTimeout, ut.failover
	for _, t := range ut.tiers {
		ut.upstreams += len(t.upstreams)
	}
	return ut, nil
}

func parseProperty(c *caddy.Controller, ut *UpstreamTier, prop string) error {
	switch prop {
	case "tier":
		t, err := parseTier(c, ut)
		if err != nil {
			return err
		}
		t.index = len(ut.tiers)
		ut.tiers = append(ut.tiers, t)
	case "except":
		zones, err := parseZones(c, c.RemainingArgs(), "ZONE")
		if err != nil {
			return err
		}
		if len(zones) == 0 {
			return c.Err("except needs at least one ZONE")
		}
		ut.except = zones
	case "failover":
		rcodes, err := parseFailover(c)
		if err != nil {
			return err
		}
		ut.failover = rcodeSet(rcodes)
	case "timeout":
		d, err := parseDuration(c)
		if err != nil {
			return err
		}
		ut.timeout = d
	case "attempt_timeout":
		d, err := parseDuration(c)
		if err != nil {
			return err
		}
		ut.attemptTimeout = d
	case "hedge":
		d, err := durationOrOff(c)
		if err != nil {
			return err
		}
		ut.hedge, ut.hedgeOff = d, d == 0
	case "health_check":
		return parseHealthCheck(c, ut.hc)
	case "standby_probe":
		d, err := durationOrOff(c)
		if err != nil {
			return err
		}
		ut.hc.standby = d
	case "failover_memory":
		ttl, size, err := parseMemory(c)
		if err != nil {
			return err
		}
		ut.memory = nil
		if ttl > 0 {
			ut.memory = newFailoverMemory(ttl, size)
		}
	case "fall", "rise":
		n, err := parseCount(c, 100)
		if err != nil {
			return err
		}
		if prop == "fall" {
			ut.hc.fall = n
		} else {
			ut.hc.rise = n
		}
	case "max_concurrent":
		n, err := parseCount(c, 1<<30)
		if err != nil {
			return err
		}
		ut.maxConcurrent = int64(n)
	case "all_down":
		args := c.RemainingArgs()
		if len(args) != 1 || (args[0] != "servfail" && args[0] != "try") {
			return c.Err("all_down needs servfail or try")
		}
		ut.allDownTry = args[0] == "try"
	case "policy", "tls", "tls_servername", "force_tcp", "prefer_udp":
		return c.Errf("%s belongs in a tier's block: tier NAME TO... { %s ... }", prop, prop)
	default:
		return c.Errf("unknown property %q; expected one of %s", prop, topProperties)
	}
	return nil
}

var tierName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// parseTier reads "tier NAME TO... [{ ... }]".
func parseTier(c *caddy.Controller, ut *UpstreamTier) (*Tier, error) {
	args := c.RemainingArgs()
	if len(args) < 2 {
		return nil, c.Err("tier needs a NAME and at least one upstream: tier NAME TO...")
	}
	name := args[0]
	if !tierName.MatchString(name) {
		return nil, c.Errf("tier name %q is not valid: expected a letter, then letters, digits, '-' or '_' (is the NAME missing before the upstreams?)", name)
	}
	for _, t := range ut.tiers {
		if t.name == name {
			return nil, c.Errf("tier %q defined twice", name)
		}
	}

	// The addresses are checked before the block is read, so that an error
	// names the tier's line; the upstreams are made after it, because the
	// block holds their TLS options.
	tos, err := parseTos(c, name, args[1:])
	if err != nil {
		return nil, err
	}
	t := &Tier{name: name, policy: &random{}, opts: proxy.Options{HCRecursionDesired: true, HCDomain: "."}}
	if err := parseTierBlock(c, t); err != nil {
		return nil, err
	}
	if err := addUpstreams(c, ut, t, tos); err != nil {
		return nil, err
	}
	return t, nil
}

// parseTierBlock reads the optional "{ ... }" after a tier line. Caddy's
// dispenser only tracks one level of blocks, so the inner one is read here.
func parseTierBlock(c *caddy.Controller, t *Tier) error {
	if !c.NextArg() {
		return nil
	}
	if c.Val() != "{" {
		return c.Errf("unexpected %q after the tier's upstreams", c.Val())
	}
	seen := map[string]bool{}
	for {
		if !c.Next() {
			return c.Errf("tier %q: block is not closed with '}'", t.name)
		}
		prop := c.Val()
		if prop == "}" {
			return nil
		}
		if seen[prop] {
			return c.Errf("tier %q: %s given twice", t.name, prop)
		}
		seen[prop] = true
		if err := parseTierProperty(c, t, prop); err != nil {
			return err
		}
	}
}

func parseTierProperty(c *caddy.Controller, t *Tier, prop string) error {
	switch prop {
	case "policy":
		args := c.RemainingArgs()
		if len(args) != 1 {
			return c.Err("policy needs one of random, round_robin, sequential")
		}
		if t.policy = newPolicy(args[0]); t.policy == nil {
			return c.Errf("unknown policy %q; expected random, round_robin or sequential", args[0])
		}
	case "except":
		zones, err := parseZones(c, c.RemainingArgs(), "ZONE")
		if err != nil {
			return err
		}
		if len(zones) == 0 {
			return c.Err("except needs at least one ZONE")
		}
		t.except = zones
	case "tls":
		args := c.RemainingArgs()
		if len(args) > 3 {
			return c.Err("tls takes at most CERT KEY CA")
		}
		root := dnsserver.GetConfig(c).Root
		for i := range args {
			if !filepath.IsAbs(args[i]) && root != "" {
				args[i] = filepath.Join(root, args[i])
			}
		}
		cfg, err := pkgtls.NewTLSConfigFromArgs(args...)
		if err != nil {
			return c.Errf("tls: %v", err)
		}
		t.tlsConfig = cfg
	case "tls_servername":
		args := c.RemainingArgs()
		if len(args) != 1 {
			return c.Err("tls_servername needs one NAME")
		}
		t.tlsServerName = args[0]
	case "force_tcp", "prefer_udp":
		if c.NextArg() {
			return c.Errf("%s takes no arguments", prop)
		}
		if prop == "force_tcp" {
			t.opts.ForceTCP = true
		} else {
			t.opts.PreferUDP = true
		}
		if t.opts.ForceTCP && t.opts.PreferUDP {
			return c.Errf("tier %q: force_tcp and prefer_udp contradict each other", t.name)
		}
	case "tier", "failover", "timeout", "attempt_timeout", "hedge", "health_check", "standby_probe", "fall", "rise", "all_down", "max_concurrent", "failover_memory":
		return c.Errf("%s belongs at the top of the upstreamtier block, not in tier %q", prop, t.name)
	default:
		return c.Errf("tier %q: unknown property %q; expected one of %s", t.name, prop, tierProperties)
	}
	return nil
}

// to is one upstream address of a tier, parsed.
type to struct {
	arg        string // as written in the Corefile
	transport  string
	hostport   string
	serverName string
}

// parseTos expands the TO arguments of a tier, rejecting duplicates.
func parseTos(c *caddy.Controller, tier string, args []string) ([]to, error) {
	var tos []to
	for _, arg := range args {
		trans, hosts, serverName, err := parseTo(arg)
		if err != nil {
			return nil, c.Errf("tier %q: %v", tier, err)
		}
		for _, h := range hosts {
			for _, prev := range tos {
				if prev.hostport == h && prev.transport == trans {
					return nil, c.Errf("tier %q: upstream %s listed twice", tier, arg)
				}
			}
			tos = append(tos, to{arg: arg, transport: trans, hostport: h, serverName: serverName})
		}
	}
	return tos, nil
}

// addUpstreams makes the tier's upstreams, applying its transport options.
func addUpstreams(c *caddy.Controller, ut *UpstreamTier, t *Tier, tos []to) error {
	hasTLS := false
	for _, to := range tos {
		u := newUpstream(to.hostport, to.transport, t, ut.hc)
		if to.transport == transport.TLS {
			hasTLS = true
			cfg, err := tierTLSConfig(t, to.serverName)
			if err != nil {
				return c.Errf("tier %q: %s: %v", t.name, to.arg, err)
			}
			u.proxy.SetTLSConfig(cfg)
		}
		t.upstreams = append(t.upstreams, u)
	}
	if !hasTLS && (t.tlsConfig != nil || t.tlsServerName != "") {
		return c.Errf("tier %q: tls options given but no upstream is tls://", t.name)
	}
	return nil
}

// tierTLSConfig returns the TLS client configuration of one DoT upstream.
// Certificates are always verified: against the system roots, or the CA
// given with the tier's tls option.
func tierTLSConfig(t *Tier, serverName string) (*tls.Config, error) {
	if serverName != "" && t.tlsServerName != "" {
		return nil, fmt.Errorf("server name given twice: %%%s and tls_servername %s", serverName, t.tlsServerName)
	}
	cfg := new(tls.Config)
	if t.tlsConfig != nil {
		cfg = t.tlsConfig.Clone()
	}
	cfg.ServerName = serverName + t.tlsServerName
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	return cfg, nil
}

// parseTo expands one TO argument: IP[:port], dns://IP[:port],
// tls://IP[%servername][:port] or a resolv.conf-style file.
func parseTo(to string) (trans string, hosts []string, serverName string, err error) {
	trans, rest := parse.Transport(to)
	switch trans {
	case transport.DNS, transport.TLS:
	default:
		return "", nil, "", fmt.Errorf("%s: transport %s:// is not supported; expected IP[:port], dns://IP[:port], tls://IP[%%name][:port] or a resolv.conf file", to, trans)
	}
	if strings.Contains(rest, "%") {
		if trans != transport.TLS {
			return "", nil, "", fmt.Errorf("%s: a server name (%%name) is only for tls:// upstreams", to)
		}
		if rest, serverName = splitServerName(rest); serverName == "" {
			return "", nil, "", fmt.Errorf("%s: empty server name after %%", to)
		}
	}
	expanded, err := parse.HostPortOrFile(trans + "://" + rest)
	if err != nil {
		return "", nil, "", fmt.Errorf("%s: %v; expected IP[:port], dns://IP[:port], tls://IP[%%name][:port] or a resolv.conf file", to, err)
	}
	for _, e := range expanded {
		_, h := parse.Transport(e)
		if err := checkHostPort(h); err != nil {
			return "", nil, "", fmt.Errorf("%s: %v", to, err)
		}
		hosts = append(hosts, h)
	}
	return trans, hosts, serverName, nil
}

// splitServerName splits "IP%name[:port]" into "IP[:port]" and "name"; for
// IPv6 both "[IP%name]:port" and "[IP]%name:port" are accepted.
func splitServerName(s string) (host, name string) {
	i := strings.LastIndex(s, "%")
	host, name = s[:i], s[i+1:]
	if k := strings.Index(name, "]"); k >= 0 {
		return host + "]" + name[k+1:], name[:k]
	}
	if j := strings.LastIndex(name, ":"); j >= 0 {
		host += name[j:]
		name = name[:j]
	}
	return host, name
}

// checkHostPort rejects what parse.HostPortOrFile lets through: ports that
// are not numbers between 1 and 65535.
func checkHostPort(hostport string) error {
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("port %q is not a number between 1 and 65535", port)
	}
	return nil
}

// parseZones normalizes zone names, rejecting what is not a domain name.
func parseZones(c *caddy.Controller, args []string, what string) ([]string, error) {
	var zones []string
	for _, a := range args {
		if a == "{" {
			return nil, c.Errf("unexpected '{' after %s", what)
		}
		z := plugin.Host(a).NormalizeExact()
		if len(z) == 0 {
			return nil, c.Errf("%s %q is not a valid zone", what, a)
		}
		if _, ok := dns.IsDomainName(z[0]); !ok {
			return nil, c.Errf("%s %q is not a valid zone", what, a)
		}
		zones = append(zones, z...)
	}
	return zones, nil
}

// parseFailover reads "failover RCODE...".
func parseFailover(c *caddy.Controller) ([]int, error) {
	args := c.RemainingArgs()
	if len(args) == 0 {
		return nil, c.Err("failover needs at least one RCODE, e.g. SERVFAIL REFUSED")
	}
	var rcodes []int
	for _, a := range args {
		rc, ok := dns.StringToRcode[strings.ToUpper(a)]
		if !ok {
			return nil, c.Errf("failover: %q is not an rcode; expected names like SERVFAIL, REFUSED, NXDOMAIN", a)
		}
		if rc == dns.RcodeSuccess {
			return nil, c.Err("failover: NOERROR is an answer, not a failure")
		}
		rcodes = append(rcodes, rc)
	}
	return rcodes, nil
}

// parseDuration reads one positive duration argument.
func parseDuration(c *caddy.Controller) (time.Duration, error) {
	return durationArgs(c, c.Val(), c.RemainingArgs())
}

// durationArgs reads the arguments of prop as exactly one positive duration.
func durationArgs(c *caddy.Controller, prop string, args []string) (time.Duration, error) {
	if len(args) != 1 {
		return 0, c.Errf("%s needs one DURATION, e.g. 2s or 500ms", prop)
	}
	d, err := time.ParseDuration(args[0])
	if err != nil {
		return 0, c.Errf("%s: %q is not a duration, e.g. 2s or 500ms", prop, args[0])
	}
	if d <= 0 {
		return 0, c.Errf("%s must be positive, got %s", prop, args[0])
	}
	return d, nil
}

// parseCount reads one count argument between 1 and most.
func parseCount(c *caddy.Controller, most int) (int, error) {
	prop := c.Val()
	args := c.RemainingArgs()
	if len(args) != 1 {
		return 0, c.Errf("%s needs one number N", prop)
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > most {
		return 0, c.Errf("%s: %q is not a number between 1 and %d", prop, args[0], most)
	}
	return n, nil
}

// durationOrOff reads the property's one argument: a positive DURATION, or
// off, which gives 0.
func durationOrOff(c *caddy.Controller) (time.Duration, error) {
	prop, args := c.Val(), c.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		return 0, nil
	}
	return durationArgs(c, prop, args)
}

// parseMemory reads "failover_memory DURATION [SIZE]" or "failover_memory
// off", which gives a TTL of 0.
func parseMemory(c *caddy.Controller) (time.Duration, int, error) {
	args := c.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		return 0, 0, nil
	}
	if len(args) < 1 || len(args) > 2 {
		return 0, 0, c.Err("failover_memory needs a DURATION and optionally a SIZE, e.g. 5s 10000, or off")
	}
	ttl, err := durationArgs(c, "failover_memory", args[:1])
	if err != nil {
		return 0, 0, err
	}
	size := defaultMemorySize
	if len(args) == 2 {
		if size, err = strconv.Atoi(args[1]); err != nil || size < 1 || size > 1<<24 {
			return 0, 0, c.Errf("failover_memory: SIZE %q is not a number between 1 and %d", args[1], 1<<24)
		}
	}
	return ttl, size, nil
}

// parseHealthCheck reads "health_check INTERVAL [domain NAME] [no_rec]".
func parseHealthCheck(c *caddy.Controller, hc *healthCheck) error {
	args := c.RemainingArgs()
	if len(args) == 0 {
		return c.Err("health_check needs an INTERVAL, e.g. 500ms, then optionally domain NAME and no_rec")
	}
	d, err := durationArgs(c, "health_check", args[:1])
	if err != nil {
		return err
	}
	hc.interval = d
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "no_rec":
			hc.noRec = true
		case "domain":
			i++
			if i == len(args) {
				return c.Err("health_check: domain needs a NAME")
			}
			if _, ok := dns.IsDomainName(args[i]); !ok {
				return c.Errf("health_check: %q is not a domain name", args[i])
			}
			hc.domain = dns.Fqdn(args[i])
		default:
			return c.Errf("health_check: unknown option %q; expected domain NAME or no_rec", args[i])
		}
	}
	return nil
}

func rcodeSet(rcodes []int) map[int]bool {
	s := make(map[int]bool, len(rcodes))
	for _, rc := range rcodes {
		s[rc] = true
	}
	return s
}
