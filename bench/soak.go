package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

func init() { register(benchScenario{"soak", (*bench).soakScenario}) }

// Settings of this file's scenarios, from the command line.
var (
	soakDur  = flag.Duration("soak", 60*time.Second, "soak: run per forwarder, at the fixed rate")
	soakFlap = flag.Duration("flap", 5*time.Second, "soak: tier 1 is blackholed, then healthy, for this long by turns")
)

// soakAbout says what the soak does to tier 1, for its table and plot.
func (b *bench) soakAbout() string {
	return fmt.Sprintf("tier 1 blackholed and healthy by turns, %v each, starting healthy, for %v", (*soakFlap), (*soakDur))
}

// soakWarmup is how long the forwarder runs under load before its start reading.
const soakWarmup = 2 * time.Second

// soakRun is one forwarder's soak: a fixed-rate run while tier 1 flaps, and the forwarder's usage meanwhile.
type soakRun struct {
	faultRun
	usage  usageSummary
	cycles []usageSummary // per flap cycle, an outage and a healthy stretch, for the peaks
}

// flat is the soak's verdict: end goroutines ≤ start × 1.1 + 5 and end RSS ≤ start × 1.25 + 5 MiB.
func (r *soakRun) flat() bool {
	u := r.usage
	return (u.g0 < 0 || float64(u.g1) <= 1.1*float64(u.g0)+5) && rssFlat(u.r0, u.r1)
}

// soakScenario soaks the coredns-based forwarders among fws, plots them and returns the table.
func (b *bench) soakScenario(fws []forwarder) (string, error) {
	var soaked []forwarder
	var skipped []string
	for _, f := range fws {
		if f.coredns {
			soaked = append(soaked, f)
		} else {
			skipped = append(skipped, f.name)
		}
	}
	runs, err := eachForwarder("soak", soaked, b.runSoak)
	if err != nil {
		return "", err
	}
	if len(runs) > 0 {
		var plotted []*faultRun
		for _, r := range runs {
			plotted = append(plotted, &r.faultRun)
		}
		if err := plotLatency(filepath.Join(b.out, "soak.png"), "soak: "+b.soakAbout(), plotted, b.timeout); err != nil {
			return "", err
		}
	}
	return b.soakTable(runs, skipped), nil
}

// runSoak loads f at the fixed rate for the soak duration while tier 1 flaps, reading its usage every second.
func (b *bench) runSoak(f forwarder) (*soakRun, error) {
	t1, t2, err := upstreamPair()
	if err != nil {
		return nil, err
	}
	defer t1.Close()
	defer t2.Close()
	p, err := f.start(b.out, filepath.Join(b.out, "logs", "soak-"+f.name+".log"), t1.Addr(), t2.Addr())
	if err != nil {
		return nil, err
	}
	defer p.stop()

	g := b.gen(p.addr, tierMap(t1, t2), "")
	run := &soakRun{faultRun: faultRun{forwarder: f.name, flaps: []window{}}}
	cpu0, fw0 := takeCPU(), orZero(p.cpuTime())
	smp := sample(p) // just before the load, so its readings are timed from the load's start
	errc := make(chan error, 1)
	lr, err := g.run((*soakDur), func(start time.Time) {
		go func() { errc <- b.flapTier1(t1, start, &run.flaps) }()
	})
	if err == nil {
		time.Sleep(drain)
	}
	us := smp.stop()
	if err != nil {
		return nil, err
	}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("flapping tier 1: %w", err)
	}
	run.load = lr
	run.fwCPU = orZero(p.cpuTime()) - fw0
	run.other = otherLoad(cpu0, takeCPU(), run.fwCPU)
	run.usage = summarise(us, soakWarmup, us[len(us)-1].at)
	run.cycles = b.cycles(us)
	return run, nil
}

