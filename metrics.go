package upstreamtier

import (
	"sync/atomic"

	"github.com/coredns/coredns/plugin"

	"github.com/miekg/dns"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the plugin. Labels name tiers and upstreams from the Corefile,
// never query names: their number is bounded by the configuration and by
// the addresses its host names resolve to over time (a series goes with
// the address it is of).
var (
	requestsCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "requests_total",
		Help:      "Queries answered by an upstream, by tier, upstream and rcode of the answer.",
	}, []string{"server", "tier", "upstream", "rcode"})

	servfailCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "servfail_total",
		Help:      "Queries answered SERVFAIL by the plugin itself: all_down (nothing healthy), all_failed (every attempt failed) or prohibited (no tier may see the name).",
	}, []string{"server", "reason"})

	attemptDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "attempt_duration_seconds",
		Buckets:   plugin.TimeBuckets,
		Help:      "Time from sending a query to an upstream to its valid answer.",
	}, []string{"server", "tier", "upstream"})

	attemptFailures = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "attempt_failures_total",
		Help:      "Failed attempts by reason: timeout, network, rcode (a failover rcode) or mismatch (an answer that does not match the query).",
	}, []string{"server", "tier", "upstream", "reason"})

	hedgeCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "hedges_total",
		Help:      "Hedged attempts, by the tier they went to.",
	}, []string{"server", "tier"})

	retryCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "retries_total",
		Help:      "Attempts sent again over UDP to the same upstream at its RTO, when no other upstream of its tier could take a hedge.",
	}, []string{"server", "tier", "upstream"})

	resolveFailures = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "resolve_failures_total",
		Help:      "Failed lookups of an upstream host name after startup; its last good addresses are kept.",
	}, []string{"server", "tier", "name"})
	upstreamHealthy = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "upstream_healthy",
		Help:      "1 while the upstream gets client queries, 0 while it is down and only probed.",
	}, []string{"server", "tier", "upstream"})

	upstreamDownReason = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "upstream_down_reason",
		Help:      "1 for the reason the upstream was last marked down: timeout, network, rcode or mismatch.",
	}, []string{"server", "tier", "upstream", "reason"})

	tierAvailable = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "tier_available",
		Help:      "1 while at least one upstream of the tier is up.",
	}, []string{"server", "tier"})

	servingTier = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "serving_tier",
		Help:      "1 for the tier that gets the queries now: the first available one.",
	}, []string{"server", "tier"})

	failoverCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "failovers_total",
		Help:      "Times the serving tier moved down, from one tier to a lower one (to is empty when none was left).",
	}, []string{"server", "from", "to"})

	failbackCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "failbacks_total",
		Help:      "Times the serving tier moved back up (from is empty when no tier was available).",
	}, []string{"server", "from", "to"})

	overloadCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "max_concurrent_rejects_total",
		Help:      "Queries refused because max_concurrent queries were in flight.",
	}, []string{"server"})

	probeCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "probes_total",
		Help:      "Health probes by kind (down: of a down upstream; standby: of an upstream without traffic, and at startup; suspect: after failover rcodes piled up; liveness: an attempt unanswered and nothing else heard) and result: ok or fail.",
	}, []string{"server", "tier", "upstream", "kind", "result"})

	memoryRemembered = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "failover_memory_remembered_total",
		Help:      "Failover rcodes remembered for their name and type, by the tier that answered them.",
	}, []string{"server", "tier"})

	memorySkips = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "failover_memory_skips_total",
		Help:      "Queries that went past a tier because it recently failed their name and type.",
	}, []string{"server", "tier"})

	localAnswers = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "local_answers_total",
		Help:      "Queries the plugin answered itself because of their type (AXFR, IXFR, TKEY: NOTIMP; 0, OPT, TSIG: FORMERR), by type.",
	}, []string{"server", "qtype"})
)

// upstreamSeries are an upstream's metric children of the hot path for
// one server label, looked up once rather than by hashing label values for
// every query. A child is made on first use, as WithLabelValues would;
// these vectors' children are never deleted, or the cache would hold
// detached ones.
type upstreamSeries struct {
	server   string
	duration prometheus.Observer
	requests [16]atomic.Pointer[prometheus.Counter] // by rcode; others are looked up each time
}

