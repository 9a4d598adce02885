package upstreamtier

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/coredns/plugin/pkg/transport"

	"github.com/miekg/dns"
)

// hostName is a TO written as a host name. Each of its addresses is an
// upstream of the tier; they are looked up at startup and again whenever
// their records expire, so that a Kubernetes Service or a resolver behind
// DNS-based failover is followed without a restart. A name is never
// resolved per dial, and never through Go's resolver.
type hostName struct {
	name       string // fully qualified
	port       uint16
	transport  string
	serverName string // %name, if written
	tier       *Tier
	at         string // FILE:LINE of its tier line, for errors

	addrs []netip.Addr // the current addresses; owned by its follower
	ttl   time.Duration
}

// Re-resolution happens when the records expire, within these bounds: a
// TTL of 0 must not turn into a query loop, and a day-long TTL should not
// hide an address change for that long.
const (
	minReresolve = time.Second
	maxReresolve = time.Hour
)

// resolver looks host names up at the servers of the resolver option, or
// the nameservers of /etc/resolv.conf.
type resolver struct {
	servers []string // IP:port
	timeout time.Duration
}

// systemResolver returns the nameservers of /etc/resolv.conf.
func systemResolver() (resolver, error) {
	cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return resolver{}, fmt.Errorf("no resolver option, and the system resolver: %v", err)
	}
	r := resolver{timeout: 2 * time.Second}
	for _, s := range cfg.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, cfg.Port))
	}
	return r, nil
}

// lookup returns the name's A and AAAA addresses, sorted, and how long
// they may be kept.
func (r resolver) lookup(name string) ([]netip.Addr, time.Duration, error) {
	var addrs []netip.Addr
	ttl := maxReresolve
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m, err := r.exchange(name, qtype)
		if err != nil {
			return nil, 0, err
		}
		if m.Rcode != dns.RcodeSuccess {
			return nil, 0, fmt.Errorf("%s for %s", rcodeName(m.Rcode), dns.TypeToString[qtype])
		}
		for _, rr := range m.Answer {
			var ip net.IP
			switch rr := rr.(type) {
			case *dns.A:
				ip = rr.A
			case *dns.AAAA:
				ip = rr.AAAA
			default:
				continue
			}
			if a, ok := netip.AddrFromSlice(ip); ok && checkUnicast(a.Unmap(), "") == nil {
				addrs = append(addrs, a.Unmap())
				ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
			}
		}
	}
	if len(addrs) == 0 {
		return nil, 0, errors.New("no A or AAAA record of a server address")
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs), max(ttl, minReresolve), nil
}

// exchange asks the resolver's servers in turn, over TCP when the UDP
// answer is truncated.
func (r resolver) exchange(name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	err := errors.New("no resolver")
	for _, s := range r.servers {
		c := dns.Client{Timeout: r.timeout}
		m, _, e := c.Exchange(q, s)
		if e == nil && m.Truncated {
			c.Net = "tcp"
			m, _, e = c.Exchange(q, s)
		}
		if e == nil {
			return m, nil
		}
		err = e
	}
	return nil, err
}

// resolveHostNames looks every host name up once, at startup, and makes
// an upstream of each address. A name that does not resolve is an error
// naming its line.
func (ut *UpstreamTier) resolveHostNames() error {
	if len(ut.hostNames) == 0 {
		return nil
	}
	if len(ut.resolver.servers) == 0 {
		r, err := systemResolver()
		if err != nil {
			return err
		}
		ut.resolver = r
	}
	for _, h := range ut.hostNames {
		addrs, ttl, err := ut.lookup(h)
		if err != nil {
			return fmt.Errorf("%s - Error during parsing: tier %q: host name %s does not resolve: %v", h.at, h.tier.name, h.name, err)
		}
		for _, a := range addrs {
			if other := ut.upstreamAt(h.transport, h.hostport(a)); other != nil {
				return fmt.Errorf("%s - Error during parsing: tier %q: host name %s resolves to %s, already an upstream of tier %q: one server has one health state, so list it in one tier", h.at, h.tier.name, h.name, a, other.tier.name)
			}
			h.tier.add(ut.newHostUpstream(h, a))
		}
		h.addrs, h.ttl = addrs, ttl
	}
	return nil
}

// hostport returns the address of the upstream at a.
func (h *hostName) hostport(a netip.Addr) string {
	return netip.AddrPortFrom(a, h.port).String()
}

// newHostUpstream makes the upstream of h at address a.
func (ut *UpstreamTier) newHostUpstream(h *hostName, a netip.Addr) *Upstream {
	sn := h.serverName
	if encrypted(h.transport) && sn == "" && h.tier.tlsServerName == "" {
		sn = strings.TrimSuffix(h.name, ".") // the name written is the one to verify
	}
	u := newUpstream(h.hostport(a), h.transport, sn, h.tier, ut)
	u.host = h
	return u
}

