// Package upstreamtier is a CoreDNS plugin that forwards queries to ordered
// tiers of upstream servers and fails over down the tiers when one cannot
// answer.
package upstreamtier

import (
	"context"
	"errors"
	"time"

	"github.com/coredns/coredns/plugin"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

const pluginName = "upstreamtier"

var log = clog.NewWithPlugin(pluginName)

// UpstreamTier forwards the queries of its zones down an ordered list of tiers.
type UpstreamTier struct {
	from   []string // zones handled
	except []string // zones inside from that are left to the next plugin
	tiers  []*Tier

	failover       map[int]bool  // rcodes that count as a failed attempt
	timeout        time.Duration // whole-query budget
	attemptTimeout time.Duration // cap for one attempt

	Next plugin.Handler
}

// Name implements plugin.Handler.
func (ut *UpstreamTier) Name() string { return pluginName }

// ServeDNS implements plugin.Handler. It walks the tiers in order and, inside
// a tier, the upstreams in the tier's policy order, until one gives a valid
// answer or the query budget is spent.
func (ut *UpstreamTier) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	if !ut.match(state) {
		return plugin.NextOrFailure(ut.Name(), ut.Next, ctx, w, r)
	}

	deadline := time.Now().Add(ut.timeout)
	var last *attemptError
	barred := false
	for _, t := range ut.tiers {
		if !t.allows(state.Name()) {
			barred = true
			continue
		}
		for _, u := range t.policy.List(t.upstreams) {
			if ctx.Err() != nil || !time.Now().Before(deadline) {
				return ut.fail(w, state, last, barred)
			}
			ret, err := ut.attempt(ctx, u, state, deadline)
			if err == nil {
				w.WriteMsg(ret)
				return dns.RcodeSuccess, nil
			}
			switch {
			case errors.Is(err, proxy.ErrInvalidRequest):
				return dns.RcodeFormatError, err
			case errors.Is(err, proxy.ErrUnsupportedRequest):
				return dns.RcodeNotImplemented, err
			}
			last = err
		}
	}
	return ut.fail(w, state, last, barred)
}

// match reports whether this plugin handles the query's name.
func (ut *UpstreamTier) match(state request.Request) bool {
	name := state.Name()
	if plugin.Zones(ut.from).Matches(name) == "" {
		return false
	}
	return plugin.Zones(ut.except).Matches(name) == ""
}

// fail answers SERVFAIL at once, with an Extended DNS Error that says why.
func (ut *UpstreamTier) fail(w dns.ResponseWriter, state request.Request, last *attemptError, barred bool) (int, error) {
	code, text := dns.ExtendedErrorCodeNoReachableAuthority, "upstreamtier: no upstream answered"
	err := errNoAnswer
	switch {
	case last != nil:
		text = "upstreamtier: all tiers failed, last: " + last.public()
		err = last
	case barred:
		code, text = dns.ExtendedErrorCodeProhibited, "upstreamtier: no tier may see this name"
		err = errBarred
	}
	w.WriteMsg(servfail(state, code, text))
	return dns.RcodeSuccess, plugin.Error(pluginName, err)
}

// servfail builds a SERVFAIL answer to the query. The Extended DNS Error
// (RFC 8914) rides in the OPT record, so it is only added when the client
// sent one (RFC 6891 forbids an OPT in the answer otherwise).
func servfail(state request.Request, code uint16, text string) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(state.Req, dns.RcodeServerFailure)
	if opt := state.Req.IsEdns0(); opt != nil {
		m.SetEdns0(uint16(state.Size()), opt.Do()) // #nosec G115 -- Size is at most 65535
		ede := &dns.EDNS0_EDE{InfoCode: code, ExtraText: text}
		m.IsEdns0().Option = append(m.IsEdns0().Option, ede)
	}
	return m
}

var (
	errNoAnswer = errors.New("no upstream answered within the query budget")
	errBarred   = errors.New("no tier may see this name")
)
