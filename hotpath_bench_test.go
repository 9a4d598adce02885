package upstreamtier

import (
	"strings"
	"testing"
)

// BenchmarkConfigSize shows that a query's cost does not grow with the
// configuration: a healthy query to 2 upstreams in 1 tier, and to 100
// upstreams in 10 tiers (default policy, random), against the same kind of
// local upstreams. allocs/op must be equal:
//
//	go test -run '^$' -bench ConfigSize -benchmem -count 6 .
func BenchmarkConfigSize(b *testing.B) {
	for _, size := range []struct {
		name         string
		tiers, width int
	}{
		{"2upstreams-1tier", 1, 2},
		{"100upstreams-10tiers", 10, 10},
	} {
		b.Run(size.name, func(b *testing.B) {
			up := startUpstreams(b, size.tiers*size.width)
			var stanza strings.Builder
			stanza.WriteString("upstreamtier {\n")
			for i := range size.tiers {
				stanza.WriteString(" tier t" + string(rune('a'+i)) + strings.Repeat(" %s", size.width) + "\n")
			}
			stanza.WriteString("}")
			benchmarkHandler(b, newPlugin(b, stanza.String(), up...))
		})
	}
}
