package upstreamtier

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/plugin/pkg/edns"
	"github.com/coredns/coredns/request"
	"github.com/upstreamtier/upstreamtier/internal/upstream"

	"github.com/miekg/dns"
)

// outgoing is the query as it goes upstream. It is set before the first
// attempt and only read after; attempts in goroutines each take a copy of
// it, since they outlive the query when a faster answer wins.
type outgoing struct {
	ut          *UpstreamTier
	ctx         context.Context
	packet      upstream.Packet // the client's query packed; an attempt patches its ID in
	size        uint16          // the client's buffer size
	clientProto string
	question
	judged   bool      // its answers may move health: not a type clients choose to hurt (see qtype.go)
	deadline time.Time // end of the query budget
}

// query is one client query on its way down the tiers.
type query struct {
	outgoing
	req *dns.Msg // the client's query, never modified
	w   dns.ResponseWriter

	tier    int         // next tier to take candidates from
	list    []*Upstream // the current tier's upstreams
	pos     int         // candidates of list taken so far
	first   int         // list's first candidate, in policy order
	step    int         // from one candidate to the next in list
	peeked  *Upstream   // the next candidate, looked at and not yet launched
	allowed bool        // some tier may see this name
	barred  bool        // an available tier may not see this name
	memo    uint64      // tiers the failover memory says failed this name, as bits

	results  chan outcome // answers of attempts running in goroutines
	flights  [maxRunning]flight
	running  int       // attempts in flight
	lastTier *Tier     // tier of the newest attempt
	lastUp   *Upstream // upstream of the newest attempt
	lastAt   time.Time // when the newest attempt started
	// The newest attempt's checkpoints: when it is hedged within its
	// tier, and when its upstream is next asked whether it is alive (first
	// early, then every recheck).
	hedgeAt, silenceAt time.Time
	recheck            time.Duration
	failed             bool // an attempt failed while others are in flight
	last               *attemptError

	attempts, hedges, retries int
}

// flight is an attempt in flight, as the query sees it.
type flight struct {
	u       *Upstream          // nil for a free slot
	since   time.Time          // the attempt's start, or when its upstream was last seen alive
	check   *liveness          // the liveness check asked about it, until its verdict is read
	silent  bool               // its upstream sent nothing back since the attempt started
	abandon context.CancelFunc // ends the attempt
}

// outcome is what an attempt running in a goroutine reports.
type outcome struct {
	msg      *dns.Msg
	upstream *Upstream
	err      *attemptError
	proto    string    // protocol of the attempt, for dnstap
	start    time.Time // when the attempt started, for dnstap
	slot     int       // its flight
}

// maxRunning bounds the attempts of one query in flight at once.
const maxRunning = 3

func newQuery(ctx context.Context, ut *UpstreamTier, state request.Request) *query {
	q := queryPool.Get().(*query)
	q.req, q.w = state.Req, state.W
	q.ut, q.ctx = ut, ctx
	q.clientProto = state.Proto()
	q.question = question{state.Name(), state.QType(), state.QClass()}
	q.judged = judgedType(q.qtype)
	// state.Size would ask the writer for the transport a second time.
	size := uint16(0)
	if o := state.Req.IsEdns0(); o != nil {
		size = o.UDPSize()
	}
	q.size = max(edns.Size(q.clientProto, size), dns.MinMsgSize)
	q.deadline = time.Now().Add(ut.timeout)
	q.memo = ut.memory.failed(q.name, q.qtype)
	return q
}

// queryPool keeps queries from one client query to the next. A query
// lives there rather than in ServeDNS's frame, which would grow by its
// size: the server's goroutine also runs a lone encrypted upstream's
// exchange (pkg/proxy, quic-go, crypto) under ServeDNS, and those few
// hundred bytes more made it grow its stack, copying it, on most queries
// (measured in bench/README.md, the encrypted scenario).
var queryPool = sync.Pool{New: func() any { return new(query) }}

// free gives the query back once ServeDNS is done with it: the attempts
// still in flight have copies of what they need, never the query.
func (q *query) free() {
	*q = query{}
	queryPool.Put(q)
}

