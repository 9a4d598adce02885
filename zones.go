package upstreamtier

import (
	"slices"

	"github.com/coredns/coredns/plugin"
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
	return slices.ContainsFunc(zones, plugin.Name(zone).Matches)
}
