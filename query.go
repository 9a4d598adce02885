package upstreamtier

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// outgoing is the query as it goes upstream. It is set before the first
// attempt and only read after, so attempts in goroutines get their own copy
// of it and the query itself can stay on the stack of ServeDNS.
type outgoing struct {
	ut          *UpstreamTier
	ctx         context.Context
	wire        []byte // the client's query packed; an attempt patches its ID in
	clientProto string
	udpSize     uint16
	name        string
	qtype       uint16
	qclass      uint16
	id          uint16
	deadline    time.Time // end of the query budget
}

// query is one client query on its way down the tiers.
type query struct {
	outgoing
	req *dns.Msg // the client's query, never modified
	w   dns.ResponseWriter

	tier    int          // next tier to take candidates from
	list    []*Upstream  // the current tier's upstreams, in policy order
	pos     int          // next candidate in list
	allowed bool         // some tier may see this name
	barred  bool         // an available tier may not see this name
	results chan outcome // answers of attempts running in goroutines
	running int          // attempts in goroutines not yet reported
	last    *attemptError

	exhausted  bool          // no candidate left to hedge to
	lastLaunch time.Time     // when the newest attempt started
	hedgeDelay time.Duration // its hedge delay, 0 if hedging is off

	attempts, hedges int
}

// outcome is what an attempt running in a goroutine reports.
type outcome struct {
	msg      *dns.Msg
	upstream *Upstream
	err      *attemptError
	proto    string    // protocol of the attempt, for dnstap
	start    time.Time // when the attempt started, for dnstap
}

// maxRunning bounds the attempts of one query in flight at once.
const maxRunning = 3

func newQuery(ctx context.Context, ut *UpstreamTier, state request.Request) query {
	q := query{req: state.Req, w: state.W}
	q.ut, q.ctx, q.id = ut, ctx, state.Req.Id
	q.clientProto, q.name = state.Proto(), state.Name()
	q.udpSize = uint16(max(state.Size(), dns.MinMsgSize)) // #nosec G115 -- Size is at most 65535
	q.qtype, q.qclass = state.QType(), state.QClass()
	q.deadline = time.Now().Add(ut.timeout)
	return q
}

// next returns the next available candidate: the tiers in order and, inside
// a tier, its upstreams in policy order, skipping the ones that are down.
func (q *query) next() *Upstream {
	for {
		for q.pos < len(q.list) {
			u := q.list[q.pos]
			q.pos++
			if u.available() {
				return u
			}
		}
		if q.tier >= len(q.ut.tiers) {
			return nil
		}
		t := q.ut.tiers[q.tier]
		q.tier++
		if !t.allows(q.name) {
			q.barred = q.barred || t.available()
			continue
		}
		q.allowed = true
		if t.available() {
			q.list, q.pos = t.policy.List(t.upstreams), 0
		}
	}
}

// resolve runs the attempts, starting with u, until one gives a valid
// answer or no candidate and no budget is left. It returns the answer and
// the upstream that gave it.
func (q *query) resolve(u *Upstream) (*dns.Msg, *Upstream, *attemptError) {
	if u.transport == transport.TLS {
		q.launch(u, false)
		return q.race()
	}
	m, err, pending := q.inline(u)
	if !pending {
		if err == nil {
			return m, u, nil
		}
		q.last = err
	}
	return q.race()
}

// inline runs the first attempt in the caller's goroutine, the cheap path
// of a healthy upstream. If no answer has come by the hedge delay, the
// attempt goes on waiting in its own goroutine (pending is true) and the
// caller moves on to race.
func (q *query) inline(u *Upstream) (m *dns.Msg, err *attemptError, pending bool) {
	start := time.Now()
	limit, hedge := q.ut.timing(u)
	deadline := earliest(start.Add(limit), q.deadline)
	proto := u.proto(q.clientProto)
	q.attempts++

	a, serr := u.pool(proto).send(q.ctx, q.wire, q.udpSize, deadline)
	if serr != nil {
		_, err = q.settle(u, proto, nil, serr, start, deadline)
		q.tap(u, proto, nil, start)
		return nil, err, false
	}
	wait := deadline
	if hedge > 0 && start.Add(hedge).Before(deadline) {
		wait = start.Add(hedge)
	}
	ret, rerr := a.await(wait)
	if rerr != nil && isTimeout(rerr) && wait.Before(deadline) {
		q.lastLaunch, q.hedgeDelay = start, hedge
		o, pending := q.outgoing, a
		q.goRun(func() outcome {
			ret, rerr := pending.await(deadline)
			pending.done(rerr)
			m, err := o.settle(u, proto, ret, rerr, start, deadline)
			return outcome{m, u, err, proto, start}
		})
		return nil, nil, true
	}
	a.done(rerr)
	if rerr != nil && a.stale(rerr) {
		ret, rerr = u.pool(proto).exchange(q.ctx, q.wire, q.udpSize, deadline)
	}
	m, err = q.settle(u, proto, ret, rerr, start, deadline)
	q.tap(u, proto, m, start)
	return m, err, false
}

// tap tells dnstap, when configured, about an attempt that has reported.
func (q *query) tap(u *Upstream, proto string, reply *dns.Msg, start time.Time) {
	if len(q.ut.taps) > 0 {
		q.ut.toDnstap(q.ctx, request.Request{W: q.w, Req: q.req}, u, proto, reply, start)
	}
}

