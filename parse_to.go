package upstreamtier

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/coredns/coredns/plugin/pkg/parse"
	"github.com/coredns/coredns/plugin/pkg/transport"

	"github.com/miekg/dns"
)

// to is one upstream address of a tier, parsed.
type to struct {
	arg        string // as written in the Corefile
	transport  string
	hostport   string // normalized: the same server is always written the same
	serverName string
	name       string // a host name, resolved at startup (hostport is then name:port)
	port       uint16 // the host name's port
}

// key names the server to: the same key twice is one server with two
// health states.
func (t to) key() string { return t.transport + "://" + t.hostport }

const toForms = "expected IP[:port], dns://IP[:port], tls://IP[%name][:port], https://IP[%name][:port], quic://IP[%name][:port] or a resolv.conf file"

// encryptedForms names the transports with certificates, in messages.
const encryptedForms = "tls://, https:// and quic://"

// encrypted reports whether trans carries DNS inside TLS (DoT, DoH, DoQ),
// with a certificate to verify.
func encrypted(trans string) bool {
	return trans == transport.TLS || trans == transport.HTTPS || trans == transport.QUIC
}

// parseTos expands the TO arguments of a tier written on line, refusing an
// upstream already listed, in this tier or another.
func (p *parser) parseTos(tier string, line int, args []string) ([]to, error) {
	var tos []to
	for _, arg := range args {
		expanded, err := parseTo(arg)
		if err != nil {
			return nil, p.c.Errf("tier %q: %v", tier, err)
		}
		for _, to := range expanded {
			prev, ok := p.upstreams[to.key()]
			switch {
			case ok && prev.name == tier:
				return nil, p.c.Errf("tier %q: upstream %s listed twice", tier, arg)
			case ok:
				return nil, p.c.Errf("tier %q: upstream %s (%s) is already in tier %q on line %d: one server has one health state, so list it in one tier", tier, arg, to.hostport, prev.name, prev.line)
			}
			p.upstreams[to.key()] = tierLine{tier, line}
			tos = append(tos, to)
		}
	}
	return tos, nil
}

// parseTo expands one TO argument: IP[:port], dns://IP[:port],
// tls://, https:// or quic://IP[%servername][:port], or a resolv.conf-style
// file.
func parseTo(arg string) ([]to, error) {
	trans, rest := parse.Transport(arg)
	if i := strings.Index(rest, "://"); i >= 0 && trans == transport.DNS {
		return nil, fmt.Errorf("%s: unknown transport %s://; %s", arg, rest[:i], toForms)
	}
	switch {
	case trans != transport.DNS && !encrypted(trans):
		return nil, fmt.Errorf("%s: transport %s:// is not supported; %s", arg, trans, toForms)
	case trans == transport.HTTPS && strings.Contains(rest, "/"):
		return nil, fmt.Errorf("%s: a path is not allowed: DNS over HTTPS is asked at /dns-query; write https://IP[%%name][:port]", arg)
	}
	if err := checkBrackets(rest); err != nil {
		return nil, fmt.Errorf("%s: %v", arg, err)
	}
	serverName := ""
	if encrypted(trans) && strings.Contains(rest, "%") {
		var err error
		if rest, serverName, err = splitServerName(trans, rest); err != nil {
			return nil, fmt.Errorf("%s: %v", arg, err)
		}
	}
	if name, port, ok := parseHostName(trans, rest); ok {
		n, err := parsePort(port)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", arg, err)
		}
		return []to{{arg: arg, transport: trans, hostport: net.JoinHostPort(name, strconv.Itoa(int(n))), serverName: serverName, name: name, port: n}}, nil
	}
	expanded, err := parse.HostPortOrFile(trans + "://" + rest)
	if err != nil {
		return nil, fmt.Errorf("%s: %v; %s", arg, err, toForms)
	}
	var tos []to
	for _, e := range expanded {
		_, h := parse.Transport(e)
		ap, err := parseHostPort(h, trans)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", arg, err)
		}
		tos = append(tos, to{arg: arg, transport: trans, hostport: ap.String(), serverName: serverName})
	}
	return tos, nil
}

// checkBrackets refuses what parse.HostPortOrFile would repair: "[::1:53"
// is read there as the address ::1:53.
func checkBrackets(s string) error {
	open, shut := strings.Count(s, "["), strings.Count(s, "]")
	if open == 0 && shut == 0 {
		return nil
	}
	after := s[strings.Index(s, "]")+1:]
	if open != 1 || shut != 1 || s[0] != '[' || (after != "" && after[0] != ':' && after[0] != '%') {
		return errors.New("unbalanced brackets: write an IPv6 address as [IP] or [IP]:port")
	}
	return nil
}