// next returns the next available candidate: the tiers in order and, inside
// a tier, its upstreams in policy order, skipping the ones that are down,
// and skipping a tier that recently failed the name when a later one may
// still answer it.
func (q *query) next() *Upstream {
	for {
		for q.pos < len(q.list) {
			u := q.list[(q.first+q.pos*q.step)%len(q.list)]
			q.pos++
			if u.available() {
				return u
			}
			u.passedOver(q.question)
		}
		if q.tier >= len(q.ut.tiers) {
			return nil
		}
		i := q.tier
		t := q.ut.tiers[i]
		q.tier++
		if !t.allows(q.name) {
			q.barred = q.barred || t.available()
			continue
		}
		q.allowed = true
		if !t.available() {
			t.passedOver(q.question)
			continue
		}
		if q.memo&(1<<i) != 0 && q.laterTierMayAnswer(i) {
			memorySkips.WithLabelValues(metrics.WithServer(q.ctx), t.name).Inc()
			continue
		}
		ups := t.upstreams()
		q.list, q.pos = ups, 0
		q.first, q.step = t.policy.Start(len(ups))
	}
}

// laterTierMayAnswer reports whether a tier after the i-th may see the
// name, is available and has not failed it recently.
func (q *query) laterTierMayAnswer(i int) bool {
	for j := i + 1; j < len(q.ut.tiers); j++ {
		t := q.ut.tiers[j]
		if t.allows(q.name) && t.available() && (j >= maxRememberedTiers || q.memo&(1<<j) == 0) {
			return true
		}
	}
	return false
}

// peek returns the next candidate without taking it.
func (q *query) peek() *Upstream {
	if q.peeked == nil {
		q.peeked = q.next()
	}
	return q.peeked
}

// take returns the next candidate and moves past it.
func (q *query) take() *Upstream {
	u := q.peek()
	q.peeked = nil
	return u
}

// resolve runs the attempts, starting with u, until one gives a valid
// answer or no candidate and no budget is left. It returns the answer and
// the upstream that gave it.
func (q *query) resolve(u *Upstream) (*dns.Msg, *Upstream, *attemptError) {
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
// of a healthy upstream. If no answer has come by its first checkpoint and there
// is another candidate, the attempt goes on waiting in its own goroutine
// (pending is true) and the caller moves on to race.
func (q *query) inline(u *Upstream) (m *dns.Msg, err *attemptError, pending bool) {
	start := time.Now()
	limit, checkpoint := q.ut.timing(u)
	deadline := earliest(start.Add(limit), q.deadline)
	proto := u.link.Network(q.clientProto)
	q.attempts++

	life := q.ut.life.attemptLife()
	checkAt := start.Add(silenceDelay(checkpoint))
	aq := upstream.Query{Req: q.req, Packet: q.packet, Alone: q.ut.lone()}
	if aq.Alone {
		aq.Stalled, aq.Start, aq.CheckAt = u, start, checkAt
	}
	a, serr := u.link.Send(life, q.clientProto, aq, deadline)
	if serr != nil {
		_, err = q.settle(u, nil, serr, start)
		q.tap(u, proto, nil, start)
		return nil, err, false
	}
	ret, rerr := a.Await(earliest(checkAt, deadline))
	if rerr != nil && isTimeout(rerr) && checkAt.Before(deadline) {
		// Slow: the attempt goes on in its own goroutine, and race asks
		// whether its upstream is there at all, even with nobody to hand
		// over to, since silence is then what ends the query.
		slot := q.track(u, start, checkpoint)
		o, pending := q.outgoing, a
		q.goRun(slot, func(ctx context.Context) outcome {
			ret, rerr := pending.AwaitCtx(ctx, deadline)
			ret, rerr = pending.Finish(ctx, ret, rerr, deadline)
			return o.report(ctx, u, ret, rerr, proto, start, slot)
		})
		return nil, nil, true
	}
	ret, rerr = a.Finish(life, ret, rerr, deadline)
	if rerr != nil && life.Err() != nil { // ended from outside: no verdict
		return nil, ended(life, u), false
	}
	m, err = q.settle(u, ret, rerr, start)
	q.tap(u, proto, m, start)
	return m, err, false
}

// tap tells dnstap, when configured, about an attempt that has reported.
func (q *query) tap(u *Upstream, proto string, reply *dns.Msg, start time.Time) {
	if len(q.ut.taps) > 0 {
		q.ut.toDnstap(q.ctx, request.Request{W: q.w, Req: q.req}, u, proto, reply, start)
	}
}

// race waits for the attempts in flight and starts new ones as plan says,
// until an answer is valid or the budget is spent. The attempts still in
// flight then are abandoned.
func (q *query) race() (*dns.Msg, *Upstream, *attemptError) {
	defer q.abandon()
	budget := time.NewTimer(time.Until(q.deadline))
	defer budget.Stop()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()

	for {
		if q.running == 0 {
			u := q.take()
			if u == nil || !time.Now().Before(q.deadline) {
				return nil, nil, q.budgetSpent()
			}
			q.launch(u, attemptNext)
		}

		wait, check, silent := q.plan()
		if silent {
			return nil, nil, q.silent()
		}
		var timerC <-chan time.Time
		if wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			timerC = timer.C
		}

		select {
		case o := <-q.results:
			q.running--
			q.flights[o.slot] = flight{}
			q.tap(o.upstream, o.proto, o.msg, o.start)
			if o.err == nil {
				return o.msg, o.upstream, nil
			}
			q.last, q.failed = o.err, true
		case <-timerC:
		case <-check:
		case <-budget.C:
			return nil, nil, q.budgetSpent()
		case <-q.ctx.Done():
			return nil, nil, q.budgetSpent()
		}
	}
}

