package upstreamtier

import (
	"math/rand/v2"
	"sync/atomic"
)

// Policy orders the upstreams of one tier for a query. A query walks the
// tier from the first upstream by the step, modulo the tier's size, so an
// order costs no allocation and no work that grows with the tier.
type Policy interface {
	// Start returns, for a tier of n upstreams, the index of the first to
	// try and the step to the next ones; the step is coprime with n, so the
	// walk visits every upstream once.
	Start(n int) (first, step int)
	String() string
}

// newPolicy returns the policy with this Corefile name, or nil.
func newPolicy(name string) Policy {
	switch name {
	case "random":
		return &random{}
	case "round_robin":
		return &roundRobin{}
	case "sequential":
		return &sequential{}
	}
	return nil
}

// random spreads queries evenly; the default, as in forward. The first
// upstream is drawn uniformly; so is the step among those coprime with the
// tier's size, which spreads the queries a failing upstream passes on over
// the others (all of them when the size is prime; every order of up to
// three upstreams is drawn).
type random struct{}

func (r *random) String() string { return "random" }

func (r *random) Start(n int) (first, step int) {
	if n <= 1 {
		return 0, 1
	}
	first = rand.IntN(n) //nolint:gosec // G404: spreads load, guards no secret
	for {
		step = 1 + rand.IntN(n-1) //nolint:gosec // G404: spreads load, guards no secret
		if gcd(step, n) == 1 {
			return first, step
		}
	}
}

// roundRobin starts each query one upstream further along the list.
type roundRobin struct {
	robin atomic.Uint32
}

func (r *roundRobin) String() string { return "round_robin" }

func (r *roundRobin) Start(n int) (first, step int) {
	return int(r.robin.Add(1) % uint32(n)), 1 //nolint:gosec // G115: a tier has few upstreams
}

// sequential always tries the upstreams in the order written.
type sequential struct{}

func (r *sequential) String() string { return "sequential" }

func (r *sequential) Start(int) (first, step int) { return 0, 1 }

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
