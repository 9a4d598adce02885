package upstreamtier

import "github.com/prometheus/client_golang/prometheus"

// healthChanged reports an upstream going down or up, in logs and metrics,
// and what it means for the tiers: a failover or a fail-back when the
// serving tier, the first available one, changes.
func (ut *UpstreamTier) healthChanged(u *Upstream, up bool, cause *attemptError) {
	t := u.tier
	if up {
		log.Infof("upstream %s of tier %s is up again", u.Addr(), t.name)
		upstreamHealthy.WithLabelValues(ut.hc.server, t.name, u.Addr()).Set(1)
		upstreamDownReason.DeletePartialMatch(prometheus.Labels{"server": ut.hc.server, "tier": t.name, "upstream": u.Addr()})
	} else {
		log.Infof("upstream %s of tier %s is down: %s", u.Addr(), t.name, cause)
		upstreamHealthy.WithLabelValues(ut.hc.server, t.name, u.Addr()).Set(0)
		upstreamDownReason.DeletePartialMatch(prometheus.Labels{"server": ut.hc.server, "tier": t.name, "upstream": u.Addr()})
		upstreamDownReason.WithLabelValues(ut.hc.server, t.name, u.Addr(), cause.label()).Set(1)
	}
	ut.tiersChanged()
	if ut.observe != nil {
		ut.observe(u, up)
	}
}

// tiersChanged updates the tiers' availability and the serving tier, and
// logs and counts a failover or fail-back when the serving tier moved.
func (ut *UpstreamTier) tiersChanged() {
	ut.stateMu.Lock()
	defer ut.stateMu.Unlock()
	serving := -1
	for i, t := range ut.tiers {
		available := t.available()
		tierAvailable.WithLabelValues(ut.hc.server, t.name).Set(boolGauge(available))
		if available && serving < 0 {
			serving = i
		}
		servingTier.WithLabelValues(ut.hc.server, t.name).Set(boolGauge(serving == i))
	}
	prev := ut.serving
	if serving == prev {
		return
	}
	ut.serving = serving
	from, to := ut.tierName(prev), ut.tierName(serving)
	switch {
	case serving < 0:
		log.Infof("no tier is available: failover from tier %s to none", from)
		failoverCount.WithLabelValues(ut.hc.server, from, to).Inc()
	case prev < 0 || serving < prev:
		log.Infof("tier %s is available again: fail-back from tier %q to tier %s", to, from, to)
		failbackCount.WithLabelValues(ut.hc.server, from, to).Inc()
	default:
		log.Infof("tier %s is unavailable: failover to tier %s", from, to)
		failoverCount.WithLabelValues(ut.hc.server, from, to).Inc()
	}
}

// tierName returns the name of the i-th tier, or "" for none.
func (ut *UpstreamTier) tierName(i int) string {
	if i < 0 {
		return ""
	}
	return ut.tiers[i].name
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
