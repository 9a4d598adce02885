package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func init() { register(benchScenario{"encryptedfail", (*bench).encryptedFailScenario}) }

// encTier1IP is the address in the encrypted tier 1's answers, apart from faultdns's 192.0.2.x.
const encTier1IP = "198.51.100.1"

// encFault is one way the encrypted tier 1 fails in the encryptedfail scenario.
type encFault struct {
	id, about string
	cert      func(*certSet) keyPair // the certificate tier 1 presents
	// stop is set when tier 1 is stopped for the fault window; otherwise it fails from the start.
	stop bool
}

// encFaults are the encryptedfail scenario's faults, in run order.
var encFaults = []encFault{
	{id: "blackhole", stop: true, cert: func(s *certSet) keyPair { return s.good },
		about: "tier 1's server is stopped (SIGSTOP) for the fault window: the kernel still takes its connections and datagrams, nothing answers"},
	{id: "otherca", cert: func(s *certSet) keyPair { return s.otherCA },
		about: "tier 1 presents a certificate for " + upstreamName + " from a CA the forwarder does not trust, all along"},
	{id: "othername", cert: func(s *certSet) keyPair { return s.otherName },
		about: "tier 1 presents a certificate for " + otherName + " from the trusted CA, all along"},
}

// encryptedFailScenario runs every encFault over every transport for upstreamtier and forward,
// tier 1 the encrypted upstream and tier 2 plain DNS, at the fixed rate, and returns a table per fault.
func (b *bench) encryptedFailScenario(fws []forwarder) (string, error) {
	s, err := b.encPrepare(fws)
	if err != nil || s == nil {
		return "### encryptedfail\n\nNot run: neither upstreamtier nor forward is among the forwarders.\n", err
	}
	var tables []string
	for _, fault := range encFaults {
		var runs []*faultRun
		notes := s.notes
		for _, t := range s.transports {
			var tRuns []*faultRun
			for _, fw := range s.fws {
				fmt.Printf("encryptedfail %s: %s %s\n", fault.id, fw, t.name)
				r, why, err := b.encFailRun(fault, t, fw, s)
				if err != nil {
					return "", fmt.Errorf("%s %s %s: %w", fault.id, fw, t.name, err)
				}
				if why != "" {
					notes = append(notes, fmt.Sprintf("%s %s: not run, it did not start: %s", fw, t.name, why))
					continue
				}
				tRuns = append(tRuns, r)
			}
			if fault.stop && len(tRuns) > 0 {
				title := fmt.Sprintf("encryptedfail %s over %s: %s", fault.id, t.name, fault.about)
				if err := plotLatency(filepath.Join(b.out, "encryptedfail-"+fault.id+"-"+t.id+".png"), title, tRuns, b.timeout); err != nil {
					return "", err
				}
			}
			runs = append(runs, tRuns...)
		}
		tables = append(tables, b.encFailTable(fault, runs, notes))
	}
	return strings.Join(tables, "\n"), nil
}

// encFailRun runs fault over t for forwarder fw and returns the run, or why the forwarder did not start.
func (b *bench) encFailRun(fault encFault, t encTransport, fw string, s *encSetup) (*faultRun, string, error) {
	t2, err := startUpstream()
	if err != nil {
		return nil, "", err
	}
	defer t2.Close()
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	base := filepath.Join(b.out, "logs", "encryptedfail-"+fault.id+"-"+t.id+"-"+fw)
	block := encBlock(t.scheme, port, fault.cert(s.certs), encTier1IP)
	up, err := encUpstream(s.bin, []string{block}, encTier1IP).start(b.out, base+"-upstream.log", "", "")
	if err != nil {
		return nil, "", err
	}
	defer up.stop()
	defer up.signal(syscall.SIGCONT) // a stopped upstream never sees stop's SIGTERM
	p, err := fixedCoreDNS(fw+"-"+t.id, b.coredns, encStanza(fw, t, port, s.certs.ca, t2.Addr())).start(b.out, base+".log", "", "")
	if err != nil {
		return nil, startError(base+".log", err), nil
	}
	defer p.stop()
	tiers := map[string]int8{encTier1IP: 1, t2.AnswerIP().String(): 2}
	name := fw + " " + t.name
	start, up0 := time.Now(), orZero(up.cpuTime())
	var r *faultRun
	if fault.stop {
		r, err = b.faultLoad(p, tiers, name, func() error { return up.signal(syscall.SIGSTOP) }, func() error { return up.signal(syscall.SIGCONT) })
	} else {
		r, err = b.steadyLoad(p, tiers, name)
	}
	if err != nil {
		return nil, "", err
	}
	// The encrypted upstream's CPU is the scenario's, not other processes' load.
	r.other = max(0, r.other-(orZero(up.cpuTime())-up0).Seconds()/time.Since(start).Seconds())
	return r, "", nil
}