// plan starts the attempts that are due and says what to wait for next:
// a checkpoint (a duration) and a liveness check (a channel), or that the
// query is over (silent). This is where strict priority is kept. Inside
// the tier of the newest attempt, a failed attempt's next candidate starts
// at once and, at the hedge delay, a hedge, or a retry to the same
// upstream when it is the only one of its tier (retryDue). Any other move,
// to a lower tier above all, waits until every attempt in flight has failed or its
// upstream has sent nothing back since the attempt started (asked with a
// liveness probe when traffic does not tell): a resolver that keeps
// answering is waited for, so a slow cache miss is not abandoned to a
// colder tier, and a blackholed one is left within a few dozen
// milliseconds. With no candidate left, the same silence ends the query:
// the last tier's silence is declared as fast as any other's.
func (q *query) plan() (wait time.Duration, check <-chan struct{}, silent bool) {
	failed := q.failed
	q.failed = false
	for q.running < maxRunning {
		next := q.peek()
		now := time.Now()
		wait = 0
		if next != nil {
			same := next.tier == q.lastTier
			hedging := same && !q.ut.hedgeOff
			switch {
			case same && failed:
				failed = false
				q.launch(q.take(), attemptNext)
				continue
			case hedging && !now.Before(q.hedgeAt) && q.ut.hedgeSlot():
				q.launch(q.take(), attemptHedge)
				continue
			}
			if hedging && now.Before(q.hedgeAt) {
				wait = q.hedgeAt.Sub(now)
			}
		}
		if q.retryDue(next) {
			if now.Before(q.hedgeAt) {
				wait = minPositive(wait, q.hedgeAt.Sub(now))
			} else if q.ut.hedgeSlot() {
				q.retry()
				continue
			}
		}
		if now.Before(q.silenceAt) {
			return minPositive(wait, q.silenceAt.Sub(now)), nil, false
		}
		alive, check := q.silence()
		switch {
		case check != nil:
			return wait, check, false
		case alive:
			q.silenceAt = now.Add(q.recheck)
			continue
		case next == nil && q.rehear():
			q.silenceAt = now.Add(q.recheck)
			continue
		case next == nil:
			return 0, nil, true
		}
		q.launch(q.take(), attemptNext)
	}
	return 0, nil, false
}

// minPositive returns the smaller of a and b, ignoring a zero a.
func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 {
		return b
	}
	return min(a, b)
}

