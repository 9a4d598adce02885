package upstreamtier

import (
	"sync/atomic"
	"time"

	"github.com/coredns/coredns/plugin/pkg/rand"
)

// Policy orders the upstreams of one tier for a query.
type Policy interface {
	List([]*Upstream) []*Upstream
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

// random spreads queries evenly; the default, as in forward.
type random struct{}

func (r *random) String() string { return "random" }

func (r *random) List(us []*Upstream) []*Upstream {
	switch len(us) {
	case 1:
		return us
	case 2:
		if rn.Int()%2 == 0 {
			return []*Upstream{us[1], us[0]}
		}
		return us
	}
	perm := rn.Perm(len(us))
	out := make([]*Upstream, len(us))
	for i, j := range perm {
		out[i] = us[j]
	}
	return out
}

// roundRobin starts each query one upstream further along the list.
type roundRobin struct {
	robin uint32
}

func (r *roundRobin) String() string { return "round_robin" }

func (r *roundRobin) List(us []*Upstream) []*Upstream {
	i := atomic.AddUint32(&r.robin, 1) % uint32(len(us)) // #nosec G115 -- a tier has few upstreams
	out := make([]*Upstream, 0, len(us))
	out = append(out, us[i:]...)
	return append(out, us[:i]...)
}

// sequential always tries the upstreams in the order written.
type sequential struct{}

func (r *sequential) String() string { return "sequential" }

func (r *sequential) List(us []*Upstream) []*Upstream { return us }

var rn = rand.New(time.Now().UnixNano())
