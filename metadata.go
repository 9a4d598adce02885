package upstreamtier

import (
	"context"
	"strconv"

	"github.com/coredns/coredns/plugin/metadata"
	"github.com/coredns/coredns/plugin/pkg/replacer"
)

// noUpstream is the tier and upstream of a query no upstream answered: what
// the log plugin prints for metadata that is not set, so every answer of
// the plugin's own (a SERVFAIL, a query type it does not forward, an
// overload REFUSED) reads the same.
const noUpstream = replacer.EmptyValue

// setMetadata publishes, for the log plugin and others, which tier and
// upstream answered (noUpstream when none did), how many attempts the
// query took, how many of them were hedges and how many retries.
func (ut *UpstreamTier) setMetadata(ctx context.Context, q *query, u *Upstream) {
	if !ut.metadata {
		return
	}
	tier, upstream := noUpstream, noUpstream
	if u != nil {
		tier, upstream = u.tier.name, u.Addr()
	}
	attempts, hedges, retries := strconv.Itoa(q.attempts), strconv.Itoa(q.hedges), strconv.Itoa(q.retries)
	metadata.SetValueFunc(ctx, pluginName+"/tier", func() string { return tier })
	metadata.SetValueFunc(ctx, pluginName+"/upstream", func() string { return upstream })
	metadata.SetValueFunc(ctx, pluginName+"/attempts", func() string { return attempts })
	metadata.SetValueFunc(ctx, pluginName+"/hedged", func() string { return hedges })
	metadata.SetValueFunc(ctx, pluginName+"/retries", func() string { return retries })
}
