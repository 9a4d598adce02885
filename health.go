package upstreamtier

import (
	"sync"
	"sync/atomic"
	"time"
)

// healthCheck is the plugin-wide health configuration its upstreams share.
type healthCheck struct {
	interval time.Duration // base probe interval
	domain   string        // name probes ask for (type NS)
	noRec    bool          // probes without the RD bit
	fall     int           // consecutive failed attempts that mark an upstream down
	rise     int           // consecutive good probes that bring it back
	limit    time.Duration // attempt_timeout: the probes' timeout cap too
	failover map[int]bool  // rcodes that fail a probe as they fail an attempt

	changed func(u *Upstream, up bool, cause *attemptError)
	server  string // the server label of the health metrics

	ready atomic.Bool // some upstream has answered: the plugin is ready

	mu      sync.Mutex
	stopped bool
	stop    chan struct{}  // closed on shutdown: probes end
	probes  sync.WaitGroup // running probe loops
}

// goProbe runs probe in a goroutine that shutdown waits for, unless the
// plugin is shutting down: attempts still in flight may report a failure
// then. It reports whether the goroutine started.
func (hc *healthCheck) goProbe(probe func()) bool {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.stopped {
		return false
	}
	hc.probes.Add(1)
	go func() {
		defer hc.probes.Done()
		probe()
	}()
	return true
}

// shutdown ends every probe loop and waits for them.
func (hc *healthCheck) shutdown() {
	hc.mu.Lock()
	if !hc.stopped {
		hc.stopped = true
		close(hc.stop)
	}
	hc.mu.Unlock()
	hc.probes.Wait()
}

// Bounds of the adaptive timeouts. The attempt timeout does not go below
// minAttemptTimeout because an answer's RTT mixes cache hits and misses at
// the upstream: a resolver that answers cached names in 1 ms needs far more
// for a miss, and that is not a failure. Hedging covers the latency.
const (
	minAttemptTimeout = 200 * time.Millisecond
	minHedgeDelay     = 25 * time.Millisecond
	// maxBackoff caps the probe interval of an upstream that stays down,
	// as a multiple of the base interval.
	maxBackoff = 4
	// flapWindow: an upstream that goes down again within this time of
	// coming back is flapping, and its probing starts further backed off.
	flapWindow = 30 * time.Second
	maxFlaps   = 2
)

// health is what recent attempts and probes say about one upstream.
type health struct {
	down   atomic.Bool
	srtt   atomic.Int64 // smoothed RTT in ns (RFC 6298), 0 until the first answer
	rttvar atomic.Int64 // RTT variation in ns
	// answered is when the last good answer arrived, in Unix ns: a timeout
	// of an attempt started before it is not held against the upstream.
	answered atomic.Int64

	mu      sync.Mutex
	fails   int       // consecutive failed attempts
	upSince time.Time // when the upstream last came back up
	// downSince is when it last went down, in Unix ns: all_down try picks
	// the upstream that was up most recently.
	downSince atomic.Int64
	flaps     int // recent quick relapses; backs off the next probing
}

// available reports whether the upstream may get client queries.
func (u *Upstream) available() bool { return !u.health.down.Load() }

// observe records a good answer and its RTT.
func (u *Upstream) observe(rtt time.Duration) {
	if !u.hc.ready.Load() {
		u.hc.ready.Store(true)
	}
	h := &u.health
	h.answered.Store(time.Now().UnixNano())
	h.mu.Lock()
	h.fails = 0
	srtt, rttvar := time.Duration(h.srtt.Load()), time.Duration(h.rttvar.Load())
	if srtt == 0 {
		srtt, rttvar = rtt, rtt/2
	} else {
		rttvar = (3*rttvar + (srtt - rtt).Abs()) / 4
		srtt = (7*srtt + rtt) / 8
	}
	h.srtt.Store(int64(max(srtt, 1)))
	h.rttvar.Store(int64(rttvar))
	h.mu.Unlock()
}

// fail records a failed attempt that started at start; the fall-th in a
// row marks the upstream down and starts probing it. A timeout does not
// count when the upstream has answered another query since the attempt
// started: it is alive, only busy or dropping a few queries (overload,
// rate limiting), and marking it down would turn a slowdown into an outage.
// Hedging already hides that latency from clients.
func (u *Upstream) fail(cause *attemptError, start time.Time) {
	h := &u.health
	if cause.reason == reasonTimeout && h.answered.Load() > start.UnixNano() {
		return
	}
	h.mu.Lock()
	h.fails++
	if h.fails < u.hc.fall || h.down.Load() {
		h.mu.Unlock()
		return
	}
	h.down.Store(true)
	h.downSince.Store(time.Now().UnixNano())
	if !h.upSince.IsZero() && time.Since(h.upSince) < flapWindow {
		h.flaps = min(h.flaps+1, maxFlaps)
	} else {
		h.flaps = 0
	}
	flaps := h.flaps
	h.mu.Unlock()

	u.hc.changed(u, false, cause)
	u.hc.goProbe(func() { u.probeLoop(flaps) })
}

// markUp brings the upstream back after rise good probes.
func (u *Upstream) markUp() {
	h := &u.health
	h.mu.Lock()
	h.fails = 0
	h.upSince = time.Now()
	h.down.Store(false)
	h.mu.Unlock()
	u.hc.changed(u, true, nil)
}

// timeouts returns how long an attempt may wait for its answer, and after
// how long without one a hedge goes to the next candidate: the RFC 6298
// retransmission timeout srtt + 4·rttvar, bounded by limit, which before the
// first answer is all there is to go on.
func (u *Upstream) timeouts(limit time.Duration) (attempt, hedge time.Duration) {
	srtt := time.Duration(u.health.srtt.Load())
	if srtt == 0 {
		return limit, min(limit, defaultHedgeDelay)
	}
	rto := srtt + 4*time.Duration(u.health.rttvar.Load())
	attempt = min(max(rto, minAttemptTimeout), limit)
	hedge = min(max(rto, minHedgeDelay), attempt)
	return attempt, hedge
}

// defaultHedgeDelay is the hedge delay before an upstream's RTT is known.
const defaultHedgeDelay = 100 * time.Millisecond

// probeLoop probes a down upstream until rise probes in a row succeed,
// doubling the interval after each failure up to maxBackoff times the base.
// A flapping upstream starts further backed off: that is the hysteresis.
func (u *Upstream) probeLoop(flaps int) {
	base := u.hc.interval
	ceiling := maxBackoff * base
	interval := min(base<<flaps, ceiling)
	good := 0
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-u.hc.stop:
			return
		case <-timer.C:
		}
		err := u.probe()
		probeCount.WithLabelValues(u.hc.server, u.tier.name, u.Addr(), probeResult(err)).Inc()
		if err != nil {
			good = 0
			interval = min(2*interval, ceiling)
		} else {
			good++
			if good >= u.hc.rise {
				u.markUp()
				return
			}
			interval = base
		}
		timer.Reset(interval)
	}
}
