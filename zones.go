package upstreamtier

import (
	"reflect"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/forward"
)

// inside reports whether name is one of zones or below one.
func inside(name string, zones []string) bool {
	for _, z := range zones {
		if plugin.Name(z).Matches(name) {
			return true
		}
	}
	return false
}

// coversAll reports whether every zone of from is inside one of by; an
// empty from (a test controller has no server block) is not covered.
func coversAll(by, from []string) bool {
	if len(from) == 0 {
		return false
	}
	for _, z := range from {
		if !inside(z, by) {
			return false
		}
	}
	return true
}

// outside returns the first of zones that shares no name with within: it
// is neither inside nor above any of them. "" if there is none, or
// within is empty.
func outside(zones, within []string) string {
	if len(within) == 0 {
		return ""
	}
	for _, z := range zones {
		if !inside(z, within) && !coversAny(z, within) {
			return z
		}
	}
	return ""
}

// coversAny reports whether one of zones is zone or below it.
func coversAny(zone string, zones []string) bool {
	for _, z := range zones {
		if plugin.Name(zone).Matches(z) {
			return true
		}
	}
	return false
}

// checkForward refuses a forward in the same server block whose zone
// upstreamtier answers entirely: upstreamtier comes first in the plugin
// chain (plugin.cfg puts it right before forward), so forward would never
// be asked.
func (p *parser) checkForward(h plugin.Handler) error {
	f, ok := h.(*forward.Forward)
	if !ok {
		return nil
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

// forwardZone returns forward's zone, which forward does not export; ""
// if this CoreDNS version keeps it elsewhere. Read only.
func forwardZone(f *forward.Forward) string {
	v := reflect.ValueOf(f).Elem().FieldByName("from")
	if !v.IsValid() || v.Kind() != reflect.String {
		return ""
	}
	return v.String()
}