// silence asks, for each attempt in flight, whether its upstream has sent
// anything back since the attempt started or was last seen alive. alive
// says one has; check is a liveness check to wait for; neither means every
// attempt in flight is from a silent upstream.
func (q *query) silence() (alive bool, check <-chan struct{}) {
	for i := range q.flights {
		f := &q.flights[i]
		if f.u == nil || f.silent {
			continue
		}
		if f.check == nil {
			f.check = f.u.checkAlive(f.since)
		}
		select {
		case <-f.check.done:
			alive := f.check.alive
			f.check = nil
			if alive {
				f.since = time.Now()
				return true, nil
			}
			f.silent = true
		default:
			return false, f.check.done
		}
	}
	return false, nil
}

// rehear asks again about the attempts in flight whose upstreams were
// found silent but are still up, and reports whether there are any. One
// silent probe is one piece of evidence, which a stall of this machine can
// give too: with nothing left to try, the query ends when the upstreams
// are down on that evidence (fall in a row), not at the first.
func (q *query) rehear() bool {
	again := false
	for i := range q.flights {
		if f := &q.flights[i]; f.u != nil && f.silent && f.u.available() {
			f.silent, again = false, true
		}
	}
	return again
}

// maxRetries bounds the retries of one query: a datagram lost on the way
// to or from an upstream is sent again at its RTO, then at twice that.
const maxRetries = 2

// retryDue reports whether the newest attempt may be sent again to its
// upstream, at the hedge checkpoint: over UDP, where a datagram can be
// lost, when no other upstream of its tier can take a hedge (next is the
// next candidate), and only while the upstream answers other queries
// since the attempt started: then the attempt's datagram or its answer
// may have been lost, while a silent upstream is left for the next
// candidate instead. A slot stays free for that candidate. A recursive
// resolver merges the copy with the query in flight, so a retry costs
// the authoritative servers nothing.
func (q *query) retryDue(next *Upstream) bool {
	u := q.lastUp
	if u == nil || q.retries >= maxRetries || !u.available() || u.link.Network(q.clientProto) != "udp" {
		return false
	}
	if next != nil && (next.tier == q.lastTier || q.running+1 >= maxRunning) {
		return false
	}
	return u.answeredSince(q.lastAt)
}

// retry sends the newest attempt's query to its upstream again, as an
// attempt of its own, and backs the next checkpoint off.
func (q *query) retry() {
	u := q.lastUp
	q.retries++
	retryCount.WithLabelValues(metrics.WithServer(q.ctx), u.tier.name, u.Addr()).Inc()
	q.launch(u, attemptRetry)
	q.hedgeAt = q.hedgeAt.Add(time.Duration(q.retries) * q.recheck) // RFC 6298's backoff: 2·RTO, then 3·RTO
}

// The kinds of attempt launch starts.
const (
	attemptNext  = iota // the next candidate
	attemptHedge        // a hedge within the tier
	attemptRetry        // the newest attempt again, to the same upstream
)

// launch starts an attempt of the kind given in its own goroutine.
func (q *query) launch(u *Upstream, kind int) {
	start := time.Now()
	limit, checkpoint := q.ut.timing(u)
	deadline := earliest(start.Add(limit), q.deadline)
	q.attempts++
	if kind == attemptHedge {
		q.hedges++
		hedgeCount.WithLabelValues(metrics.WithServer(q.ctx), u.tier.name).Inc()
	}
	slotted := kind != attemptNext // hedges and retries hold a plugin-wide slot
	proto := u.link.Network(q.clientProto)
	aq := upstream.Query{Req: q.req, Packet: q.packet.Clone()} // the attempt's own wire, which its transport may write into
	slot := q.track(u, start, checkpoint)
	o := q.outgoing
	q.goRun(slot, func(ctx context.Context) outcome {
		defer o.ut.hedgeDone(slotted)
		ret, err := u.exchange(ctx, o.clientProto, aq, deadline)
		return o.report(ctx, u, ret, err, proto, start, slot)
	})
}

// report is the outcome of an attempt that ran in its own goroutine. One
// that was abandoned (its query returned, or the plugin shuts down) before
// it had an answer says nothing about the upstream: it is not judged.
func (o *outgoing) report(ctx context.Context, u *Upstream, ret *dns.Msg, err error, proto string, start time.Time, slot int) outcome {
	if err != nil && ctx.Err() != nil {
		return outcome{nil, u, ended(ctx, u), proto, start, slot}
	}
	m, cause := o.settle(u, ret, err, start)
	return outcome{m, u, cause, proto, start, slot}
}

