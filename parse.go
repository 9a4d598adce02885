package upstreamtier

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"

	"github.com/miekg/dns"
)

// The Corefile: the parser of the upstreamtier block, its top-level
// properties, the tier line and its block, and the value readers. The
// property names are in properties.go, the upstream addresses in
// parse_to.go, TLS in parse_tls.go, connections in parse_conn.go.

// parseUpstreamTier reads the one upstreamtier stanza of a server block.
func parseUpstreamTier(c *caddy.Controller) (*UpstreamTier, error) {
	return newParser(c).parse()
}

// parser reads one server block's upstreamtier stanza. It remembers the
// line of each property, so that a check that needs the whole block names
// the line the problem is on, not the block's closing brace.
type parser struct {
	c     *caddy.Controller
	ut    *UpstreamTier
	line  int            // the upstreamtier line
	lines map[string]int // the line of each top-level property given

	tier        *Tier         // the tier whose line and block are being read
	tos         []to          // its upstreams
	exceptLines map[*Tier]int // the line of each tier's except

	upstreams map[string]tierLine // every upstream so far, by upstreamKey
}

// tierLine is where a tier was written.
type tierLine struct {
	name string
	line int
}

func newParser(c *caddy.Controller) *parser {
	return &parser{c: c, lines: map[string]int{}, exceptLines: map[*Tier]int{}, upstreams: map[string]tierLine{}}
}

func (p *parser) parse() (*UpstreamTier, error) {
	for p.c.Next() {
		if p.ut != nil {
			return nil, p.c.Err("only one upstreamtier stanza per server block; put all tiers in it")
		}
		if err := p.stanza(); err != nil {
			return nil, err
		}
	}
	return p.ut, nil
}

// errAt returns a parse error for line, in the format of caddy's own.
func (p *parser) errAt(line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d - Error during parsing: %s", p.c.File(), line, fmt.Sprintf(format, args...))
}

func (p *parser) stanza() error {
	p.ut = newUpstreamTier()
	p.line = p.c.Line()
	if err := p.fromZones(p.c.RemainingArgs()); err != nil {
		return err
	}
	for p.c.NextBlock() {
		name := p.c.Val()
		prop, err := p.lookupProperty(atTop, name)
		if err != nil {
			return err
		}
		if p.lines[name] != 0 && !prop.repeat {
			return p.c.Errf("%s given twice", name)
		}
		p.lines[name] = p.c.Line()
		if err := prop.parse(p); err != nil {
			return err
		}
	}
	return p.finish()
}

// finish checks what needs the whole block, and derives the defaults that
// depend on other properties.
func (p *parser) finish() error {
	ut := p.ut
	if len(ut.tiers) == 0 {
		return p.errAt(p.line, "no tier defined: expected at least one 'tier NAME TO...' line in the upstreamtier block")
	}
	if p.lines["attempt_timeout"] == 0 {
		ut.attemptTimeout = min(defaultAttemptTimeout, ut.timeout)
	}
	if ut.attemptTimeout > ut.timeout {
		return p.errAt(p.lines["attempt_timeout"], "attempt_timeout %s is longer than timeout %s%s: one attempt cannot outlast the whole query", ut.attemptTimeout, ut.timeout, p.defaulted("timeout"))
	}
	if ut.hedge >= ut.attemptTimeout {
		return p.errAt(p.lines["hedge"], "hedge %s is not shorter than attempt_timeout %s%s: a hedge is sent while an attempt still waits", ut.hedge, ut.attemptTimeout, p.defaulted("attempt_timeout"))
	}
	if len(ut.except) > 0 && coversAll(ut.except, ut.from) {
		return p.errAt(p.lines["except"], "except %s covers all of FROM (%s): upstreamtier would never answer", strings.Join(ut.except, " "), strings.Join(ut.from, " "))
	}
	if z := outside(ut.except, ut.from); z != "" {
		return p.errAt(p.lines["except"], "except %s is outside FROM (%s): it changes nothing", z, strings.Join(ut.from, " "))
	}
	if p.lines["resolver"] != 0 && len(ut.hostNames) == 0 {
		return p.errAt(p.lines["resolver"], "resolver does nothing here: no upstream is a host name")
	}
	for _, t := range ut.tiers {
		for _, z := range t.except {
			if inside(z, ut.except) {
				return p.errAt(p.exceptLines[t], "tier %q: except %s changes nothing: the top-level except on line %d already leaves it to the next plugin", t.name, z, p.lines["except"])
			}
		}
	}
	if err := p.checkSourceFamily(); err != nil {
		return err
	}
	if err := p.checkMaxAge(); err != nil {
		return err
	}
	if ut.failover == nil {
		ut.failover = rcodeSet(defaultFailover)
	}
	ut.hc.limit, ut.hc.failover = ut.attemptTimeout, ut.failover
	ut.state.tiers = ut.tiers
	for _, t := range ut.tiers {
		ut.upstreams += len(t.upstreams())
	}
	return nil
}