// splitServerName splits "IP%name[:port]" into "IP[:port]" and "name"; for
// IPv6 both "[IP%name]:port" and "[IP]%name:port" are accepted.
func splitServerName(trans, s string) (host, name string, err error) {
	i := strings.LastIndex(s, "%")
	host, name = s[:i], s[i+1:]
	if k := strings.Index(name, "]"); k >= 0 {
		host, name = host+"]"+name[k+1:], name[:k]
	} else if j := strings.LastIndex(name, ":"); j >= 0 {
		if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
			// ::1%name:853 could only be read as [::1:853]:853.
			return "", "", fmt.Errorf("an IPv6 address with a port needs brackets: write %s://[%s]%%%s", trans, host, name)
		}
		host, name = host+name[j:], name[:j]
	}
	if name == "" {
		return "", "", errors.New("empty server name after %")
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return "", "", fmt.Errorf("server name %q is not a host name", name)
	}
	return host, name, nil
}

// parseHostPort reads an expanded host:port and normalizes it, refusing
// what parse.HostPortOrFile lets through: ports that are not numbers
// between 1 and 65535, a %zone anywhere but on a link-local IPv6 address
// of a plain DNS upstream, and a link-local address without one.
func parseHostPort(hostport, trans string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	n, err := parsePort(port)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ip, zone, _ := strings.Cut(host, "%")
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		// Only a resolv.conf file gets this far with a name: it is not
		// resolved, least of all through the system resolver on each dial.
		return netip.AddrPort{}, fmt.Errorf("nameserver %q is not an IP address; a resolv.conf file lists IP addresses; write a host name as a tier's TO, with resolver", ip)
	}
	addr = addr.Unmap()
	linkLocal := addr.Is6() && addr.IsLinkLocalUnicast()
	switch {
	case linkLocal && encrypted(trans):
		return netip.AddrPort{}, fmt.Errorf("link-local address %s cannot be a %s:// upstream: its %%zone would be read as the server name; use a global or unique local address", ip, trans)
	case zone != "" && !linkLocal:
		return netip.AddrPort{}, errors.New("a server name (%name) is only for " + encryptedForms + " upstreams, and a %zone only for link-local IPv6 addresses")
	case linkLocal && zone == "":
		return netip.AddrPort{}, fmt.Errorf("link-local address %s needs its interface: write [%s%%eth0]:%s with the interface's name", ip, ip, port)
	}
	if err := checkUnicast(addr, zone); err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(addr.WithZone(zone), n), nil
}

// parsePort reads a port number between 1 and 65535.
func parsePort(port string) (uint16, error) {
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not a number between 1 and 65535", port)
	}
	return uint16(n), nil
}

// ipv4Compatible is ::/96, deprecated (RFC 4291) and never a server's
// address: there, ::1:5301 is [::1]:5301 written without brackets.
var ipv4Compatible = netip.MustParsePrefix("::/96")

// checkUnicast refuses addresses no server answers from: the unspecified
// address, multicast, IPv4-compatible IPv6, and a zone that names no
// interface of this machine.
func checkUnicast(addr netip.Addr, zone string) error {
	switch {
	case addr.IsUnspecified():
		return fmt.Errorf("%s is the unspecified address, not a server's", addr)
	case addr.IsMulticast():
		return fmt.Errorf("%s is a multicast address, not a server's", addr)
	case ipv4Compatible.Contains(addr) && addr != netip.IPv6Loopback():
		return fmt.Errorf("%s is not a server's address; an IPv6 address with a port is written [IP]:port, e.g. [::1]:5301", addr)
	}
	if zone != "" {
		if _, err := net.InterfaceByName(zone); err != nil {
			return fmt.Errorf("%%%s: no such network interface on this machine", zone)
		}
	}
	return nil
}

// addUpstreams makes the tier's upstreams;
// a host name's are made at startup, once it is resolved (hostname.go).
func (p *parser) addUpstreams(t *Tier, line int) {
	ut := p.ut
	for _, to := range p.tos {
		if to.name != "" {
			ut.hostNames = append(ut.hostNames, &hostName{name: to.name, port: to.port, transport: to.transport, serverName: to.serverName, tier: t, at: fmt.Sprintf("%s:%d", p.c.File(), line)})
			continue
		}
		t.add(newUpstream(to.hostport, to.transport, to.serverName, t, ut))
	}
}
