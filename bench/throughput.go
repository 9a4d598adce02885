package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/responder"
)

func init() { register(benchScenario{"throughput", (*bench).throughputScenario}) }

// Settings of this file's scenarios, from the command line.
var (
	cpuDur    = flag.Duration("cpu-duration", 5*time.Second, "throughput: fixed-rate run per CPU round")
	cpuRounds = flag.Int("cpu-rounds", 3, "throughput: CPU rounds per forwarder, run alternately")
)

var (
	dnsperfLine   = regexp.MustCompile(`(?m)^\s*(Queries sent|Queries completed|Queries lost|Queries per second|Run time \(s\)|Average Latency \(s\)):\s*([0-9.]+)`)
	dnsperfRcodes = regexp.MustCompile(`(?m)^\s*Response codes:\s*(.*)$`)
	dnsperfRcode  = regexp.MustCompile(`([A-Z0-9]+) ([0-9]+) \(`)
)

// dnsperfOut is what a dnsperf run reported.
type dnsperfOut struct {
	values map[string]float64 // by the label dnsperfLine matches
	rcodes map[string]int     // answers by rcode name
	cpu    time.Duration      // dnsperf's own user+system CPU time
}

// runDnsperf runs dnsperf against p for d with the bench's query file and the extra args, and parses its statistics.
func (b *bench) runDnsperf(p *process, d time.Duration, args ...string) (*dnsperfOut, error) {
	qfile, err := b.queryFile()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(p.addr)
	secs := strconv.Itoa(max(1, int(d.Seconds())))
	args = append([]string{"-s", "127.0.0.1", "-p", port, "-l", secs, "-d", qfile}, args...)
	cmd := exec.Command("dnsperf", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("dnsperf: %v: %s", err, out)
	}
	res, err := parseDnsperf(string(out))
	if err != nil {
		return nil, err
	}
	res.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

// parseDnsperf reads the statistics dnsperf prints at the end of a run.
func parseDnsperf(out string) (*dnsperfOut, error) {
	res := &dnsperfOut{values: map[string]float64{}, rcodes: map[string]int{}}
	for _, m := range dnsperfLine.FindAllStringSubmatch(out, -1) {
		res.values[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	if res.values["Queries sent"] == 0 {
		return nil, fmt.Errorf("dnsperf output not understood: %s", out)
	}
	if m := dnsperfRcodes.FindStringSubmatch(out); m != nil {
		for _, rc := range dnsperfRcode.FindAllStringSubmatch(m[1], -1) {
			res.rcodes[rc[1]], _ = strconv.Atoi(rc[2])
		}
	}
	return res, nil
}

// queryFile returns the dnsperf query file, writing it on first use.
func (b *bench) queryFile() (string, error) {
	qfile := filepath.Join(b.out, "queries.txt")
	if _, err := os.Stat(qfile); err != nil {
		if err := writeQueryFile(qfile, 200000); err != nil {
			return "", err
		}
	}
	return qfile, nil
}

// writeQueryFile writes n unique A names in dnsperf's format; n beyond what one run sends keeps them unique.
func writeQueryFile(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(w, "p%d.bench.example A\n", i)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// closedLoopWorkers is how many queries the Go closed loop keeps outstanding for throughput.
const closedLoopWorkers = 32

// loopResult is what a closed loop sent and got back.
type loopResult struct {
	sent, answered int64
	latSum         time.Duration  // over the answered queries
	rcodes         map[string]int // answers by rcode name
}

// closedLoop keeps workers queries outstanding against p for d, each worker on its own socket.
func (b *bench) closedLoop(p *process, workers int, d time.Duration) (*loopResult, error) {
	var answered, sent, latSum atomic.Int64
	var mu sync.Mutex
	rcodes := map[string]int{}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	defer wg.Wait()
	for w := range workers {
		c, err := net.Dial("udp", p.addr)
		if err != nil {
			return nil, err
		}
		wg.Go(func() {
			defer c.Close()
			mine := map[int]int{}
			buf := make([]byte, 4096)
			for i := 0; time.Now().Before(deadline); i++ {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("c%d-%d.bench.example.", w, i), dns.TypeA)
				out, _ := m.Pack()
				t0 := time.Now()
				sent.Add(1)
				c.Write(out)
				c.SetReadDeadline(t0.Add(b.timeout))
				// Skip stale answers to earlier, timed-out queries of this worker.
				for {
					n, err := c.Read(buf)
					if err != nil {
						break
					}
					var r dns.Msg
					if r.Unpack(buf[:n]) == nil && r.Id == m.Id {
						answered.Add(1)
						latSum.Add(int64(time.Since(t0)))
						mine[r.Rcode]++
						break
					}
				}
			}
			mu.Lock()
			for rc, n := range mine {
				rcodes[dns.RcodeToString[rc]] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return &loopResult{sent: sent.Load(), answered: answered.Load(), latSum: time.Duration(latSum.Load()), rcodes: rcodes}, nil
}

// The configs answering by themselves: floorName's CPU per query is the floor
// the overheads are measured from, bareName's the same without template's work.
const (
	floorName = "template"
	bareName  = "erratic"
)

// tputConfig is one config's part of the throughput scenario.
type tputConfig struct {
	f     forwarder
	p     *process
	sat   []satRound      // flat out, one per round
	fixed []time.Duration // CPU per answered query at the fixed rate, one per CPU round
	rates []float64       // the achieved send rate of each CPU round
	other float64         // most cores other processes kept busy in a CPU round
}

// throughputScenario runs template (the floor), erratic and every forwarder against one
// responder, flat out in alternated rounds and then at the fixed rate, and
// returns the table with the Go benchmark's allocations beside it.
func (b *bench) throughputScenario(fws []forwarder) (string, error) {
	up, err := responder.Start(2, netip.MustParseAddr(answerIP))
	if err != nil {
		return "", err
	}
	defer up.Close()
	t1, t2 := up.Addrs()[0], up.Addrs()[1]
	fs := append([]forwarder{fixedCoreDNS(floorName, b.coredns, templateStanza), fixedCoreDNS(bareName, b.coredns, erraticStanza)}, fws...)
	ps, sat, err := b.flatOut("throughput", fs, t1, t2)
	defer stopAll(ps)
	if err != nil {
		return "", err
	}
	cs := make([]*tputConfig, len(fs))
	for i, f := range fs {
		cs[i] = &tputConfig{f: f, p: ps[i], sat: sat[i]}
	}
	tiers := map[string]int8{answerIP: 1}
	for k := range *cpuRounds {
		for _, i := range roundOrder(k, len(cs)) {
			c := cs[i]
			fmt.Printf("  throughput: %s CPU round %d of %d at %d qps\n", c.p.name, k+1, (*cpuRounds), b.rate)
			if err := b.cpuRound(c, tiers, k); err != nil {
				return "", err
			}
		}
	}
	allocs, why := b.goBench("^BenchmarkServeDNS$")
	return b.tputTable(cs, allocs, why), nil
}

// cpuRound loads c at the fixed rate for cpuDur and records its CPU time per answered query.
func (b *bench) cpuRound(c *tputConfig, tiers map[string]int8, round int) error {
	g := b.gen(c.p.addr, tiers, fmt.Sprintf("r%d", round))
	var before time.Duration
	var cpuErr error
	var snap cpuSnapshot
	lr, err := g.run((*cpuDur), func(time.Time) {
		snap = takeCPU()
		before, cpuErr = c.p.cpuTime()
	})
	if err != nil {
		return err
	}
	// The run includes a wait of one client timeout after the last send, in which the forwarder is idle.
	after, err := c.p.cpuTime()
	if err := errors.Join(cpuErr, err); err != nil {
		return err
	}
	c.other = max(c.other, otherLoad(snap, takeCPU(), after-before))
	answered := 0
	for i := range lr.records {
		if _, ok := lr.records[i].latency(b.timeout); ok {
			answered++
		}
	}
	if answered == 0 {
		return fmt.Errorf("%s answered nothing", c.p.name)
	}
	c.fixed = append(c.fixed, (after-before)/time.Duration(answered))
	c.rates = append(c.rates, lr.sendRate())
	return nil
}

// overheads returns c's CPU per query above the floor's, round by round; nil for a config not built on coredns.
func (c *tputConfig) overheads(floor *tputConfig) []time.Duration {
	if !c.f.coredns {
		return nil
	}
	out := make([]time.Duration, min(len(c.sat), len(floor.sat)))
	for k := range out {
		out[k] = c.sat[k].cpuPerQuery() - floor.sat[k].cpuPerQuery()
	}
	return out
}

// tputTable renders the throughput scenario: flat out per config, the headline ratios, the fixed-rate CPU and allocations.
func (b *bench) tputTable(cs []*tputConfig, allocs map[string]goBenchResult, allocsWhy string) string {
	var s strings.Builder
	s.WriteString("### throughput: healthy upstream, flat out\n\n")
	fmt.Fprintf(&s, "%s Overhead: CPU / query minus %s's in the same round (%s answers every query itself: CoreDNS's own cost, and template's; "+
		"%s answers by itself too, without a text template, so its overhead is minus template's own work). "+
		"Every config has the same upstream, one `internal/responder` on 127.0.0.1 (allocation-free, in the benchmark process). "+
		"At %d qps: CPU / answered query at that fixed rate for %v, %d rounds alternated; at a modest rate the server's wake-ups dominate, so this column shows CoreDNS's framework more than any plugin. "+
		"Allocations: the Go benchmark `%s`, medians, ServeDNS alone against the same kind of responder.\n\n",
		b.satHeader(), floorName, floorName, bareName, b.rate, (*cpuDur), (*cpuRounds), fmt.Sprintf(goBenchCommand, "^BenchmarkServeDNS$", (*goBenchCount)))
	fmt.Fprintf(&s, "| config | QPS | CPU µs / query | overhead µs / query | CPU µs / query at %d qps | allocs / query | B / query |\n", b.rate)
	s.WriteString("|---|--:|--:|--:|--:|--:|--:|\n")
	floor := cs[0]
	var notes []string
	byName := map[string]*tputConfig{}
	for _, c := range cs {
		byName[c.f.name] = c
		qps := perRound(c.sat, satRound.qps)
		cpq := perRound(c.sat, satRound.cpuPerQuery)
		over := "–"
		if c == floor {
			over = "0 (the floor)"
		} else if o := c.overheads(floor); o != nil {
			over = spread(o, µs)
		}
		alloc, bytes := "–", "–"
		if a, ok := allocs["ServeDNS/"+c.f.name]; ok {
			alloc, bytes = fmt.Sprintf("%.0f", a.allocs), fmt.Sprintf("%.0f", a.bytes)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s | %s | %s |\n", c.f.name,
			spread(qps, func(v float64) string { return fmt.Sprintf("%.0f", v) }), spread(cpq, µs), over, spread(c.fixed, µs), alloc, bytes)
		notes = appendNotes(notes, lossNote(c.f.name, c.sat), otherNote(c.f.name, c.sat))
		if c.other > otherLoadNote {
			notes = append(notes, fmt.Sprintf("%s: other processes kept up to %.1f cores busy in a fixed-rate round", c.f.name, c.other))
		}
		if slices.ContainsFunc(c.rates, func(r float64) bool { return r < 0.95*float64(b.rate) }) {
			notes = append(notes, fmt.Sprintf("%s: the fixed-rate rounds sent %s qps", c.f.name, fmt.Sprint(c.rates)))
		}
	}
	if ut, fw := byName["upstreamtier"], byName["forward"]; ut != nil && fw != nil {
		utO, fwO := ut.overheads(floor), fw.overheads(floor)
		utQ, fwQ := perRound(ut.sat, satRound.qps), perRound(fw.sat, satRound.qps)
		fmt.Fprintf(&s, "\n**upstreamtier / forward**: overhead **%.2f** (ratio of the medians; round by round %s), QPS **%.2f** (round by round %s)",
			float64(median(utO))/float64(median(fwO)), spread(ratios(utO, fwO), twoDecimals),
			median(utQ)/median(fwQ), spread(ratios(utQ, fwQ), twoDecimals))
		if bare := byName[bareName]; bare != nil {
			utB, fwB := ut.overheads(bare), fw.overheads(bare)
			fmt.Fprintf(&s, "; overhead over %s's floor instead **%.2f** (round by round %s)",
				bareName, float64(median(utB))/float64(median(fwB)), spread(ratios(utB, fwB), twoDecimals))
		}
		if a, ok := allocs["ServeDNS/upstreamtier"]; ok {
			if f, ok := allocs["ServeDNS/forward"]; ok {
				fmt.Fprintf(&s, ", allocations **%.2f** (%.0f / %.0f)", a.allocs/f.allocs, a.allocs, f.allocs)
			}
		}
		s.WriteString(".\n")
	}
	if allocsWhy != "" {
		notes = append(notes, "allocations: the Go benchmark was "+allocsWhy)
	}
	writeNotes(&s, notes)
	return s.String()
}