// defaulted says " (the default)" when prop was not written.
func (p *parser) defaulted(prop string) string {
	if p.lines[prop] == 0 {
		return " (the default)"
	}
	return ""
}

// fromZones reads the FROM zones of the upstreamtier line.
func (p *parser) fromZones(args []string) error {
	for _, a := range args {
		if looksLikeAddress(a) {
			return p.c.Errf("FROM %q is an upstream address, not a zone: upstreams go in tier lines, as in upstreamtier [FROM...] { tier NAME %s }", a, a)
		}
	}
	from, err := parseZones(p.c, args, "FROM")
	if err != nil {
		return err
	}
	if err := p.inServerBlock(from); err != nil {
		return err
	}
	p.ut.from = plugin.OriginsFromArgsOrServerBlock(from, p.c.ServerBlockKeys)
	return nil
}

// inServerBlock refuses a FROM zone that shares no name with the server
// block's zones: CoreDNS never hands such a query to the block.
func (p *parser) inServerBlock(from []string) error {
	block := make([]string, 0, len(p.c.ServerBlockKeys))
	for _, k := range p.c.ServerBlockKeys {
		block = append(block, plugin.Host(k).NormalizeExact()...)
	}
	if len(block) == 0 {
		return nil
	}
	if z := outside(from, block); z != "" {
		return p.c.Errf("FROM %s is outside the server block's zones (%s): no query for it reaches this block", z, strings.Join(block, " "))
	}
	return nil
}

// The top-level properties.

func (p *parser) except() (err error) {
	p.ut.except, err = p.zones()
	return err
}

// zones reads the ZONE... arguments of except, refusing a zone inside
// another of the list.
func (p *parser) zones() ([]string, error) {
	zones, err := parseZones(p.c, p.c.RemainingArgs(), "ZONE")
	if err != nil {
		return nil, err
	}
	if len(zones) == 0 {
		return nil, p.c.Err("except needs at least one ZONE")
	}
	for i, z := range zones {
		others := append(slices.Clone(zones[:i]), zones[i+1:]...)
		if inside(z, others) {
			return nil, p.c.Errf("except: %s is listed twice, or inside another zone of the list", z)
		}
	}
	return zones, nil
}

func (p *parser) failover() error {
	rcodes, err := p.rcodes("failover", "e.g. SERVFAIL REFUSED")
	p.ut.failover = rcodeSet(rcodes)
	return err
}

// rcodes reads the RCODE... arguments of prop, which cannot be NOERROR.
func (p *parser) rcodes(prop, example string) ([]int, error) {
	args := p.c.RemainingArgs()
	if len(args) == 0 {
		return nil, p.c.Errf("%s needs at least one RCODE, %s", prop, example)
	}
	var rcodes []int
	for _, a := range args {
		rc, ok := dns.StringToRcode[strings.ToUpper(a)]
		if !ok {
			return nil, p.c.Errf("%s: %q is not an rcode; expected names like SERVFAIL, REFUSED, NXDOMAIN", prop, a)
		}
		if rc == dns.RcodeSuccess {
			return nil, p.c.Errf("%s: NOERROR is an answer, not a failure", prop)
		}
		if slices.Contains(rcodes, rc) {
			return nil, p.c.Errf("%s: %s listed twice", prop, a)
		}
		rcodes = append(rcodes, rc)
	}
	return rcodes, nil
}

