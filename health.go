package upstreamtier

import (
	"sync"
	"sync/atomic"
	"time"
)

// This file is the path from what an exchange says about an upstream to
// the serving tier: report takes every client attempt's verdict, evidence
// counts what says the upstream itself is down, markDown and markUp change
// its state, and healthChanged moves the serving tier. Probes (probe.go)
// feed the same functions.

// healthCheck is the plugin-wide health configuration its upstreams
// share, set by the parser and only read after.
type healthCheck struct {
	interval time.Duration // probe interval of a down upstream, at most
	standby  time.Duration // probe interval of an upstream that gets no traffic; 0: off
	domain   string        // name reachability probes ask for (type NS)
	served   bool          // domain was given: every upstream serves it, so its rcode counts
	noRec    bool          // probes without the RD bit
	fall     int           // pieces of evidence in a row that mark an upstream down; 0: never
	rise     int           // good probes in a row that bring it back
	limit    time.Duration // attempt_timeout: the probes' timeout cap too
	failover map[int]bool  // rcodes that fail a probe as they fail an attempt
}

const (
	// minHedgeDelay is the shortest checkpoint of an attempt: before it, no
	// hedge and no liveness question.
	minHedgeDelay = 25 * time.Millisecond
	// defaultHedgeDelay is the checkpoint before an upstream's RTT is known.
	defaultHedgeDelay = 100 * time.Millisecond
	// flapWindow: an upstream that goes down again within this time of
	// coming back is flapping, and its probing starts further backed off.
	flapWindow = 30 * time.Second
	maxFlaps   = 2
)

// health is what recent exchanges and probes say about one upstream.
type health struct {
	down    atomic.Bool
	answers rtt // of good answers to client queries
	// answered is when the upstream last sent anything back, in Unix ns:
	// an answer of any rcode to any query or probe proves it is alive.
	answered atomic.Int64
	probes   rtt // of answered probes: a cached name's

	mu sync.Mutex
	// fails counts the evidence in a row that the upstream is down: network
	// errors, attempts that heard nothing back, failed probes. Any answer
	// from the upstream ends the run.
	fails int
	// suspect counts answers in a row that failed their attempt (failover
	// rcode, mismatch): not evidence, since one broken name causes them, but
	// reason enough to probe.
	suspect int
	probing bool // a suspicion probe is in flight
	// good is the newest client question the upstream answered well, and
	// probeGood whether it answers the probe name well: what a suspicion
	// probe asks again, to tell an upstream that fails some names from one
	// that fails every name.
	good      question
	probeGood bool
	// refusing says the upstream went down for what it answers, not for
	// silence: it is there and fails the names it is asked. asked is the
	// newest client question it failed or was passed over for since, which
	// its down probes ask, since the probe name proves nothing about names.
	// refusing is written under mu and read without it by passedOver,
	// which every query that skips the upstream calls.
	refusing  atomic.Bool
	asked     question
	probed    time.Time // when the last suspicion probe started
	liveness  *liveness // the liveness check in flight, nil if none
	upSince   time.Time // when the upstream last came back up
	downSince atomic.Int64
	flaps     int // recent quick relapses; backs off the next probing
}

// available reports whether the upstream may get client queries.
func (u *Upstream) available() bool { return !u.health.down.Load() }

// answeredSince reports whether the upstream sent anything back after t.
func (u *Upstream) answeredSince(t time.Time) bool {
	return u.health.answered.Load() > t.UnixNano()
}

// report is where the verdict on a client attempt that started at start
// reaches the upstream's health. A good answer feeds the RTT estimate; a
// failover rcode or a mismatched answer fails that query over but is no
// evidence against the upstream, since one broken name or one client's
// query causes it; only when such answers pile up is the upstream probed.
// A timeout is evidence only if the upstream sent nothing back since the
// attempt started (see evidence): one that keeps answering is busy, or
// dropped this one.
func (u *Upstream) report(q question, start time.Time, rtt time.Duration, cause *attemptError) {
	switch {
	case cause == nil:
		u.goodAnswer(q, rtt)
	case cause.answered():
		u.alive()
		u.suspectAnswer(q, cause)
	default:
		u.evidence(start, cause)
	}
}

// goodAnswer records an answer to q that reached the client, and its RTT.
func (u *Upstream) goodAnswer(q question, rtt time.Duration) {
	if !u.state.ready.Load() {
		u.state.ready.Store(true)
	}
	h := &u.health
	h.mu.Lock()
	h.suspect = 0
	h.good = q
	h.answers.sample(rtt)
	lc := h.heard()
	h.mu.Unlock()
	lc.finish(true)
}

// alive records that the upstream sent something back.
func (u *Upstream) alive() {
	h := &u.health
	h.mu.Lock()
	lc := h.heard()
	h.mu.Unlock()
	lc.finish(true)
}

// heard notes, with h.mu held, that the upstream sent something back: the
// run of evidence against it ends, and it returns the liveness check in
// flight, if any, for the caller to finish once the lock is released.
func (h *health) heard() *liveness {
	h.answered.Store(time.Now().UnixNano())
	h.fails = 0
	lc := h.liveness
	h.liveness = nil
	return lc
}