// abandon ends the attempts still in flight: their query has returned.
func (q *query) abandon() {
	for i := range q.flights {
		if f := &q.flights[i]; f.u != nil {
			f.abandon()
		}
	}
}

// track records a new attempt in a free flight slot, as the newest.
func (q *query) track(u *Upstream, start time.Time, checkpoint time.Duration) int {
	slot := 0
	for q.flights[slot].u != nil {
		slot++
	}
	q.flights[slot] = flight{u: u, since: start}
	q.lastTier, q.lastUp, q.lastAt, q.recheck = u.tier, u, start, checkpoint
	q.hedgeAt, q.silenceAt = start.Add(checkpoint), start.Add(silenceDelay(checkpoint))
	return slot
}

// silenceDelay is how long an attempt waits before its upstream is first
// asked whether it is alive: early, since under load the answer is free
// (other answers arrive all the time) and without load it costs one probe
// of a cached name.
func silenceDelay(checkpoint time.Duration) time.Duration {
	return min(minHedgeDelay, checkpoint)
}

// goRun runs the attempt in the given flight slot in its own goroutine,
// reporting to q.results. The attempt's context ends when the query
// abandons it or shutdownGrace after the plugin shuts down. At most maxRunning attempts are in
// flight and each report read frees its slot, so a channel of maxRunning
// never blocks a report, even after the query is answered and nobody reads
// any more.
func (q *query) goRun(slot int, attempt func(ctx context.Context) outcome) {
	if q.results == nil {
		q.results = make(chan outcome, maxRunning)
	}
	ctx, cancel := context.WithCancel(q.ut.life.attemptLife())
	q.flights[slot].abandon = cancel
	q.running++
	results := q.results
	go func() {
		o := attempt(ctx)
		cancel()
		results <- o
	}()
}

// settle judges an attempt and tells metrics, the upstream's health and the
// failover memory about the verdict; it returns the answer when it may
// reach the client.
func (o *outgoing) settle(u *Upstream, m *dns.Msg, err error, start time.Time) (*dns.Msg, *attemptError) {
	cause := judge(u, o.question, o.ut.failover, m, err)
	rtt := time.Since(start)
	server := metrics.WithServer(o.ctx)
	if cause == nil {
		u.series(server).duration.Observe(rtt.Seconds())
	} else {
		attemptFailures.WithLabelValues(server, u.tier.name, u.Addr(), cause.label()).Inc()
		if cause.reason == reasonRcode && o.ut.memory.remember(o.name, o.qtype, u.tier.index) {
			memoryRemembered.WithLabelValues(server, u.tier.name).Inc()
		}
	}
	if o.judged && !o.ut.life.closing.Load() {
		u.report(o.question, start, rtt, cause)
	}
	if cause != nil {
		return nil, cause
	}
	return m, nil
}

// release gives back the buffer the query was packed into, unless an
// attempt that runs in its own goroutine may still read it.
func (q *query) release(buf *[]byte) {
	if q.results == nil {
		upstream.PutBuffer(buf)
	}
}

// silent is the failure to report when the upstream of every attempt in
// flight has sent nothing back since the attempt started, and nothing is
// left to try.
func (q *query) silent() *attemptError {
	for _, f := range q.flights {
		if f.u != nil {
			return &attemptError{upstream: f.u, reason: reasonSilent}
		}
	}
	return q.budgetSpent()
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

// ended is the failure of an attempt on u that ctx ended before it had an
// answer: no verdict on the upstream, and the reason its query is told.
func ended(ctx context.Context, u *Upstream) *attemptError {
	if errors.Is(context.Cause(ctx), errAllDown) {
		return &attemptError{upstream: u, reason: reasonAllDown}
	}
	return &attemptError{upstream: u, reason: reasonNetwork, err: errAbandoned}
}

// errAbandoned is the error of an attempt that its query no longer waited for.
var errAbandoned = errors.New("attempt abandoned: its query returned or the plugin shuts down")