// resolver reads "resolver IP[:port]...", the servers that resolve the
// host names among the upstreams.
func (p *parser) resolverProperty() error {
	args := p.c.RemainingArgs()
	if len(args) == 0 {
		return p.c.Err("resolver needs at least one IP[:port]")
	}
	for _, a := range args {
		hostport := a
		if addr, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil {
			hostport = netip.AddrPortFrom(addr, 53).String()
		}
		ap, err := parseHostPort(hostport, transport.DNS) // the checks of an upstream's address
		if err != nil {
			return p.c.Errf("resolver: %q is not IP or IP:port of a server: %v", a, err)
		}
		p.ut.resolver.servers = append(p.ut.resolver.servers, ap.String())
	}
	return nil
}

// next reads "next RCODE...": answers with those rcodes go to the next
// plugin instead of the client.
func (p *parser) next() error {
	rcodes, err := p.rcodes("next", "e.g. NXDOMAIN; for NODATA write next_on_nodata")
	p.ut.handOn = rcodeSet(rcodes)
	return err
}

func (p *parser) nextOnNodata() error {
	if p.c.NextArg() {
		return p.c.Err("next_on_nodata takes no arguments")
	}
	p.ut.handOnNodata = true
	return nil
}

func (p *parser) timeout() (err error) {
	p.ut.timeout, err = p.duration(timeoutBounds)
	return err
}

func (p *parser) attemptTimeout() (err error) {
	p.ut.attemptTimeout, err = p.duration(attemptBounds)
	return err
}

func (p *parser) hedge() error {
	d, err := p.durationOrOff(hedgeBounds)
	p.ut.hedge, p.ut.hedgeOff = d, d == 0
	return err
}

func (p *parser) standbyProbe() (err error) {
	p.ut.hc.standby, err = p.durationOrOff(standbyBounds)
	return err
}

// fall 0 means never mark down, as forward's max_fails 0.
func (p *parser) fall() (err error) {
	p.ut.hc.fall, err = p.count(0, 100)
	return err
}

func (p *parser) rise() (err error) {
	p.ut.hc.rise, err = p.count(1, 100)
	return err
}

func (p *parser) maxConcurrent() error {
	n, err := p.count(1, 1<<30)
	p.ut.maxConcurrent = int64(n)
	return err
}

func (p *parser) allDown() error {
	args := p.c.RemainingArgs()
	if len(args) != 1 || (args[0] != "servfail" && args[0] != "try") {
		return p.c.Err("all_down needs servfail or try")
	}
	p.ut.allDownTry = args[0] == "try"
	return nil
}

// failoverMemory reads "failover_memory DURATION [SIZE]" or "failover_memory off".
func (p *parser) failoverMemory() error {
	args := p.c.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		p.ut.memory = nil
		return nil
	}
	if len(args) < 1 || len(args) > 2 {
		return p.c.Err("failover_memory needs a DURATION and optionally a SIZE, e.g. 5s 10000, or off")
	}
	ttl, err := p.durationArg("failover_memory", args[0], memoryBounds)
	if err != nil {
		return err
	}
	size := defaultMemorySize
	if len(args) == 2 {
		if size, err = strconv.Atoi(args[1]); err != nil || size < 1 || size > 1<<24 {
			return p.c.Errf("failover_memory: SIZE %q is not a number between 1 and %d", args[1], 1<<24)
		}
	}
	p.ut.memory = newFailoverMemory(ttl, size)
	return nil
}

