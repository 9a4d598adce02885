package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

// Settings of this file's scenarios, from the command line.
var (
	pernameDur = flag.Duration("pername-duration", 10*time.Second, "brokendomain, metaqueries and encryptedfail: fixed-rate run per forwarder")
)

// perNameRun is one forwarder's fixed-rate run of a per-name scenario.
type perNameRun struct {
	faultRun        // the load and CPU readings; no fault window
	down     string // whether an upstream was marked down (healthWatch.stop)
}

// runPerName starts fresh upstreams set up by rules and forwarder f in front of them, and runs
// the fixed-rate load for the per-name duration, g's names set by names and side started with it.
func (b *bench) runPerName(scenario string, f forwarder, rules func(t1, t2 *faultdns.Server) error,
	nameOf func(i int) string, side func(target string, start time.Time)) (*perNameRun, error) {
	t1, t2, err := upstreamPair()
	if err != nil {
		return nil, err
	}
	defer t1.Close()
	defer t2.Close()
	// Before the forwarder starts: the zone or type is broken all along, as a lame zone is.
	if err := rules(t1, t2); err != nil {
		return nil, err
	}
	p, err := f.start(b.out, filepath.Join(b.out, "logs", scenario+"-"+f.name+".log"), t1.Addr(), t2.Addr())
	if err != nil {
		return nil, err
	}
	defer p.stop()

	g := b.gen(p.addr, tierMap(t1, t2), "")
	g.nameOf = nameOf
	run := &perNameRun{faultRun: faultRun{forwarder: f.name}}
	watch := watchHealth(p, t1.Addr(), t2.Addr())
	cpu0, fw0 := takeCPU(), orZero(p.cpuTime())
	var onStart func(time.Time)
	if side != nil {
		onStart = func(start time.Time) { side(p.addr, start) }
	}
	lr, err := g.run((*pernameDur), onStart)
	run.down = watch.stop()
	if err != nil {
		return nil, err
	}
	run.load = lr
	run.fwCPU = orZero(p.cpuTime()) - fw0
	run.other = otherLoad(cpu0, takeCPU(), run.fwCPU)
	return run, nil
}

// wrongNote says how many wrong answers a run got, "" for none: the tables leave them out to stay narrow.
func wrongNote(r *perNameRun, s ...phaseStats) string {
	n := 0
	for _, x := range s {
		n += x.wrong
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%s: %d wrong answers (NOERROR to another question or with an unknown IP)", r.forwarder, n)
}

// p50p99 renders a class's median and 99th percentile latency, in ms.
func p50p99(s phaseStats) string { return ms(s.p50) + " / " + ms(s.p99) }
