package upstreamtier

import (
	"fmt"
	"strings"
	"time"
)

// scope is where in the upstreamtier block a property is written.
type scope int

const (
	atTop  scope = iota // a line of the upstreamtier block
	inTier              // a line of a tier's block
)

// property is one line the upstreamtier block accepts: this table is the
// only list of property names, and the error messages for unknown and
// misplaced properties are derived from it.
type property struct {
	name   string
	scope  scope
	repeat bool // may be given more than once
	parse  func(p *parser) error
}

// properties is set in init: the tier property reads a tier's block, which
// looks properties up, and a variable cannot refer to itself.
var properties []property

func init() {
	properties = []property{
		{name: "tier", scope: atTop, repeat: true, parse: (*parser).tierLine},
		{name: "except", scope: atTop, parse: (*parser).except},
		{name: "failover", scope: atTop, parse: (*parser).failover},
		{name: "timeout", scope: atTop, parse: (*parser).timeout},
		{name: "attempt_timeout", scope: atTop, parse: (*parser).attemptTimeout},
		{name: "hedge", scope: atTop, parse: (*parser).hedge},
		{name: "health_check", scope: atTop, parse: (*parser).healthCheck},
		{name: "standby_probe", scope: atTop, parse: (*parser).standbyProbe},
		{name: "fall", scope: atTop, parse: (*parser).fall},
		{name: "rise", scope: atTop, parse: (*parser).rise},
		{name: "all_down", scope: atTop, parse: (*parser).allDown},
		{name: "max_concurrent", scope: atTop, parse: (*parser).maxConcurrent},
		{name: "failover_memory", scope: atTop, parse: (*parser).failoverMemory},
		{name: "resolver", scope: atTop, parse: (*parser).resolverProperty},
		{name: "next", scope: atTop, parse: (*parser).next},
		{name: "next_on_nodata", scope: atTop, parse: (*parser).nextOnNodata},
		{name: "source_address", scope: atTop, parse: (*parser).sourceAddress},
		{name: "expire", scope: atTop, parse: (*parser).expire},
		{name: "max_age", scope: atTop, parse: (*parser).maxAge},
		{name: "max_idle_conns", scope: atTop, parse: (*parser).maxIdleConns},

		{name: "policy", scope: inTier, parse: (*parser).policy},
		{name: "except", scope: inTier, parse: (*parser).tierExcept},
		{name: "tls", scope: inTier, parse: (*parser).tls},
		{name: "tls_servername", scope: inTier, parse: (*parser).tlsServerName},
		{name: "doh_method", scope: inTier, parse: (*parser).dohMethod},
		{name: "force_tcp", scope: inTier, parse: (*parser).transportChoice},
		{name: "prefer_udp", scope: inTier, parse: (*parser).transportChoice},
	}
}

// lookupProperty returns the property name in scope s, or an error saying
// where it belongs or which properties s has.
func (p *parser) lookupProperty(s scope, name string) (property, error) {
	var names []string
	misplaced := false
	for _, prop := range properties {
		switch {
		case prop.scope == s && prop.name == name:
			return prop, nil
		case prop.scope == s:
			names = append(names, prop.name)
		case prop.name == name:
			misplaced = true
		}
	}
	switch {
	case misplaced && s == atTop:
		return property{}, p.c.Errf("%s belongs in a tier's block: tier NAME TO... { %s ... }", name, name)
	case misplaced:
		return property{}, p.c.Errf("%s belongs at the top of the upstreamtier block, not in tier %q", name, p.tier.name)
	case s == atTop:
		return property{}, p.c.Errf("unknown property %q; expected one of %s", name, strings.Join(names, ", "))
	}
	return property{}, p.c.Errf("tier %q: unknown property %q; expected one of %s", p.tier.name, name, strings.Join(names, ", "))
}

// bounds are the durations a property accepts: outside them a Corefile is
// refused, because no upstream or client is served well there.
type bounds struct{ least, most time.Duration }

// Every duration property's bounds, documented in the README's syntax.
var (
	// Below 50 ms not even a nearby cache hit has a retry left; above 30 s
	// every stub resolver has long given up.
	timeoutBounds = bounds{50 * time.Millisecond, 30 * time.Second}
	// An attempt shorter than 10 ms fails a live resolver on a busy
	// machine; it can never outlast the query (checked against timeout).
	attemptBounds = bounds{10 * time.Millisecond, 30 * time.Second}
	// A hedge below 5 ms doubles the upstream's load for every answer
	// that is not a local cache hit; it must come before the attempt ends
	// (checked against attempt_timeout).
	hedgeBounds = bounds{5 * time.Millisecond, 30 * time.Second}
	// A down upstream is probed at most every 10 ms (100 probes a second):
	// 1 ns made 40,000 a second and saturated the machine. At least once a
	// minute, so that a recovered tier is back within one.
	intervalBounds = bounds{10 * time.Millisecond, time.Minute}
	standbyBounds  = bounds{time.Second, 24 * time.Hour}
	memoryBounds   = bounds{100 * time.Millisecond, time.Hour}
)

// check returns an error naming prop when d is outside b.
func (b bounds) check(prop string, d time.Duration) error {
	if d < b.least || d > b.most {
		return fmt.Errorf("%s %s is out of bounds: expected between %s and %s", prop, d, b.least, b.most)
	}
	return nil
}