// upstreamAt returns the upstream of any tier with this transport and
// address, or nil.
func (ut *UpstreamTier) upstreamAt(trans, hostport string) *Upstream {
	for _, t := range ut.tiers {
		for _, u := range t.upstreams() {
			if u.scheme == trans && u.addr == hostport {
				return u
			}
		}
	}
	return nil
}

// lookup returns h's addresses, those of source_address's IP family when
// it is set: the others could never be reached.
func (ut *UpstreamTier) lookup(h *hostName) ([]netip.Addr, time.Duration, error) {
	addrs, ttl, err := ut.resolver.lookup(h.name)
	src := ut.pool.Source
	if err != nil || src == nil {
		return addrs, ttl, err
	}
	addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool { return a.Is4() != (src.To4() != nil) })
	if len(addrs) == 0 {
		return nil, 0, fmt.Errorf("no address of source_address %s's IP family", src)
	}
	return addrs, ttl, nil
}

// follow looks h up again each time its records expire, until shutdown.
// A failed lookup keeps the last good addresses, and says so.
func (ut *UpstreamTier) follow(h *hostName) {
	for ut.life.sleep(h.ttl) {
		addrs, ttl, err := ut.lookup(h)
		if err != nil {
			log.Warningf("host name %s of tier %s does not resolve: %v; keeping %v", h.name, h.tier.name, err, h.addrs)
			resolveFailures.WithLabelValues(ut.state.server, h.tier.name, h.name).Inc()
			h.ttl = min(max(h.ttl, minReresolve), 30*time.Second)
			continue
		}
		h.ttl = ttl
		if !slices.Equal(addrs, h.addrs) {
			ut.readdress(h, addrs)
		}
	}
}

// readdress makes h's upstreams those at addrs: an address that stays
// keeps its upstream and health; a new one is a new upstream, up until
// evidence says otherwise; one that went is retired, after the queries
// that may still use it have had their budget.
func (ut *UpstreamTier) readdress(h *hostName, addrs []netip.Addr) {
	h.tier.listMu.Lock()
	defer h.tier.listMu.Unlock()
	var next []*Upstream
	for _, u := range h.tier.upstreams() {
		ap, _ := netip.ParseAddrPort(u.addr)
		if u.host == h && !slices.Contains(addrs, ap.Addr()) {
			u.retired.Store(true)
			time.AfterFunc(ut.timeout, u.stop)
			upstreamHealthy.DeleteLabelValues(ut.state.server, h.tier.name, u.Addr())
			continue
		}
		next = append(next, u)
	}
	for _, a := range addrs {
		if slices.Contains(h.addrs, a) {
			continue
		}
		if other := ut.upstreamAt(h.transport, h.hostport(a)); other != nil {
			log.Warningf("host name %s of tier %s now resolves to %s, already an upstream of tier %s: left to that tier", h.name, h.tier.name, a, other.tier.name)
			continue
		}
		u := ut.newHostUpstream(h, a)
		u.start(ut.dialing())
		upstreamHealthy.WithLabelValues(ut.state.server, h.tier.name, u.Addr()).Set(1)
		ut.initUpstreamMetrics(u)
		next = append(next, u)
		ut.life.goProbe(u.standbyLoop)
	}
	h.tier.list.Store(&next) // queries see the old list or the new one
	log.Infof("host name %s of tier %s now resolves to %v (was %v)", h.name, h.tier.name, addrs, h.addrs)
	h.addrs = addrs
	ut.state.update()
}

// parseHostName reads TO as a host name, "name[:port]", if it is one: at
// least two labels, the last not a number (which tells it from an IPv4
// address), and not a file.
func parseHostName(trans, rest string) (name, port string, ok bool) {
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		host, port = rest, defaultPort(trans)
	}
	if strings.ContainsAny(host, "/[]%:") || !strings.Contains(strings.TrimSuffix(host, "."), ".") {
		return "", "", false
	}
	if _, ok := dns.IsDomainName(host); !ok {
		return "", "", false
	}
	labels := dns.SplitDomainName(host)
	if _, err := strconv.Atoi(labels[len(labels)-1]); err == nil {
		return "", "", false
	}
	if _, err := os.Stat(rest); err == nil {
		return "", "", false
	}
	return dns.Fqdn(strings.ToLower(host)), port, true
}

// defaultPort returns the port of trans when none is written.
func defaultPort(trans string) string {
	switch trans {
	case transport.TLS:
		return transport.TLSPort
	case transport.HTTPS:
		return transport.HTTPSPort
	case transport.QUIC:
		return transport.QUICPort
	}
	return transport.Port
}