// flapTier1 blackholes t1 in every other flap period from start until the soak ends, the first one healthy, and records each outage.
func (b *bench) flapTier1(t1 *faultdns.Server, start time.Time, outages *[]window) error {
	for k := 1; time.Duration(k)*(*soakFlap) < (*soakDur); k++ {
		time.Sleep(time.Until(start.Add(time.Duration(k) * (*soakFlap))))
		at := time.Since(start)
		if k%2 == 1 {
			if err := t1.SetMode(faultdns.Blackhole); err != nil {
				return err
			}
			*outages = append(*outages, window{from: at, to: (*soakDur)})
			continue
		}
		if err := t1.SetMode(faultdns.OK); err != nil {
			return err
		}
		(*outages)[len(*outages)-1].to = at
	}
	return nil
}

// cycles summarises the readings under load by flap cycle (2 × flap), so a peak that repeats shows apart from one that climbs.
func (b *bench) cycles(us []usage) []usageSummary {
	var out []usageSummary
	for from := time.Duration(0); from < (*soakDur); from += 2 * (*soakFlap) {
		out = append(out, summarise(us, from, min(from+2*(*soakFlap), (*soakDur))-time.Nanosecond))
	}
	return out
}

// cycleNote lists r's peak goroutines and RSS per flap cycle.
func (b *bench) cycleNote(r *soakRun) string {
	gs, rs := make([]string, 0, len(r.cycles)), make([]string, 0, len(r.cycles))
	for _, c := range r.cycles {
		gs = append(gs, strconv.Itoa(c.gMax))
		rs = append(rs, mib(c.rMax))
	}
	return fmt.Sprintf("%s: peaks per %v cycle: goroutines %s; RSS MiB %s", r.forwarder, 2*(*soakFlap), strings.Join(gs, ", "), strings.Join(rs, ", "))
}

// soakTable renders the soak, one row per forwarder; skipped names the forwarders it does not run.
func (b *bench) soakTable(runs []*soakRun, skipped []string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "### soak: %s\n\n", b.soakAbout())
	if len(runs) == 0 {
		fmt.Fprintf(&s, "Not run: it is for the coredns-based forwarders, whose goroutines their metrics report, and none was selected (only %s).\n", strings.Join(skipped, ", "))
		return s.String()
	}
	fmt.Fprintf(&s, "%d qps throughout; latencies in ms. Goroutines (`go_goroutines` from the forwarder's metrics) and RSS (VmRSS) are read every second: "+
		"start is the first reading after %v of load, end the one %v after the load stopped, when the queries in flight are done, max the highest in between. "+
		"Verdict: flat if end goroutines ≤ start × 1.1 + 5 and end RSS ≤ start × 1.25 + 5 MiB, else GROWING. "+
		"The notes give the peaks of every flap cycle (an outage and a healthy stretch): a peak that repeats is the load of an outage, one that climbs is a leak.\n\n", b.rate, soakWarmup, drain)
	s.WriteString("| forwarder | send qps | sent | lost | SERVFAIL | wrong | tier 1 | tier 2 | p50 | p99 | max | goroutines start / end / max | RSS MiB start / end / max | verdict |\n")
	s.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	var notes []string
	for _, r := range runs {
		recs := r.load.records
		st := stats(recs, 0, time.Duration(recs[len(recs)-1].sent)+1, b.timeout)
		verdict := "GROWING"
		if r.flat() {
			verdict = "flat"
		}
		u := r.usage
		fmt.Fprintf(&s, "| %s | %.0f | %d | %d | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s |\n",
			r.forwarder, r.load.sendRate(), st.sent, st.lost, st.servfail, st.wrong, st.tier[1], st.tier[2],
			ms(st.p50), ms(st.p99), ms(st.max), goroutineCell(u.g0, u.g1, u.gMax), rssCell(u.r0, u.r1, u.rMax), verdict)
		notes = append(notes, b.cycleNote(r))
		notes = append(notes, r.notes(b.timeout)...)
	}
	if len(skipped) > 0 {
		notes = append(notes, strings.Join(skipped, ", ")+": not run; the soak is for the coredns-based forwarders, whose goroutines their metrics report")
	}
	writeNotes(&s, notes)
	return s.String()
}
