// Package upstreamtier is a CoreDNS plugin that forwards queries to ordered
// tiers of upstream servers and fails over down the tiers when one cannot
// answer.
package upstreamtier

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/dnstap"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/edns"
	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/coredns/coredns/request"

	"github.com/upstreamtier/upstreamtier/internal/dnspool"
	"github.com/upstreamtier/upstreamtier/internal/upstream"

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
	hedge          time.Duration // fixed hedge delay; 0: derived from the RTT
	hedgeOff       bool
	maxHedges      int64        // hedges in flight at most, plugin-wide
	allDownTry     bool         // all_down try: with nothing up, try the last upstream that was
	handOn         map[int]bool // next: answer rcodes that go to the next plugin
	handOnNodata   bool         // next_on_nodata: so does NODATA
	maxConcurrent  int64        // queries in flight at most; 0: no limit
	concurrent     atomic.Int64

	pool dnspool.Options // how upstreams connect: source_address, expire, max_age, max_idle_conns

	hostNames []*hostName // upstreams written as host names
	resolver  resolver    // looks them up

	hc        *healthCheck    // the health settings
	life      *lifecycle      // the contexts of probes and attempts
	state     *tierState      // the serving tier and readiness
	memory    *failoverMemory // nil with failover_memory off
	upstreams int             // number of upstreams in all tiers
	hedging   atomic.Int64    // hedges in flight
	shutdown  sync.Once

	metadata bool             // the metadata plugin is in the server block
	taps     []*dnstap.Dnstap // dnstap plugins to tell about forwarded queries

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
	if rcode, err := checkQuery(w, r); err != nil {
		return rcode, plugin.Error(pluginName, err)
	}
	if rcode, ok := localRcode(state.QType()); ok {
		return ut.answerLocally(ctx, state, rcode)
	}
	if ut.maxConcurrent > 0 {
		// Beyond the limit, refuse at once: a queue would only turn an
		// overload into timeouts for everybody.
		defer ut.concurrent.Add(-1)
		if ut.concurrent.Add(1) > ut.maxConcurrent {
			overloadCount.WithLabelValues(metrics.WithServer(ctx)).Inc()
			return dns.RcodeRefused, plugin.Error(pluginName, errOverload)
		}
	}

	q := newQuery(ctx, ut, state)
	defer q.free()
	u := q.next()
	if u == nil {
		u = ut.lastUp(q)
	}
	switch {
	case u == nil && (q.barred || !q.allowed):
		// The tiers that could answer may not see the name.
		return ut.fail(ctx, w, q, dns.ExtendedErrorCodeProhibited, servfailProhibited, errBarred)
	case u == nil:
		return ut.fail(ctx, w, q, dns.ExtendedErrorCodeNoReachableAuthority, servfailAllDown, errAllDown)
	}

	buf := upstream.Buffer()
	wire, err := r.PackBuffer(*buf)
	if err != nil {
		upstream.PutBuffer(buf)
		return dns.RcodeFormatError, plugin.Error(pluginName, err)
	}
	q.packet = upstream.NewPacket(wire, q.size, r.Question[0])

	ret, u, aerr := q.resolve(u)
	q.release(buf)
	if aerr != nil && aerr.reason == reasonRcode && ut.Next != nil && ut.handOn[aerr.rcode] {
		return plugin.NextOrFailure(ut.Name(), ut.Next, ctx, w, r) // every tier gave that rcode
	}
	if aerr != nil {
		return ut.fail(ctx, w, q, dns.ExtendedErrorCodeNoReachableAuthority, servfailAllFailed, aerr)
	}
	u.series(metrics.WithServer(ctx)).answered(u, ret.Rcode)
	if ut.handsOn(ret) {
		return plugin.NextOrFailure(ut.Name(), ut.Next, ctx, w, r)
	}
	ut.setMetadata(ctx, q, u)
	ret.Id = r.Id
	w.WriteMsg(ret)
	return dns.RcodeSuccess, nil
}

// handsOn reports whether an upstream's answer goes to the next plugin
// instead of the client: its rcode is one of next's, or it is NODATA and
// next_on_nodata is set. With no next plugin, as in forward, it is the
// client's.
func (ut *UpstreamTier) handsOn(m *dns.Msg) bool {
	if ut.Next == nil {
		return false
	}
	nodata := m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0
	return ut.handOn[m.Rcode] || (ut.handOnNodata && nodata)
}

