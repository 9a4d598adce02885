package upstreamtier

import "testing"

// Every policy's walk visits each upstream of a tier exactly once, whatever
// the tier's size.
func TestPolicyWalkVisitsAll(t *testing.T) {
	for _, name := range []string{"random", "round_robin", "sequential"} {
		p := newPolicy(name)
		for n := 1; n <= 12; n++ {
			for range 20 {
				first, step := p.Start(n)
				seen := make([]bool, n)
				for k := range n {
					i := (first + k*step) % n
					if seen[i] {
						t.Fatalf("%s, %d upstreams: upstream %d visited twice (first %d, step %d)", name, n, i, first, step)
					}
					seen[i] = true
				}
			}
		}
	}
}

// A random walk of three upstreams may take every one of the six orders.
func TestRandomPolicyOrders(t *testing.T) {
	p := newPolicy("random")
	orders := map[[3]int]bool{}
	for range 1000 {
		first, step := p.Start(3)
		orders[[3]int{first, (first + step) % 3, (first + 2*step) % 3}] = true
	}
	if len(orders) != 6 {
		t.Errorf("%d orders of 3 upstreams drawn in 1000 queries, want 6", len(orders))
	}
}
