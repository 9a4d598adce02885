package main

import (
	"fmt"
	"slices"
	"strings"
)

// A scenario is one section of the results: it runs the forwarders it is for and renders its table.
type scenario interface {
	name() string
	run(b *bench, fws []forwarder) (table string, err error)
}

// benchScenario is a scenario that is one method of the bench.
type benchScenario struct {
	id string
	fn func(b *bench, fws []forwarder) (string, error)
}

func (s benchScenario) name() string                                  { return s.id }
func (s benchScenario) run(b *bench, fws []forwarder) (string, error) { return s.fn(b, fws) }

// scenarios lists every scenario, in the order a run takes them: each
// registers itself from its own file (see register), so the order is
// that of the files' names.
func scenarios() []scenario { return registered }

// registered are the scenarios, as they registered.
var registered []scenario

// register adds a scenario to the end of the run order; call it from an
// init function of the scenario's file, beside the flags it reads.
func register(sc scenario) { registered = append(registered, sc) }

// scenarioNames returns the names of every scenario, in run order.
func scenarioNames() []string {
	all := scenarios()
	names := make([]string, 0, len(all))
	for _, sc := range all {
		names = append(names, sc.name())
	}
	return names
}

// pickScenarios returns the scenarios named, in run order; a name no scenario has is an error.
func pickScenarios(names []string) ([]scenario, error) {
	known := scenarioNames()
	for _, n := range names {
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("no scenario %q (there are %s)", n, strings.Join(known, ", "))
		}
	}
	var picked []scenario
	for _, sc := range scenarios() {
		if slices.Contains(names, sc.name()) {
			picked = append(picked, sc)
		}
	}
	return picked, nil
}

// eachForwarder runs scenario sc's part for every forwarder in turn, saying which, and returns the runs in order.
func eachForwarder[R any](sc string, fws []forwarder, run func(f forwarder) (R, error)) ([]R, error) {
	var rs []R
	for _, f := range fws {
		fmt.Printf("%s: %s\n", sc, f.name)
		r, err := run(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}