// signal sends sig to the process.
func (p *process) signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// steadyLoad loads p for the per-name duration with nothing switched, and returns the run as forwarder name's.
func (b *bench) steadyLoad(p *process, tiers map[string]int8, name string) (*faultRun, error) {
	cpu0, fw0 := takeCPU(), orZero(p.cpuTime())
	lr, err := b.gen(p.addr, tiers, "").run((*pernameDur), nil)
	if err != nil {
		return nil, err
	}
	run := &faultRun{forwarder: name, load: lr, fwCPU: orZero(p.cpuTime()) - fw0}
	run.other = otherLoad(cpu0, takeCPU(), run.fwCPU)
	return run, nil
}

// encFailTable renders one fault's runs: the fault scenarios' phased table for a fault window,
// one phase for a tier 1 failing all along; the notes check upstreamtier's runs for 0 lost.
func (b *bench) encFailTable(fault encFault, runs []*faultRun, notes []string) string {
	for _, r := range runs {
		if strings.HasPrefix(r.forwarder, "upstreamtier ") {
			lost := statsWhere(r.load.records, func(int, *record) bool { return true }, b.timeout).lost
			notes = append(notes, fmt.Sprintf("%s against the target: %d lost (0: %s)", r.forwarder, lost, verdict(lost == 0)))
		}
	}
	sc := faultScenario{id: "encryptedfail " + fault.id, about: fault.about}
	const tiers = " Tier 1 is one `bench/encserver` over the row's transport, verified against a throwaway CA; tier 2 is faultdns over plain DNS. "
	if fault.stop {
		table := faultTable(sc, b.timing, runs, b.timeout)
		return strings.Replace(table, "latencies in ms.\n", "latencies in ms."+tiers+"\n", 1) + noteList(notes)
	}
	return b.steadyTable(sc, runs, tiers) + noteList(notes)
}

// steadyTable renders runs with one phase, the whole run: a row per forwarder.
func (b *bench) steadyTable(sc faultScenario, runs []*faultRun, about string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "### %s: %s\n\n", sc.id, sc.about)
	fmt.Fprintf(&s, "%v at the fixed rate per forwarder and transport; latencies in ms.%s\n\n", (*pernameDur), about)
	s.WriteString("| forwarder | send qps | sent | lost | SERVFAIL | wrong | tier 1 | tier 2 | p50 | p99 | max |\n")
	s.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	notes := make([]string, 0, len(runs))
	for _, r := range runs {
		st := statsWhere(r.load.records, func(int, *record) bool { return true }, b.timeout)
		fmt.Fprintf(&s, "| %s | %.0f | %d | %d | %d | %d | %d | %d | %s | %s | %s |\n", r.forwarder, r.load.sendRate(),
			st.sent, st.lost, st.servfail, st.wrong, st.tier[1], st.tier[2], ms(st.p50), ms(st.p99), ms(st.max))
		notes = append(notes, r.notes(b.timeout)...)
	}
	writeNotes(&s, notes)
	return s.String()
}

// noteList renders notes as a list to follow a table, "" for none.
func noteList(notes []string) string {
	var s strings.Builder
	writeNotes(&s, notes)
	return s.String()
}
