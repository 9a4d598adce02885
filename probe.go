package upstreamtier

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/upstream"

	"github.com/miekg/dns"
)

// Kinds of probe, as counted in the probes_total metric.
const (
	probeDown     = "down"     // a down upstream, until rise probes in a row are good
	probeStandby  = "standby"  // an upstream that gets no client traffic, and every one at startup
	probeSuspect  = "suspect"  // failover rcodes or mismatches piled up in its answers
	probeLiveness = "liveness" // an attempt is unanswered and the upstream has said nothing since
)

// Probe timing. A down upstream is probed soon after it goes down and then
// backed off to the health_check interval, so a short outage fails back in
// a fraction of a second; while no tier is available, every client gets a
// SERVFAIL, so it is probed every allDownProbe and one good probe brings it
// back.
const (
	firstProbe      = 100 * time.Millisecond
	riseProbe       = 50 * time.Millisecond
	allDownProbe    = 50 * time.Millisecond
	minProbeTimeout = 40 * time.Millisecond
	// firstContact is how long a query waits on the liveness check of an
	// upstream that has never sent anything back (at startup, or a new
	// address of a host name) before it is taken for silent: above any
	// terrestrial RTT, far below the attempt_timeout its probe waits for.
	firstContact = 500 * time.Millisecond
	// firstProbeTimeout bounds the wait of a probe of an upstream that
	// has never sent anything back: a first contact over TLS across the
	// world takes a few round trips, and beyond that its silence is the
	// evidence, however long attempts may wait.
	firstProbeTimeout = 2 * time.Second
	standbyJitter     = 0.1 // standby probes are spread by ±10%, so upstreams are not probed in step
)

// probeQuestion is what reachability probes ask: the health_check domain,
// type NS.
func (hc *healthCheck) probeQuestion() question {
	return question{hc.domain, dns.TypeNS, dns.ClassINET}
}

// reachProbe asks the upstream for the probe name and returns the verdict:
// any well-formed answer proves the upstream is there, whatever its rcode
// (an authoritative server or a stub REFUSES names it does not serve, `.`
// included), unless health_check domain named a name every upstream
// serves. Whether the rcode was a failover one is kept: a suspicion probe
// asks the probe name again only of an upstream that answers it well.
func (u *Upstream) reachProbe(kind string) *attemptError {
	var failover map[int]bool
	if u.hc.served {
		failover = u.hc.failover
	}
	m, cause := u.probe(kind, u.hc.probeQuestion(), !u.hc.noRec, failover)
	if m != nil {
		h := &u.health
		h.mu.Lock()
		h.probeGood = !u.hc.failover[m.Rcode]
		h.mu.Unlock()
	}
	return cause
}

// nameProbe asks the upstream q, a name it answered or was asked by a
// client, and returns the verdict as for a client attempt: a failover
// rcode fails it.
func (u *Upstream) nameProbe(kind string, q question) *attemptError {
	if u.hc.served {
		return u.reachProbe(kind)
	}
	_, cause := u.probe(kind, q, true, u.hc.failover)
	return cause
}

// probe asks the upstream q over the protocol client queries would use,
// and returns the answer, if one came, and the verdict on it as judge
// gives it for an attempt with the failover rcodes given. Anything that
// comes back, even a failure, proves the upstream alive. Shutdown
// interrupts it; the failure it then returns is no evidence (see
// probeFailed).
func (u *Upstream) probe(kind string, q question, rd bool, failover map[int]bool) (*dns.Msg, *attemptError) {
	m := new(dns.Msg)
	m.SetQuestion(q.name, q.qtype)
	m.Question[0].Qclass = q.qclass
	m.RecursionDesired = rd
	start := time.Now()
	deadline := start.Add(u.probeTimeout())

	var ret *dns.Msg
	var cause *attemptError
	wire, err := m.Pack()
	if err == nil {
		aq := upstream.Query{Req: m, Packet: upstream.NewPacket(wire, dns.MinMsgSize, m.Question[0])}
		ret, err = u.exchange(u.life.probeLife(), "udp", aq, deadline)
		cause = judge(u, q, failover, ret, err)
	} else {
		cause = classify(u, err)
	}
	if cause != nil && u.life.closing.Load() {
		return nil, cause
	}
	if cause == nil || cause.answered() {
		u.probeAnswered(time.Since(start))
	}
	if cause == nil && !u.state.ready.Load() {
		u.state.ready.Store(true)
	}
	probeCount.WithLabelValues(u.state.server, u.tier.name, u.Addr(), kind, probeResult(cause)).Inc()
	if cause != nil && cause.reason != reasonRcode {
		ret = nil // no answer to q
	}
	return ret, cause
}

