package upstreamtier

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// tierState is the one owner of what the upstreams' health means for the
// plugin: the serving tier, readiness and whether no tier is available.
// An upstream that went down or came back tells it (markDown, markUp); it
// logs, counts, and moves the serving tier.
type tierState struct {
	tiers  []*Tier
	server string // the server label of the health metrics
	life   *lifecycle

	ready       atomic.Bool // some upstream has answered: the plugin is ready
	noneServing atomic.Bool // no tier is available: down upstreams are probed at once

	mu      sync.Mutex // serializes changes of the serving tier
	serving int        // index of the serving tier, -1 for none; the first at start
}

// upstreamChanged reports an upstream going down or up, in metrics and
// logs, and what it means for the tiers: a failover or a fail-back when
// the serving tier, the first available one, changes. The log lines come
// last, once every metric says what they say.
func (ts *tierState) upstreamChanged(u *Upstream, up bool, cause *attemptError) {
	t := u.tier
	labels := prometheus.Labels{"server": ts.server, "tier": t.name, "upstream": u.Addr()}
	upstreamDownReason.DeletePartialMatch(labels)
	if up {
		upstreamHealthy.With(labels).Set(1)
	} else {
		upstreamHealthy.With(labels).Set(0)
		upstreamDownReason.WithLabelValues(ts.server, t.name, u.Addr(), cause.label()).Set(1)
	}
	moved := ts.move()
	if up {
		log.Infof("upstream %s of tier %s is up again", u.Addr(), t.name)
	} else {
		log.Infof("upstream %s of tier %s is down: %s", u.Addr(), t.name, cause)
	}
	if moved != "" {
		log.Info(moved)
	}
}

// update sets the tiers' availability and the serving tier, and logs and
// counts a failover or fail-back when the serving tier moved.
func (ts *tierState) update() {
	if moved := ts.move(); moved != "" {
		log.Info(moved)
	}
}

// move sets the tiers' availability and the serving tier, and counts a
// failover or fail-back when the serving tier moved; it returns the line
// to log about it, "" when it did not move.
func (ts *tierState) move() string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	serving := -1
	for i, t := range ts.tiers {
		available := t.available()
		tierAvailable.WithLabelValues(ts.server, t.name).Set(boolGauge(available))
		if available && serving < 0 {
			serving = i
		}
		servingTier.WithLabelValues(ts.server, t.name).Set(boolGauge(serving == i))
	}
	ts.noneServing.Store(serving < 0)
	prev := ts.serving
	if serving == prev {
		return ""
	}
	ts.serving = serving
	if serving < 0 {
		ts.life.endAttempts(errAllDown)
	}
	from, to := ts.tierName(prev), ts.tierName(serving)
	switch {
	case serving < 0:
		failoverCount.WithLabelValues(ts.server, from, to).Inc()
		return fmt.Sprintf("no tier is available: failover from tier %s to none", from)
	case prev < 0 || serving < prev:
		failbackCount.WithLabelValues(ts.server, from, to).Inc()
		return fmt.Sprintf("tier %s is available again: fail-back from tier %q to tier %s", to, from, to)
	default:
		failoverCount.WithLabelValues(ts.server, from, to).Inc()
		return fmt.Sprintf("tier %s is unavailable: failover to tier %s", from, to)
	}
}

// tierName returns the name of the i-th tier, or "" for none.
func (ts *tierState) tierName(i int) string {
	if i < 0 {
		return ""
	}
	return ts.tiers[i].name
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
