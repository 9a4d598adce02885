package upstreamtier

import (
	"math/rand/v2"
	"sync"
	"time"

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
	minProbeTimeout = 50 * time.Millisecond
	// firstContact is how long a query waits on the liveness check of an
	// upstream that has never sent anything back (at startup, or a new
	// address of a host name) before it is taken for silent: above any
	// terrestrial RTT, far below the attempt_timeout its probe waits for.
	firstContact  = 500 * time.Millisecond
	standbyJitter = 0.1 // standby probes are spread by ±10%, so upstreams are not probed in step
)

// probe asks the upstream for the health_check domain (type NS) over the
// protocol client queries would use, and returns the verdict on its answer
// as judge gives it for an attempt. Anything that comes back, even a
// failure, proves the upstream alive. Shutdown interrupts it; the failure
// it then returns is no evidence (see probeFailed).
func (u *Upstream) probe(kind string) *attemptError {
	m := new(dns.Msg)
	m.SetQuestion(u.hc.domain, dns.TypeNS)
	m.RecursionDesired = !u.hc.noRec
	start := time.Now()
	deadline := start.Add(u.probeTimeout())

	var cause *attemptError
	wire, err := m.Pack()
	if err == nil {
		var ret *dns.Msg
		aq := attemptQuery{req: m, pkt: newPacket(wire, dns.MinMsgSize, m.Question[0])}
		ret, err = u.exchange(u.hc.lifetime(), "udp", aq, deadline)
		cause = judge(u, question{u.hc.domain, dns.TypeNS, dns.ClassINET}, u.hc.failover, ret, err)
	} else {
		cause = classify(u, err)
	}
	if cause != nil && u.hc.closing.Load() {
		return cause
	}
	if cause == nil || cause.answered() {
		u.probeAnswered(time.Since(start))
	}
	if cause == nil && !u.hc.ready.Load() {
		u.hc.ready.Store(true)
	}
	probeCount.WithLabelValues(u.hc.server, u.tier.name, u.Addr(), kind, probeResult(cause)).Inc()
	return cause
}

// probeAnswered records that a probe got an answer, and its RTT: the RTT of
// a name every resolver has cached, which bounds the next probes' timeouts.
func (u *Upstream) probeAnswered(rtt time.Duration) {
	h := &u.health
	prev := time.Duration(h.probeRTT.Load())
	if prev > 0 {
		rtt = (7*prev + rtt) / 8
	}
	h.probeRTT.Store(int64(max(rtt, 1)))
	u.alive()
}

// probeTimeout is how long a probe waits: four times the probes' smoothed
// RTT, at least minProbeTimeout; until a probe has been answered, the
// client queries' checkpoint, and before any answer at all the
// attempt_timeout.
func (u *Upstream) probeTimeout() time.Duration {
	rtt := time.Duration(u.health.probeRTT.Load())
	if rtt == 0 {
		if u.health.srtt.Load() == 0 {
			return u.hc.limit
		}
		return max(u.checkpoint(u.hc.limit), minProbeTimeout)
	}
	return min(max(4*rtt, minProbeTimeout), u.hc.limit)
}

// probeFailed acts on a failed probe of an upstream that is up. The probe
// asks for a name that must always resolve, so a failover rcode or a
// mismatched answer marks the upstream down at once; silence or a network
// error is one piece of evidence, since a single datagram can be lost.
// A probe that shutdown interrupted says nothing. It was sent at start.
func (u *Upstream) probeFailed(start time.Time, cause *attemptError) {
	if u.hc.closing.Load() {
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
// hysteresis.
func (u *Upstream) probeLoop(flaps int) {
	base := u.hc.interval
	ceiling := base << flaps
	delay := min(firstProbe, base)
	if flaps > 0 {
		delay = ceiling
	}
	good := 0
	for {
		if u.hc.noneServing.Load() {
			delay = min(delay, allDownProbe)
		}
		if !u.hc.sleep(delay) || u.retired.Load() {
			return
		}
		if cause := u.probe(probeDown); cause != nil {
			good = 0
			delay = min(2*delay, ceiling)
			continue
		}
		good++
		if good >= u.hc.rise || u.hc.noneServing.Load() {
			u.markUp()
			return
		}
		delay = min(riseProbe, base)
	}
}

// standbyLoop probes the upstream once at startup, and then every standby
// interval while it gets no client traffic (a lower tier while a higher
// one serves), so a dead backup is known before it is needed. A failed
// probe is checked again after the health_check interval. Upstreams that
// answer client queries are not probed: their traffic tells, and a down
// one is left to its probe loop.
func (u *Upstream) standbyLoop() {
	ok := u.standbyProbe("startup")
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
		if !u.hc.sleep(delay) || u.retired.Load() {
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
	cause := u.probe(probeStandby)
	if cause == nil || u.hc.closing.Load() {
		return cause == nil
	}
	log.Infof("%s probe of upstream %s of tier %s failed: %s", when, u.Addr(), u.tier.name, cause)
	u.probeFailed(start, cause)
	return false
}

// jitter returns d spread by ±standbyJitter.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (1 + standbyJitter*(2*rand.Float64()-1)))
}

// sleep waits for d and reports whether the plugin is still running.
func (hc *healthCheck) sleep(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-hc.stop:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-hc.stop:
		return false
	case <-t.C:
		return true
	}
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
		// Nothing is known of it yet, and its probe waits up to the
		// attempt_timeout: the queries move on after firstContact, the
		// probe goes on for the verdict that is evidence, shared by
		// later queries as before.
		time.AfterFunc(firstContact, func() { lc.finish(false) })
	}

	started := u.hc.goProbe(func() {
		start := time.Now()
		cause := u.probe(probeLiveness)
		h.mu.Lock()
		pending := h.liveness == lc
		if pending {
			h.liveness = nil
		}
		h.mu.Unlock()
		if !pending {
			return // something came back: alive finished the check
		}
		if u.hc.closing.Load() { // interrupted by shutdown: no verdict, nothing moves
			lc.finish(true)
			return
		}
		lc.finish(false)
		u.probeFailed(start, cause)
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