// probeAnswered records that a probe got an answer, and its RTT: the RTT of
// a name every resolver has cached, which bounds the next probes' timeouts.
func (u *Upstream) probeAnswered(rtt time.Duration) {
	h := &u.health
	h.mu.Lock()
	h.probes.sample(rtt)
	h.mu.Unlock()
	u.alive()
}

// probeTimeout is how long a probe waits: four times the probes' smoothed
// RTT, at least minProbeTimeout; until a probe has been answered, the
// client queries' checkpoint, and before any answer at all the
// attempt_timeout, at most firstProbeTimeout.
func (u *Upstream) probeTimeout() time.Duration {
	rtt := u.health.probes.smoothed()
	if rtt == 0 {
		if u.health.answers.smoothed() == 0 {
			return min(u.hc.limit, firstProbeTimeout)
		}
		return max(u.checkpoint(u.hc.limit), minProbeTimeout)
	}
	return min(max(4*rtt, minProbeTimeout), u.hc.limit)
}

// probeFailed acts on a failed probe of an upstream that is up. A
// failover rcode (to a name the upstream answered well before, or to a
// health_check domain it must serve) or a mismatched answer marks it down
// at once; silence or a network error is one piece of evidence, since a
// single datagram can be lost.
// A probe that shutdown interrupted says nothing. It was sent at start.
func (u *Upstream) probeFailed(start time.Time, cause *attemptError) {
	if u.life.closing.Load() {
		return
	}
	if cause.answered() {
		u.markDown(cause)
		return
	}
	u.evidence(start, cause)
}

// probeLoop probes a down upstream until rise probes in a row succeed:
// first after firstProbe, doubling after each failure up to the interval.
// A flapping upstream starts, and stays, further backed off: that is the
// hysteresis. One that went down for what it answers is asked the newest
// client name it failed or was passed over for; a silent one the probe
// name, and while no tier is available it is probed every allDownProbe.
func (u *Upstream) probeLoop(flaps int) {
	base := u.hc.interval
	ceiling := base << flaps
	delay := min(firstProbe, base)
	if flaps > 0 {
		delay = ceiling
	}
	good := 0
	for {
		q, refusing := u.downQuestion()
		if u.state.noneServing.Load() && !refusing {
			delay = min(delay, allDownProbe)
		}
		if !u.life.sleep(delay) || u.retired.Load() {
			return
		}
		var cause *attemptError
		if refusing {
			cause = u.nameProbe(probeDown, q)
		} else {
			cause = u.reachProbe(probeDown)
		}
		if cause != nil {
			good = 0
			delay = min(2*delay, ceiling)
			continue
		}
		good++
		if good >= u.hc.rise || u.state.noneServing.Load() {
			u.markUp()
			return
		}
		delay = min(riseProbe, base)
	}
}

// downQuestion returns what a down probe asks of an upstream that went
// down for what it answers, and whether it did.
func (u *Upstream) downQuestion() (question, bool) {
	h := &u.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.asked, h.refusing.Load() && h.asked.name != ""
}

// standbyLoop probes the upstream once at startup, and then every standby
// interval while it gets no client traffic (a lower tier while a higher
// one serves), so a dead backup is known before it is needed. A failed
// probe is checked again after the health_check interval. Upstreams that
// answer client queries are not probed: their traffic tells, and a down
// one is left to its probe loop.
func (u *Upstream) standbyLoop() {
	ok := u.startupProbe()
	if u.hc.fall == 0 {
		return // never marked down: the startup probe only tells readiness
	}
	for {
		delay := jitter(u.hc.standby)
		switch {
		case !ok && !u.health.down.Load():
			delay = u.hc.interval // confirm a failure soon
		case u.hc.standby == 0:
			return
		}
		if !u.life.sleep(delay) || u.retired.Load() {
			return
		}
		ok = true
		if !u.health.down.Load() && !u.answeredSince(time.Now().Add(-delay)) {
			ok = u.standbyProbe("standby")
		}
	}
}

// standbyProbe probes an upstream that is up, logs a failure with its
// reason and acts on it; it reports whether the probe was good.
func (u *Upstream) standbyProbe(when string) bool {
	start := time.Now()
	cause := u.reachProbe(probeStandby)
	if cause == nil || u.life.closing.Load() {
		return cause == nil
	}
	log.Infof("%s probe of upstream %s of tier %s failed: %s", when, u.Addr(), u.tier.name, cause)
	u.probeFailed(start, cause)
	return false
}