// healthCheck reads "health_check INTERVAL [domain NAME] [no_rec]".
func (p *parser) healthCheck() error {
	hc := p.ut.hc
	args := p.c.RemainingArgs()
	if len(args) == 0 {
		return p.c.Err("health_check needs an INTERVAL, e.g. 500ms, then optionally domain NAME and no_rec")
	}
	d, err := p.durationArg("health_check", args[0], intervalBounds)
	if err != nil {
		return err
	}
	hc.interval = d
	seen := map[string]bool{}
	for i := 1; i < len(args); i++ {
		opt := args[i]
		if seen[opt] {
			return p.c.Errf("health_check: %s given twice", opt)
		}
		seen[opt] = true
		switch opt {
		case "no_rec":
			hc.noRec = true
		case "domain":
			i++
			if i == len(args) {
				return p.c.Err("health_check: domain needs a NAME")
			}
			if _, ok := dns.IsDomainName(args[i]); !ok {
				return p.c.Errf("health_check: %q is not a domain name", args[i])
			}
			hc.domain, hc.served = dns.Fqdn(args[i]), true
		default:
			return p.c.Errf("health_check: unknown option %q; expected domain NAME or no_rec", opt)
		}
	}
	return nil
}

// The tier line and its block.

var tierName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// tierLine reads "tier NAME TO... [{ ... }]".
func (p *parser) tierLine() error {
	line := p.c.Line()
	args := p.c.RemainingArgs()
	if len(args) < 2 {
		return p.c.Err("tier needs a NAME and at least one upstream: tier NAME TO...")
	}
	name := args[0]
	if !tierName.MatchString(name) {
		return p.c.Errf("tier name %q is not valid: expected a letter, then letters, digits, '-' or '_' (is the NAME missing before the upstreams?)", name)
	}
	for _, t := range p.ut.tiers {
		if t.name == name {
			return p.c.Errf("tier %q defined twice", name)
		}
	}

	// The addresses are read before the block, so that an error names the
	// tier's line and the block's options can be checked against them; the
	// upstreams are made after it, because the block holds their TLS options.
	tos, err := p.parseTos(name, line, args[1:])
	if err != nil {
		return err
	}
	p.tier = &Tier{name: name, index: len(p.ut.tiers), policy: &random{}, opts: proxy.Options{HCRecursionDesired: true, HCDomain: "."}, dohMethod: http.MethodPost}
	p.tos = tos
	if err := p.tierBlock(); err != nil {
		return err
	}
	if err := p.finishTier(line); err != nil {
		return err
	}
	p.ut.tiers = append(p.ut.tiers, p.tier)
	p.tier, p.tos = nil, nil
	return nil
}

// tierBlock reads the optional "{ ... }" after a tier line. Caddy's
// dispenser only tracks one level of blocks, so the inner one is read here.
func (p *parser) tierBlock() error {
	c, t := p.c, p.tier
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
		name := c.Val()
		if name == "}" {
			return nil
		}
		prop, err := p.lookupProperty(inTier, name)
		if err != nil {
			return err
		}
		if seen[name] {
			return c.Errf("tier %q: %s given twice", t.name, name)
		}
		seen[name] = true
		if err := prop.parse(p); err != nil {
			return err
		}
	}
}

// finishTier checks the tier against what its block said and the stanza's
// FROM, and makes its upstreams.
func (p *parser) finishTier(line int) error {
	t := p.tier
	if len(t.except) > 0 && coversAll(t.except, p.ut.from) {
		return p.errAt(p.exceptLines[t], "tier %q: except %s covers all of FROM (%s): the tier would never be asked", t.name, strings.Join(t.except, " "), strings.Join(p.ut.from, " "))
	}
	if z := outside(t.except, p.ut.from); z != "" {
		return p.errAt(p.exceptLines[t], "tier %q: except %s is outside FROM (%s): it changes nothing", t.name, z, strings.Join(p.ut.from, " "))
	}
	for _, to := range p.tos {
		if encrypted(to.transport) && to.serverName == "" && t.tlsServerName == "" && to.name == "" {
			return p.errAt(line, "tier %q: %s has no server name to verify its certificate against: write %s://IP%%NAME, or tls_servername NAME in the tier's block", t.name, to.arg, to.transport)
		}
	}
	p.addUpstreams(t, line)
	return nil
}

