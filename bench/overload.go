package main

import (
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

func init() { register(benchScenario{"overload", (*bench).overloadScenario}) }

// Settings of this file's scenarios, from the command line.
var (
	overloadDur = flag.Duration("overload", 20*time.Second, "overload: flood per forwarder")
)

// overloadLimit is the max_concurrent the coredns-based forwarders get for the overload scenario.
const overloadLimit = 1000

// overloadSlack is how many goroutines beyond start + overloadLimit still count as bounded.
const overloadSlack = 100

// overloadIdle is the wait, tier 1 already blackholed, before the start reading and the flood.
const overloadIdle = 2 * time.Second

// Flood settings: dnsperf's clients and outstanding queries, and the Go closed loop's workers in its place.
const (
	floodClients     = 16
	floodOutstanding = 2000
)

// overloadRun is one forwarder flooded as fast as the clients can go while tier 1 is blackholed.
type overloadRun struct {
	forwarder string
	tool      string // dnsperf or the Go closed loop
	limit     int    // the max_concurrent it ran with; 0 for none
	sent      int
	answered  int
	qps       float64        // answered per second
	rcodes    map[string]int // answers by rcode name
	usage     usageSummary   // start before the flood, end after the drain, max over all
}

// bounded is the overload's verdict: max goroutines ≤ start + overloadLimit + overloadSlack and max RSS ≤ start × 1.25 + 5 MiB.
func (r *overloadRun) bounded() bool {
	u := r.usage
	return (u.g0 < 0 || u.gMax <= u.g0+overloadLimit+overloadSlack) && rssFlat(u.r0, u.rMax)
}

// overloadScenario floods every forwarder in turn and returns the table.
func (b *bench) overloadScenario(fws []forwarder) (string, error) {
	runs, err := eachForwarder("overload", fws, b.runOverload)
	if err != nil {
		return "", err
	}
	return b.overloadTable(runs), nil
}

// runOverload blackholes tier 1 and floods f for the overload duration, reading its usage every second.
func (b *bench) runOverload(f forwarder) (*overloadRun, error) {
	if f.coredns {
		f.limit = overloadLimit
	}
	t1, t2, err := upstreamPair()
	if err != nil {
		return nil, err
	}
	defer t1.Close()
	defer t2.Close()
	p, err := f.start(b.out, filepath.Join(b.out, "logs", "overload-"+f.name+".log"), t1.Addr(), t2.Addr())
	if err != nil {
		return nil, err
	}
	defer p.stop()
	// The forwarder comes up with both tiers healthy (start waits for an answer); from here tier 1 is dead.
	if err := t1.SetMode(faultdns.Blackhole); err != nil {
		return nil, err
	}
	time.Sleep(overloadIdle)

	run := &overloadRun{forwarder: f.name, limit: f.limit}
	smp := sample(p)
	err = b.flood(p, run)
	if err == nil {
		time.Sleep(drain)
	}
	us := smp.stop()
	if err != nil {
		return nil, err
	}
	run.usage = summarise(us, 0, us[len(us)-1].at)
	return run, nil
}

// flood sends to p as fast as it answers for the overload duration: dnsperf, or the Go closed loop if dnsperf is missing.
func (b *bench) flood(p *process, run *overloadRun) error {
	if _, err := exec.LookPath("dnsperf"); err == nil {
		run.tool = "dnsperf"
		out, err := b.runDnsperf(p, (*overloadDur), "-c", strconv.Itoa(floodClients), "-q", strconv.Itoa(floodOutstanding))
		if err != nil {
			return err
		}
		run.sent, run.answered = int(out.values["Queries sent"]), int(out.values["Queries completed"])
		run.qps, run.rcodes = out.values["Queries per second"], out.rcodes
		return nil
	}
	run.tool = "go closed loop"
	lr, err := b.closedLoop(p, floodOutstanding, (*overloadDur))
	if err != nil {
		return err
	}
	run.sent, run.answered = int(lr.sent), int(lr.answered)
	run.qps, run.rcodes = float64(lr.answered)/(*overloadDur).Seconds(), lr.rcodes
	return nil
}

// overloadTable renders the overload scenario, one row per forwarder.
func (b *bench) overloadTable(runs []*overloadRun) string {
	var s strings.Builder
	s.WriteString("### overload: tier 1 blackholed, clients as fast as they can\n\n")
	fmt.Fprintf(&s, "%v per forwarder with dnsperf (`-c %d -q %d`, unique names) or, without it, the Go closed loop with %d queries outstanding; "+
		"the coredns-based forwarders run with `max_concurrent %d`. Tier 1 is blackholed %v before the start reading and stays so. "+
		"Goroutines and RSS are read every second: start just before the flood, max over the run, end %v after the flood. "+
		"Verdict: bounded if max goroutines ≤ start + %d + %d and max RSS ≤ start × 1.25 + 5 MiB, else GROWING.\n\n",
		(*overloadDur), floodClients, floodOutstanding, floodOutstanding, overloadLimit, overloadIdle, drain, overloadLimit, overloadSlack)
	s.WriteString("| forwarder | tool | max_concurrent | answered QPS | sent | unanswered | NOERROR | SERVFAIL | REFUSED | goroutines start / max / end | RSS MiB start / max / end | verdict |\n")
	s.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	var notes []string
	if slices.ContainsFunc(runs, func(r *overloadRun) bool { return r.tool != "dnsperf" }) {
		notes = append(notes, "the Go closed loop runs in the benchmark process beside the upstreams, whose answers its workers delay: "+
			"SERVFAIL and REFUSED may be tier 2 falling behind rather than the forwarder; install dnsperf")
	}
	for _, r := range runs {
		limit := "–"
		if r.limit > 0 {
			limit = strconv.Itoa(r.limit)
		}
		verdict := "GROWING"
		if r.bounded() {
			verdict = "bounded"
		}
		u := r.usage
		fmt.Fprintf(&s, "| %s | %s | %s | %.0f | %d | %d | %d | %d | %d | %s | %s | %s |\n",
			r.forwarder, r.tool, limit, r.qps, r.sent, r.sent-r.answered, r.rcodes["NOERROR"], r.rcodes["SERVFAIL"], r.rcodes["REFUSED"],
			goroutineCell(u.g0, u.gMax, u.g1), rssCell(u.r0, u.rMax, u.r1), verdict)
		var other []string
		for rc, n := range r.rcodes {
			if rc != "NOERROR" && rc != "SERVFAIL" && rc != "REFUSED" {
				other = append(other, fmt.Sprintf("%s %d", rc, n))
			}
		}
		if len(other) > 0 {
			slices.Sort(other)
			notes = append(notes, fmt.Sprintf("%s: answers with other rcodes: %s", r.forwarder, strings.Join(other, ", ")))
		}
	}
	writeNotes(&s, notes)
	return s.String()
}