// series returns u's children for the server label.
func (u *Upstream) series(server string) *upstreamSeries {
	if s := u.metrics.Load(); s != nil && s.server == server {
		return s
	}
	s := &upstreamSeries{server: server, duration: attemptDuration.WithLabelValues(server, u.tier.name, u.Addr())}
	u.metrics.Store(s)
	return s
}

// answered counts a query answered by u with rcode.
func (s *upstreamSeries) answered(u *Upstream, rcode int) {
	if rcode < 0 || rcode >= len(s.requests) {
		requestsCount.WithLabelValues(s.server, u.tier.name, u.Addr(), rcodeName(rcode)).Inc()
		return
	}
	c := s.requests[rcode].Load()
	if c == nil {
		counter := requestsCount.WithLabelValues(s.server, u.tier.name, u.Addr(), rcodeName(rcode))
		c = &counter
		s.requests[rcode].Store(c)
	}
	(*c).Inc()
}

// Reasons of the plugin's own SERVFAILs, as counted in servfail_total.
const (
	servfailProhibited = "prohibited" // no tier that may see the name is available
	servfailAllDown    = "all_down"   // no upstream is up
	servfailAllFailed  = "all_failed" // every attempt failed, or the budget is spent
)

// initMetrics creates, at 0, every series the configuration determines, so
// that dashboards and alerts (rate, increase, absent) work from startup
// rather than from each series' first event. Only upstream_down_reason is
// left out: it exists while an upstream is down. requests_total starts
// with the rcodes nearly every answer has, NOERROR and NXDOMAIN (unless
// they are failover rcodes); the others appear with their first answer.
func (ut *UpstreamTier) initMetrics() {
	server := ut.state.server
	for _, reason := range []string{servfailProhibited, servfailAllDown, servfailAllFailed} {
		servfailCount.WithLabelValues(server, reason)
	}
	overloadCount.WithLabelValues(server)
	for qtype, name := range dns.TypeToString {
		if _, ok := localRcode(qtype); ok {
			localAnswers.WithLabelValues(server, name)
		}
	}
	for i, t := range ut.tiers {
		hedgeCount.WithLabelValues(server, t.name)
		if ut.memory != nil {
			memoryRemembered.WithLabelValues(server, t.name)
			memorySkips.WithLabelValues(server, t.name)
		}
		// The serving tier moves down from any tier to any lower one or to
		// none, and back up from none or any tier to any higher one.
		failoverCount.WithLabelValues(server, t.name, "")
		failbackCount.WithLabelValues(server, "", t.name)
		for _, lower := range ut.tiers[i+1:] {
			failoverCount.WithLabelValues(server, t.name, lower.name)
			failbackCount.WithLabelValues(server, lower.name, t.name)
		}
		for _, u := range t.upstreams() {
			ut.initUpstreamMetrics(u)
		}
	}
}

// initUpstreamMetrics creates the series of one upstream at 0.
func (ut *UpstreamTier) initUpstreamMetrics(u *Upstream) {
	server, tier, addr := ut.state.server, u.tier.name, u.Addr()
	for _, rcode := range []int{dns.RcodeSuccess, dns.RcodeNameError} {
		if !ut.failover[rcode] {
			requestsCount.WithLabelValues(server, tier, addr, rcodeName(rcode))
		}
	}
	attemptDuration.WithLabelValues(server, tier, addr)
	retryCount.WithLabelValues(server, tier, addr)
	for _, r := range []reason{reasonTimeout, reasonNetwork, reasonRcode, reasonMismatch} {
		attemptFailures.WithLabelValues(server, tier, addr, r.label())
	}
	for _, kind := range []string{probeDown, probeStandby, probeSuspect, probeLiveness} {
		for _, cause := range []*attemptError{nil, {}} {
			probeCount.WithLabelValues(server, tier, addr, kind, probeResult(cause))
		}
	}
}