func (p *parser) policy() error {
	args := p.c.RemainingArgs()
	if len(args) != 1 {
		return p.c.Err("policy needs one of random, round_robin, sequential")
	}
	if p.tier.policy = newPolicy(args[0]); p.tier.policy == nil {
		return p.c.Errf("unknown policy %q; expected random, round_robin or sequential", args[0])
	}
	return nil
}

func (p *parser) tierExcept() (err error) {
	p.exceptLines[p.tier] = p.c.Line()
	p.tier.except, err = p.zones()
	return err
}

// transportChoice reads force_tcp or prefer_udp.
func (p *parser) transportChoice() error {
	prop, t := p.c.Val(), p.tier
	if p.c.NextArg() {
		return p.c.Errf("%s takes no arguments", prop)
	}
	if p.countEncrypted() == len(p.tos) {
		return p.c.Errf("tier %q: %s does nothing here: every upstream of the tier is %s, which choose their own transport", t.name, prop, encryptedForms)
	}
	if prop == "force_tcp" {
		t.opts.ForceTCP = true
	} else {
		t.opts.PreferUDP = true
	}
	if t.opts.ForceTCP && t.opts.PreferUDP {
		return p.c.Errf("tier %q: force_tcp and prefer_udp contradict each other", t.name)
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

// looksLikeAddress reports whether a FROM argument is an upstream written
// where forward takes one: an IP, IP:port, URL or file, not a zone. A CIDR
// (a reverse zone) is a zone.
func looksLikeAddress(a string) bool {
	if strings.Contains(a, "://") {
		return true
	}
	if _, err := netip.ParseAddr(strings.Trim(a, "[]")); err == nil {
		return true
	}
	if _, err := netip.ParseAddrPort(a); err == nil {
		return true
	}
	if _, _, err := net.ParseCIDR(a); err == nil {
		return false
	}
	return strings.Contains(a, "/")
}

// The value readers.

// duration reads the property's one argument: a duration within b.
func (p *parser) duration(b bounds) (time.Duration, error) {
	prop, args := p.c.Val(), p.c.RemainingArgs()
	if len(args) != 1 {
		return 0, p.c.Errf("%s needs one DURATION, e.g. 2s or 500ms", prop)
	}
	return p.durationArg(prop, args[0], b)
}

// durationOrOff reads the property's one argument: a duration within b,
// or off, which gives 0.
func (p *parser) durationOrOff(b bounds) (time.Duration, error) {
	prop, args := p.c.Val(), p.c.RemainingArgs()
	if len(args) != 1 {
		return 0, p.c.Errf("%s needs one DURATION, e.g. 2s or 500ms, or off", prop)
	}
	if args[0] == "off" {
		return 0, nil
	}
	return p.durationArg(prop, args[0], b)
}

// durationArg reads arg, the argument of prop, as a duration within b.
func (p *parser) durationArg(prop, arg string, b bounds) (time.Duration, error) {
	d, err := time.ParseDuration(arg)
	if err != nil {
		return 0, p.c.Errf("%s: %q is not a duration, e.g. 2s or 500ms", prop, arg)
	}
	if d <= 0 {
		return 0, p.c.Errf("%s must be positive, got %s", prop, arg)
	}
	if err := b.check(prop, d); err != nil {
		return 0, p.c.Err(err.Error())
	}
	return d, nil
}

// count reads the property's one argument: a number between least and most.
func (p *parser) count(least, most int) (int, error) {
	prop, args := p.c.Val(), p.c.RemainingArgs()
	if len(args) != 1 {
		return 0, p.c.Errf("%s needs one number N", prop)
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < least || n > most {
		return 0, p.c.Errf("%s: %q is not a number between %d and %d", prop, args[0], least, most)
	}
	return n, nil
}

func rcodeSet(rcodes []int) map[int]bool {
	s := make(map[int]bool, len(rcodes))
	for _, rc := range rcodes {
		s[rc] = true
	}
	return s
}