// startupProbe is an upstream's first probe; it reports whether it was
// good.
func (u *Upstream) startupProbe() bool {
	ok := u.standbyProbe("startup")
	if ok {
		u.noteProbeName()
	}
	return ok
}

// noteProbeName logs, once at startup, that the upstream fails the probe
// name: it is up, and its probes prove only that it is there; client names
// tell what it answers.
func (u *Upstream) noteProbeName() {
	h := &u.health
	h.mu.Lock()
	good := h.probeGood
	h.mu.Unlock()
	if good || u.hc.served {
		return
	}
	log.Infof("upstream %s of tier %s fails the probe name %s (an authoritative server or a stub?): probes show it is there, client names what it answers; health_check INTERVAL domain NAME, a name every upstream serves, has probes check answers too", u.Addr(), u.tier.name, u.hc.domain)
}

// jitter returns d spread by ±standbyJitter.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (1 + standbyJitter*(2*rand.Float64()-1))) //nolint:gosec // G404: spreads probes in time, guards no secret
}

// liveness is one question to an upstream that has said nothing since an
// attempt started: is it there at all? Queries waiting on it share it.
type liveness struct {
	done  chan struct{}
	alive bool // set before done is closed
	once  sync.Once
}

// aliveNow is the check of an upstream that has already answered.
var aliveNow = func() *liveness {
	lc := &liveness{done: make(chan struct{}), alive: true}
	close(lc.done)
	return lc
}()

// finish gives the check its verdict, unless it has one; a nil check has
// nobody waiting.
func (lc *liveness) finish(alive bool) {
	if lc == nil {
		return
	}
	lc.once.Do(func() {
		lc.alive = alive
		close(lc.done)
	})
}

// AskSilence asks whether the upstream is alive, as plan does for an
// attempt in flight, for an attempt that started at since on a transport
// that blocks its query until the answer, until done is closed or the
// upstream is down.
func (u *Upstream) AskSilence(since time.Time, done <-chan struct{}) {
	for u.available() {
		lc := u.checkAlive(since)
		select {
		case <-done:
			return
		case <-lc.done:
		}
		if lc.alive {
			since = time.Now()
		}
		t := time.NewTimer(u.checkpoint(u.hc.limit))
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// checkAlive returns the answer to "has the upstream sent anything back
// since t?": at once if it has, otherwise a check that ends alive with the
// next thing the upstream sends back, the probe it starts included, or
// silent when that probe fails without an answer. Silence is evidence.
func (u *Upstream) checkAlive(t time.Time) *liveness {
	if u.answeredSince(t) {
		return aliveNow
	}
	h := &u.health
	h.mu.Lock()
	if lc := h.liveness; lc != nil {
		h.mu.Unlock()
		return lc
	}
	lc := &liveness{done: make(chan struct{})}
	h.liveness = lc
	h.mu.Unlock()
	if u.health.answered.Load() == 0 {
		// Nothing is known of it yet, and its probe waits up to
		// firstProbeTimeout: the queries move on after firstContact, the
		// probe goes on for the verdict that is evidence, shared by
		// later queries as before.
		time.AfterFunc(firstContact, func() { lc.finish(false) })
	}

	started := u.life.goProbe(func() {
		start := time.Now()
		cause := u.reachProbe(probeLiveness)
		h.mu.Lock()
		pending := h.liveness == lc
		if pending {
			h.liveness = nil
		}
		h.mu.Unlock()
		if !pending {
			return // something came back: alive finished the check
		}
		if u.life.closing.Load() { // interrupted by shutdown: no verdict, nothing moves
			lc.finish(true)
			return
		}
		u.probeFailed(start, cause) // first: a query told silent may ask whether it is down
		lc.finish(false)
	})
	if !started { // shutting down: no verdict, nothing moves
		h.mu.Lock()
		h.liveness = nil
		h.mu.Unlock()
		lc.finish(true)
	}
	return lc
}

func probeResult(cause *attemptError) string {
	if cause != nil {
		return "fail"
	}
	return "ok"
}

// startProbing starts every upstream's standby probing, which begins with
// a startup probe in the background.
func (ut *UpstreamTier) startProbing() {
	for _, t := range ut.tiers {
		for _, u := range t.upstreams() {
			if !ut.life.goProbe(u.standbyLoop) {
				return
			}
		}
	}
	for _, h := range ut.hostNames {
		if !ut.life.goProbe(func() { ut.follow(h) }) {
			return
		}
	}
}