// evidence records one sign that the upstream itself is down, from an
// attempt or probe sent at start; the fall-th in a row marks it down. A
// timeout is no evidence when the upstream sent something back since start:
// it is alive, and this one was dropped (a probe that fails after a later
// query was answered must not start a new run).
func (u *Upstream) evidence(start time.Time, cause *attemptError) {
	h := &u.health
	h.mu.Lock()
	if cause.reason == reasonTimeout {
		if h.answered.Load() > start.UnixNano() {
			h.mu.Unlock()
			return
		}
	}
	h.fails++
	enough := h.fails >= u.hc.fall
	h.mu.Unlock()
	if enough {
		u.markDown(cause)
	}
}

// suspectAnswer counts an answer to q that failed its attempt; the
// fall-th in a row asks whether the upstream still answers a name it
// answered well before (the probe name when it answers that, else the
// newest good client name), at most once per interval, and only a failing
// probe marks it down. So an upstream that fails every name goes down after
// fall answers and one probe, and one that fails a single domain never
// does. One that has answered no name well yet is down after fall answers:
// nothing says it can answer any, and its down probes ask client names.
func (u *Upstream) suspectAnswer(q question, cause *attemptError) {
	if u.hc.fall == 0 {
		return // never marked down, so never probed for it
	}
	h := &u.health
	h.mu.Lock()
	h.suspect++
	h.asked = q
	if h.suspect < u.hc.fall || h.probing || h.down.Load() || time.Since(h.probed) < u.hc.interval {
		h.mu.Unlock()
		return
	}
	again, known := h.goodQuestion(u.hc)
	if !known {
		h.mu.Unlock()
		u.markDown(cause)
		return
	}
	h.probing, h.probed = true, time.Now()
	h.mu.Unlock()
	started := u.life.goProbe(func() {
		start := time.Now()
		cause := u.nameProbe(probeSuspect, again)
		h.mu.Lock()
		h.probing = false
		if cause == nil {
			h.suspect = 0
		}
		h.mu.Unlock()
		if cause != nil {
			u.probeFailed(start, cause)
		}
	})
	if !started {
		h.mu.Lock()
		h.probing = false
		h.mu.Unlock()
	}
}

// goodQuestion returns, with h.mu held, a question the upstream answered
// well lately, and whether there is one.
func (h *health) goodQuestion(hc *healthCheck) (question, bool) {
	if h.probeGood {
		return hc.probeQuestion(), true
	}
	return h.good, h.good.name != ""
}

// passedOver notes that a client query for q skipped the upstream while
// it is down: a down probe of an upstream that fails names asks the
// newest of them.
func (u *Upstream) passedOver(q question) {
	h := &u.health
	if !h.refusing.Load() {
		return // a silent upstream's probes ask the probe name: no lock to take
	}
	h.mu.Lock()
	if h.refusing.Load() {
		h.asked = q
	}
	h.mu.Unlock()
}

// markDown takes the upstream out of its tier and starts probing it;
// never with fall 0. The tiers' owner is told when it was up.
func (u *Upstream) markDown(cause *attemptError) {
	if u.hc.fall == 0 {
		return
	}
	if flaps, changed := u.health.setDown(cause.answered()); changed {
		u.state.upstreamChanged(u, false, cause)
		u.life.goProbe(func() { u.probeLoop(flaps) })
	}
}

// setDown marks the health down, for silence or, refusing, for what the
// upstream answers. It reports whether it was up, and the recent flaps.
func (h *health) setDown(refusing bool) (flaps int, changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down.Load() {
		return 0, false
	}
	h.down.Store(true)
	h.refusing.Store(refusing)
	h.downSince.Store(time.Now().UnixNano())
	if !h.upSince.IsZero() && time.Since(h.upSince) < flapWindow {
		h.flaps = min(h.flaps+1, maxFlaps)
	} else {
		h.flaps = 0
	}
	return h.flaps, true
}

// markUp brings the upstream back after rise good probes; the tiers'
// owner is told when it was down.
func (u *Upstream) markUp() {
	if u.health.setUp() {
		u.state.upstreamChanged(u, true, nil)
	}
}

// setUp marks the health up and reports whether it was down.
func (h *health) setUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fails, h.suspect = 0, 0
	h.refusing.Store(false)
	if !h.down.Load() {
		return false
	}
	h.upSince = time.Now()
	h.down.Store(false)
	return true
}

// checkpoint returns when an attempt still unanswered is hedged within the
// tier, or its upstream asked whether it is alive at all: the RFC 6298
// retransmission timeout srtt + 4·rttvar, bounded by limit. The attempt
// itself may wait the whole limit: a recursive resolver's cache miss takes
// far longer than its hits, and is worth waiting for while the resolver
// keeps answering.
func (u *Upstream) checkpoint(limit time.Duration) time.Duration {
	rto := u.health.answers.rto()
	if rto == 0 {
		return min(limit, defaultHedgeDelay)
	}
	return min(max(rto, minHedgeDelay), limit)
}