// race waits for the attempts in flight, starting a hedge when the newest
// has not answered within its hedge delay and the next candidate at once
// when one fails, until an answer is valid or the budget is spent.
func (q *query) race() (*dns.Msg, *Upstream, *attemptError) {
	budget := time.NewTimer(time.Until(q.deadline))
	defer budget.Stop()
	var hedgeTimer *time.Timer
	defer func() {
		if hedgeTimer != nil {
			hedgeTimer.Stop()
		}
	}()

	for {
		if q.running == 0 {
			u := q.next()
			if u == nil || !time.Now().Before(q.deadline) {
				return nil, nil, q.budgetSpent()
			}
			q.launch(u, false)
		}

		var hedgeC <-chan time.Time
		if q.mayHedge() {
			d := time.Until(q.lastLaunch.Add(q.hedgeDelay))
			if hedgeTimer == nil {
				hedgeTimer = time.NewTimer(d)
			} else {
				hedgeTimer.Reset(d)
			}
			hedgeC = hedgeTimer.C
		}

		select {
		case o := <-q.results:
			q.running--
			q.tap(o.upstream, o.proto, o.msg, o.start)
			if o.err == nil {
				return o.msg, o.upstream, nil
			}
			q.last = o.err
			if q.running > 0 { // fail over now rather than wait for the others
				if u := q.next(); u != nil {
					q.launch(u, false)
				}
			}
		case <-hedgeC:
			// Take the slot first: a candidate taken without one would be
			// lost to the failover should the attempts in flight fail.
			if !q.ut.hedgeSlot() {
				q.exhausted = true
			} else if u := q.next(); u != nil {
				q.launch(u, true)
			} else {
				q.ut.hedgeDone(true)
				q.exhausted = true
			}
		case <-budget.C:
			return nil, nil, q.budgetSpent()
		case <-q.ctx.Done():
			return nil, nil, q.budgetSpent()
		}
	}
}

// mayHedge reports whether a hedge may start when the newest attempt's
// hedge delay runs out.
func (q *query) mayHedge() bool {
	return q.hedgeDelay > 0 && !q.exhausted && q.running > 0 && q.running < maxRunning
}

// launch starts an attempt in its own goroutine.
func (q *query) launch(u *Upstream, hedge bool) {
	start := time.Now()
	limit, hd := q.ut.timing(u)
	deadline := earliest(start.Add(limit), q.deadline)
	q.lastLaunch, q.hedgeDelay = start, hd
	q.attempts++
	if hedge {
		q.hedges++
		hedgeCount.WithLabelValues(metrics.WithServer(q.ctx), u.tier.name).Inc()
	}
	proto := u.proto(q.clientProto)

	// Each attempt gets its own copy of what it sends: the DoT proxy
	// rewrites the request's ID, the pool writes its ID into the wire.
	var req *dns.Msg
	var wire []byte
	if u.transport == transport.TLS {
		req = q.req.Copy()
	} else {
		wire = slices.Clone(q.wire)
	}
	o := q.outgoing
	q.goRun(func() outcome {
		defer o.ut.hedgeDone(hedge)
		ret, err := u.exchange(o.ctx, proto, req, wire, o.udpSize, deadline)
		m, aerr := o.settle(u, proto, ret, err, start, deadline)
		return outcome{m, u, aerr, proto, start}
	})
}

// goRun runs an attempt in its own goroutine, reporting to q.results. The
// channel has room for every upstream, so a report never blocks, even after
// the query is answered and nobody reads any more.
func (q *query) goRun(attempt func() outcome) {
	if q.results == nil {
		q.results = make(chan outcome, q.ut.upstreams)
	}
	q.running++
	go func() { q.results <- attempt() }()
}

// settle judges the result of an attempt, tells the upstream's health about
// it, and returns the answer when it may reach the client.
func (q *outgoing) settle(u *Upstream, proto string, m *dns.Msg, err error, start, deadline time.Time) (*dns.Msg, *attemptError) {
	if err == nil && m.Truncated && proto == "udp" && u.tier.opts.PreferUDP && u.transport != transport.TLS {
		m, err = u.pool("tcp").exchange(q.ctx, slices.Clone(q.wire), q.udpSize, deadline)
	}
	var aerr *attemptError
	switch {
	case err != nil:
		aerr = classify(u, err)
	case !q.matches(m):
		aerr = &attemptError{upstream: u, reason: reasonMismatch}
	case q.ut.failover[m.Rcode]:
		aerr = &attemptError{upstream: u, reason: reasonRcode, rcode: m.Rcode}
	}
	if aerr != nil {
		attemptFailures.WithLabelValues(metrics.WithServer(q.ctx), u.tier.name, u.Addr(), aerr.label()).Inc()
		u.fail(aerr, start)
		return nil, aerr
	}
	rtt := time.Since(start)
	attemptDuration.WithLabelValues(metrics.WithServer(q.ctx), u.tier.name, u.Addr()).Observe(rtt.Seconds())
	u.observe(rtt)
	m.Id = q.id
	return m, nil
}

// matches reports whether m answers the query's question. The ID was
// checked by the transport.
func (q *outgoing) matches(m *dns.Msg) bool {
	if !m.Response || len(m.Question) != 1 {
		return false
	}
	qq := m.Question[0]
	return qq.Qtype == q.qtype && qq.Qclass == q.qclass && strings.EqualFold(qq.Name, q.name)
}

// budgetSpent is the failure to report when the query budget ran out.
func (q *query) budgetSpent() *attemptError {
	if q.last != nil {
		return q.last
	}
	return &attemptError{reason: reasonBudget}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
