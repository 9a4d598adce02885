package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

func init() {
	for _, sc := range faultScenarios {
		register(sc)
	}
}

// faultScenario is a fault applied to the upstreams for a window in the middle of a fixed-rate run.
type faultScenario struct {
	id    string
	about string
	fault func(t1, t2 *faultdns.Server) error
	// noTier2 is set when tier 2 is down too, so a failover time means nothing.
	noTier2 bool
}

// recoverAll puts both upstreams back to OK, the end of every fault window.
func recoverAll(t1, t2 *faultdns.Server) error {
	if err := t1.SetMode(faultdns.OK); err != nil {
		return err
	}
	return t2.SetMode(faultdns.OK)
}

// slowDelay is how late a Slow tier 1 answers: past a 1 s attempt budget, below the 2 s client timeout.
const slowDelay = 1500 * time.Millisecond

var faultScenarios = []faultScenario{
	{id: "blackhole", about: "tier 1 drops every query", fault: func(t1, _ *faultdns.Server) error {
		return t1.SetMode(faultdns.Blackhole)
	}},
	{id: "closed", about: "tier 1's port is closed (ICMP port unreachable)", fault: func(t1, _ *faultdns.Server) error {
		return t1.SetMode(faultdns.Closed)
	}},
	{id: "servfail", about: "tier 1 answers SERVFAIL", fault: func(t1, _ *faultdns.Server) error {
		return t1.SetMode(faultdns.ServFail)
	}},
	{id: "slow", about: "tier 1 answers after " + slowDelay.String(), fault: func(t1, _ *faultdns.Server) error {
		t1.SetDelay(slowDelay)
		return t1.SetMode(faultdns.Slow)
	}},
	{id: "alldown", about: "tier 1 and tier 2 drop every query", noTier2: true, fault: func(t1, t2 *faultdns.Server) error {
		if err := t1.SetMode(faultdns.Blackhole); err != nil {
			return err
		}
		return t2.SetMode(faultdns.Blackhole)
	}},
}

func (sc faultScenario) name() string { return sc.id }

// run runs the fault for every forwarder in turn, plots their latencies and returns the table.
func (sc faultScenario) run(b *bench, fws []forwarder) (string, error) {
	runs, err := eachForwarder(sc.id, fws, func(f forwarder) (*faultRun, error) { return b.runFault(sc, f) })
	if err != nil {
		return "", err
	}
	if err := plotLatency(filepath.Join(b.out, sc.id+".png"), sc.id+": "+sc.about, runs, b.timeout); err != nil {
		return "", err
	}
	return faultTable(sc, b.timing, runs, b.timeout), nil
}

// timing is the length of the three phases of a fault scenario.
type timing struct{ before, fault, after time.Duration }

// faultRun is one forwarder's run of one fault scenario.
type faultRun struct {
	forwarder string
	load      *loadResult
	faultAt   time.Duration // when the fault was switched on, since the load started
	recoverAt time.Duration // when it was switched off
	fwCPU     time.Duration // the forwarder's CPU time during the run
	other     float64       // cores kept busy by other processes meanwhile
	flaps     []window      // the soak's tier 1 outages; nil in a fault scenario
}

// window is a stretch of a run, since the load started.
type window struct{ from, to time.Duration }

// outages returns the windows the plot shades: the soak's flaps, or the one fault window.
func (r *faultRun) outages() []window {
	if r.flaps != nil {
		return r.flaps
	}
	return []window{{r.faultAt, r.recoverAt}}
}

// upstreamPair starts fresh tier 1 and tier 2 upstreams, so runs never share state.
func upstreamPair() (t1, t2 *faultdns.Server, err error) {
	if t1, err = startUpstream(); err != nil {
		return nil, nil, err
	}
	if t2, err = startUpstream(); err != nil {
		t1.Close()
		return nil, nil, err
	}
	return t1, t2, nil
}

// startUpstream starts a faultdns server on a port outside the ephemeral range (see freePort).
func startUpstream() (*faultdns.Server, error) {
	var err error
	for range 5 {
		var port int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		var s *faultdns.Server
		if s, err = faultdns.Start(fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// tierMap maps each upstream's answer IP to its tier number.
func tierMap(t1, t2 *faultdns.Server) map[string]int8 {
	return map[string]int8{t1.AnswerIP().String(): 1, t2.AnswerIP().String(): 2}
}

// runFault runs scenario sc against forwarder f: load for the three phases, the fault in the middle.
func (b *bench) runFault(sc faultScenario, f forwarder) (*faultRun, error) {
	t1, t2, err := upstreamPair()
	if err != nil {
		return nil, err
	}
	defer t1.Close()
	defer t2.Close()
	p, err := f.start(b.out, filepath.Join(b.out, "logs", sc.id+"-"+f.name+".log"), t1.Addr(), t2.Addr())
	if err != nil {
		return nil, err
	}
	defer p.stop()
	return b.faultLoad(p, tierMap(t1, t2), f.name, func() error { return sc.fault(t1, t2) }, func() error { return recoverAll(t1, t2) })
}

// faultLoad loads p for the three phases, calling fault when the fault window opens and
// recover when it closes, and returns the run as forwarder name's.
func (b *bench) faultLoad(p *process, tiers map[string]int8, name string, fault, recover func() error) (*faultRun, error) {
	g := b.gen(p.addr, tiers, "")
	run := &faultRun{forwarder: name}
	cpu0, fw0 := takeCPU(), orZero(p.cpuTime())
	errc := make(chan error, 1)
	// The fault is switched by timers from the load's own start, so phase edges line up with send times.
	lr, err := g.run(b.timing.before+b.timing.fault+b.timing.after, func(start time.Time) {
		go func() {
			time.Sleep(time.Until(start.Add(b.timing.before)))
			run.faultAt = time.Since(start)
			if err := fault(); err != nil {
				errc <- err
				return
			}
			time.Sleep(time.Until(start.Add(b.timing.before + b.timing.fault)))
			run.recoverAt = time.Since(start)
			errc <- recover()
		}()
	})
	if err != nil {
		return nil, err
	}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("switching faults: %w", err)
	}
	run.load = lr
	run.fwCPU = orZero(p.cpuTime()) - fw0
	run.other = otherLoad(cpu0, takeCPU(), run.fwCPU)
	return run, nil
}

// orZero drops the error of a diagnostic reading; a zero value only blurs a note.
func orZero[T any](v T, _ error) T { return v }