// checkQuery rejects what CoreDNS's server normally stops before it gets
// here, for when the plugin is called some other way: a response or not
// exactly one question (FORMERR), an opcode other than QUERY (NOTIMP), an EDNS version
// other than 0 (BADVERS, written here).
func checkQuery(w dns.ResponseWriter, r *dns.Msg) (int, error) {
	switch {
	case r.Response:
		return dns.RcodeFormatError, errResponse
	case len(r.Question) != 1:
		return dns.RcodeFormatError, errQuestions
	case r.Opcode != dns.OpcodeQuery:
		return dns.RcodeNotImplemented, errOpcode
	}
	if m, err := edns.Version(r); err != nil {
		w.WriteMsg(m)
		return dns.RcodeSuccess, err
	}
	return dns.RcodeSuccess, nil
}

// match reports whether this plugin handles the query's name.
func (ut *UpstreamTier) match(state request.Request) bool {
	name := state.Name()
	if plugin.Zones(ut.from).Matches(name) == "" {
		return false
	}
	return plugin.Zones(ut.except).Matches(name) == ""
}

// lastUp returns, under all_down try, the upstream that went down last
// among the tiers that may see the query; nil otherwise.
func (ut *UpstreamTier) lastUp(q *query) *Upstream {
	if !ut.allDownTry {
		return nil
	}
	var best *Upstream
	for _, t := range ut.tiers {
		if !t.allows(q.name) {
			continue
		}
		for _, u := range t.upstreams() {
			if best == nil || u.health.downSince.Load() > best.health.downSince.Load() {
				best = u
			}
		}
	}
	return best
}

// timing returns the timeout and the checkpoint of an attempt on u: a
// fixed hedge delay, when given, is the checkpoint.
func (ut *UpstreamTier) timing(u *Upstream) (attempt, checkpoint time.Duration) {
	if ut.hedge > 0 {
		return ut.attemptTimeout, min(ut.hedge, ut.attemptTimeout)
	}
	return ut.attemptTimeout, u.checkpoint(ut.attemptTimeout)
}

// hedgeSlot takes one of the plugin-wide hedge slots, if one is free.
func (ut *UpstreamTier) hedgeSlot() bool {
	if ut.hedging.Add(1) > ut.maxHedges {
		ut.hedging.Add(-1)
		return false
	}
	return true
}

// hedgeDone frees the slot of a hedge.
func (ut *UpstreamTier) hedgeDone(hedge bool) {
	if hedge {
		ut.hedging.Add(-1)
	}
}

// fail answers SERVFAIL at once, with an Extended DNS Error that says why.
func (ut *UpstreamTier) fail(ctx context.Context, w dns.ResponseWriter, q *query, code uint16, reason string, err error) (int, error) {
	text := "upstreamtier: " + err.Error()
	if aerr, ok := errors.AsType[*attemptError](err); ok {
		text = "upstreamtier: all tiers failed, last: " + aerr.public()
	}
	servfailCount.WithLabelValues(metrics.WithServer(ctx), reason).Inc()
	ut.setMetadata(ctx, q, nil)
	state := request.Request{W: w, Req: q.req}
	w.WriteMsg(servfail(state, code, text))
	return dns.RcodeSuccess, plugin.Error(pluginName, err)
}

// rcodeName returns the rcode's name, or its number when it has none.
func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return strconv.Itoa(rcode)
}

// servfail builds a SERVFAIL answer to the query, with an Extended DNS Error.
func servfail(state request.Request, code uint16, text string) *dns.Msg {
	return errorAnswer(state, dns.RcodeServerFailure, code, text)
}

// errorAnswer builds an answer with rcode to the query. The Extended DNS
// Error (RFC 8914) rides in the OPT record, so it is only added when the
// client sent one (RFC 6891 forbids an OPT in the answer otherwise).
func errorAnswer(state request.Request, rcode int, code uint16, text string) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(state.Req, rcode)
	if opt := state.Req.IsEdns0(); opt != nil {
		m.SetEdns0(uint16(state.Size()), opt.Do()) //nolint:gosec // G115: Size is at most 65535
		ede := &dns.EDNS0_EDE{InfoCode: code, ExtraText: text}
		m.IsEdns0().Option = append(m.IsEdns0().Option, ede)
	}
	return m
}

var (
	errBarred    = errors.New("no available tier may see this name")
	errAllDown   = errors.New("all upstreams are down")
	errOverload  = errors.New("max_concurrent queries in flight: refused")
	errQuestions = errors.New("query without exactly one question")
	errResponse  = errors.New("a response, not a query")
	errOpcode    = errors.New("opcode other than QUERY")
	errLocalType = errors.New("query type answered by the plugin itself, not forwarded")
)
