package upstreamtier

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// The properties that say how upstreams are connected to, as forward's
// of the same names.

// Bounds of the connection durations. An idle connection kept less than
// 100 ms is a dial per query at any rate a cache misses at; one kept more
// than an hour outlives every resolver's idle timeout.
var (
	expireBounds = bounds{100 * time.Millisecond, time.Hour}
	maxAgeBounds = bounds{time.Second, 24 * time.Hour}
)

// sourceAddress reads "source_address IP": the address queries and probes
// are sent from.
func (p *parser) sourceAddress() error {
	args := p.c.RemainingArgs()
	if len(args) != 1 {
		return p.c.Err("source_address needs one IP address of this machine")
	}
	a, err := netip.ParseAddr(args[0])
	if err != nil || a.Zone() != "" {
		return p.c.Errf("source_address %q is not an IP address", args[0])
	}
	a = a.Unmap()
	if err := checkUnicast(a, ""); err != nil {
		return p.c.Errf("source_address: %v", err)
	}
	p.ut.pool.Source = net.IP(a.AsSlice())
	return nil
}

// checkSourceFamily refuses a source address of one IP family with an
// upstream of the other, which it could never reach.
func (p *parser) checkSourceFamily() error {
	src := p.ut.pool.Source
	if src == nil {
		return nil
	}
	for _, t := range p.ut.tiers {
		for _, u := range t.upstreams() {
			ap, err := netip.ParseAddrPort(u.addr)
			if err == nil && ap.Addr().Is4() != (src.To4() != nil) {
				return p.errAt(p.lines["source_address"], "source_address %s cannot reach upstream %s of tier %q: the IP families differ", src, u.Addr(), t.name)
			}
		}
	}
	return nil
}

// checkSource refuses, at startup, a source address that is not this
// machine's: every query would fail to be sent. It binds a socket to the
// address and sends nothing.
func checkSource(src net.IP) error {
	if src == nil {
		return nil
	}
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: src})
	if err != nil {
		return fmt.Errorf("source_address %s is not an address of this machine: %v", src, err)
	}
	return c.Close()
}

func (p *parser) expire() (err error) {
	p.ut.pool.Expire, err = p.duration(expireBounds)
	return err
}

func (p *parser) maxAge() (err error) {
	p.ut.pool.MaxAge, err = p.duration(maxAgeBounds)
	return err
}

// checkMaxAge refuses a max_age below expire, as forward does: idle
// connections would be dropped for their age before their idleness.
func (p *parser) checkMaxAge() error {
	o := p.ut.pool
	if o.MaxAge > 0 && o.Expire > 0 && o.MaxAge < o.Expire {
		return p.errAt(p.lines["max_age"], "max_age %s is shorter than expire %s: a connection would end before it could go idle", o.MaxAge, o.Expire)
	}
	return nil
}

// maxIdleConns reads "max_idle_conns N": idle connections kept per
// upstream and protocol; 0 is the default, as many as are in use.
func (p *parser) maxIdleConns() (err error) {
	p.ut.pool.MaxIdle, err = p.count(0, 65535)
	return err
}

// dohMethod reads "doh_method GET|POST" for the tier's https:// upstreams.
func (p *parser) dohMethod() error {
	args := p.c.RemainingArgs()
	if len(args) != 1 || (args[0] != http.MethodGet && args[0] != http.MethodPost) {
		return p.c.Err("doh_method needs GET or POST")
	}
	for _, to := range p.tos {
		if to.transport == "https" {
			p.tier.dohMethod = args[0]
			return nil
		}
	}
	return p.c.Errf("tier %q: doh_method is for https:// upstreams, and the tier has none", p.tier.name)
}
