package upstreamtier

import (
	"crypto/tls"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/proxy"
)

// Tier is one level of the hierarchy: its upstreams only see a query when
// every tier above could not answer it.
type Tier struct {
	name   string
	index  int                         // its place in the plugin's tiers, from 0
	list   atomic.Pointer[[]*Upstream] // replaced whole when a host name's addresses change
	listMu sync.Mutex                  // serializes the writers of list
	policy Policy
	except []string // zones this tier must never see
	opts   proxy.Options

	tlsConfig     *tls.Config // set by the tier's tls option, nil otherwise
	tlsServerName string      // set by tls_servername
	dohMethod     string      // set by doh_method: POST by default
}

// Name returns the tier's name as written in the Corefile.
func (t *Tier) Name() string { return t.name }

// upstreams returns the tier's upstreams as they are now.
func (t *Tier) upstreams() []*Upstream {
	if l := t.list.Load(); l != nil {
		return *l
	}
	return nil
}

// add appends u to the tier's upstreams, at setup and startup.
func (t *Tier) add(u *Upstream) {
	t.listMu.Lock()
	defer t.listMu.Unlock()
	old := t.upstreams()
	l := append(slices.Clip(old), u) // a new array: readers keep theirs
	t.list.Store(&l)
}

// allows reports whether qname may be sent to this tier.
func (t *Tier) allows(qname string) bool {
	for _, zone := range t.except {
		if plugin.Name(zone).Matches(qname) {
			return false
		}
	}
	return true
}

// available reports whether some upstream of the tier is up.
func (t *Tier) available() bool {
	for _, u := range t.upstreams() {
		if u.available() {
			return true
		}
	}
	return false
}

// passedOver tells the tier's upstreams that a client query for q skipped
// them: the tier is unavailable.
func (t *Tier) passedOver(q question) {
	for _, u := range t.upstreams() {
		u.passedOver(q)
	}
}

// lone reports whether the plugin has a single upstream, in a single
// tier: no attempt on it can be hedged or handed over to another.
func (ut *UpstreamTier) lone() bool {
	return len(ut.tiers) == 1 && len(ut.tiers[0].upstreams()) == 1
}
