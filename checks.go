package upstreamtier

import (
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/forward"
	"github.com/coredns/coredns/plugin/pkg/transport"
)

// The checks that need the server block as CoreDNS built it: they run at
// startup and name the Corefile line like a parse error.

// checkServer runs the startup checks against the server block's config.
func (p *parser) checkServer(cfg *dnsserver.Config) error {
	if err := p.checkForward(cfg.Handler("forward")); err != nil {
		return err
	}
	if err := checkSource(p.ut.pool.Source); err != nil {
		return p.errAt(p.lines["source_address"], "%v", err)
	}
	return p.checkLoop(cfg)
}

// checkForward refuses a forward in the same server block whose zone
// upstreamtier answers entirely: upstreamtier comes first in the plugin
// chain (plugin.cfg puts it right before forward), so forward would never
// be asked.
func (p *parser) checkForward(h plugin.Handler) error {
	f, ok := h.(*forward.Forward)
	if !ok || len(p.ut.handOn) > 0 || p.ut.handOnNodata {
		return nil // next and next_on_nodata hand queries on to forward
	}
	zone := forwardZone(f)
	if zone == "" || !inside(zone, p.ut.from) {
		return nil
	}
	for _, e := range p.ut.except {
		if inside(e, []string{zone}) || inside(zone, []string{e}) {
			return nil
		}
	}
	return p.errAt(p.line, "upstreamtier and forward both claim %s in this server block: upstreamtier answers it first, so forward is never asked; remove one, or narrow upstreamtier's FROM", zone)
}

// forwardZone returns forward's zone, which forward does not export, by
// reflection (read only); "" if this CoreDNS version keeps it elsewhere.
// That cannot pass unnoticed: cmd/coredns's TestStartupForwardOverlap runs this
// build on a Corefile where both claim "." and fails without the error.
func forwardZone(f *forward.Forward) string {
	v := reflect.ValueOf(f).Elem().FieldByName("from")
	if !v.IsValid() || v.Kind() != reflect.String {
		return ""
	}
	return v.String()
}

// checkLoop refuses an upstream that is this server block's own listener:
// every query sent there would come back, until the budget is spent.
func (p *parser) checkLoop(cfg *dnsserver.Config) error {
	for _, t := range p.ut.tiers {
		for _, u := range t.upstreams() {
			if u.scheme == transport.DNS && listensOn(cfg, u.addr) {
				return p.errAt(p.upstreams[transport.DNS+"://"+u.addr].line, "tier %q: upstream %s is this server itself: each query would loop back to it", t.name, u.addr)
			}
		}
	}
	return nil
}

// listensOn reports whether the server block listens on hostport.
func listensOn(cfg *dnsserver.Config, hostport string) bool {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil || strconv.Itoa(int(ap.Port())) != cfg.Port {
		return false
	}
	hosts := cfg.ListenHosts
	if len(hosts) == 0 || slices.Contains(hosts, "") {
		return isLocal(ap.Addr())
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(h); err == nil && a.Unmap() == ap.Addr() {
			return true
		}
	}
	return false
}

// isLocal reports whether a is an address of this machine.
func isLocal(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a.WithZone("") {
				return true
			}
		}
	}
	return false
}
