package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// tputResult is one forwarder's flat-out run and its CPU cost at a fixed rate.
type tputResult struct {
	forwarder string
	tool      string  // dnsperf or the Go closed loop
	qps       float64 // answered queries per second, flat out
	lost      float64 // fraction of queries unanswered, flat out
	avgLat    time.Duration
	cpuPerK   []time.Duration // CPU per 1000 answered queries, one per round
	rates     []float64       // achieved send rate of each CPU round
	other     float64         // most cores other processes kept busy in any CPU round
}

// flatOut measures the forwarder's QPS with dnsperf, or the Go closed loop if dnsperf is missing.
func (b *bench) flatOut(p *process, tr *tputResult) error {
	if _, err := exec.LookPath("dnsperf"); err == nil {
		tr.tool = "dnsperf"
		return b.dnsperf(p, tr)
	}
	tr.tool = "go closed loop"
	lr, err := b.closedLoop(p, closedLoopWorkers, b.tputDur)
	if err != nil {
		return err
	}
	tr.qps = float64(lr.answered) / b.tputDur.Seconds()
	tr.lost = 1 - float64(lr.answered)/float64(max(1, lr.sent))
	tr.avgLat = lr.latSum / time.Duration(max(1, lr.answered))
	return nil
}

// dnsperf runs dnsperf against p for the throughput duration, 8 clients, no rate limit.
func (b *bench) dnsperf(p *process, tr *tputResult) error {
	out, err := b.runDnsperf(p, b.tputDur, "-c", "8", "-t", "2")
	if err != nil {
		return err
	}
	tr.qps = out.values["Queries per second"]
	tr.lost = 1 - out.values["Queries completed"]/out.values["Queries sent"]
	tr.avgLat = time.Duration(out.values["Average Latency (s)"] * float64(time.Second))
	return nil
}

var (
	dnsperfLine   = regexp.MustCompile(`(?m)^\s*(Queries sent|Queries completed|Queries lost|Queries per second|Average Latency \(s\)):\s*([0-9.]+)`)
	dnsperfRcodes = regexp.MustCompile(`(?m)^\s*Response codes:\s*(.*)$`)
	dnsperfRcode  = regexp.MustCompile(`([A-Z0-9]+) ([0-9]+) \(`)
)

// dnsperfOut is what a dnsperf run reported.
type dnsperfOut struct {
	values map[string]float64 // by the label dnsperfLine matches
	rcodes map[string]int     // answers by rcode name
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
	out, err := exec.Command("dnsperf", args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("dnsperf: %v: %s", err, out)
	}
	res := &dnsperfOut{values: map[string]float64{}, rcodes: map[string]int{}}
	for _, m := range dnsperfLine.FindAllStringSubmatch(string(out), -1) {
		res.values[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	if res.values["Queries sent"] == 0 {
		return nil, fmt.Errorf("dnsperf output not understood: %s", out)
	}
	if m := dnsperfRcodes.FindStringSubmatch(string(out)); m != nil {
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

// cpuRound loads p at the fixed rate for cpuDur and records its CPU time per 1000 answered queries.
func (b *bench) cpuRound(p *process, tiers map[string]int8, round int, tr *tputResult) error {
	g := b.gen(p.addr, tiers, fmt.Sprintf("r%d", round))
	var before time.Duration
	var cpuErr error
	var snap cpuSnapshot
	lr, err := g.run(b.cpuDur, func(time.Time) {
		snap = takeCPU()
		before, cpuErr = p.cpuTime()
	})
	if err != nil {
		return err
	}
	// The run includes a wait of one client timeout after the last send, in which the forwarder is idle.
	after, err := p.cpuTime()
	if err := cmpErr(cpuErr, err); err != nil {
		return err
	}
	tr.other = max(tr.other, otherLoad(snap, takeCPU(), after-before))
	answered := 0
	for i := range lr.records {
		if _, ok := lr.records[i].latency(b.timeout); ok {
			answered++
		}
	}
	if answered == 0 {
		return fmt.Errorf("%s answered nothing", p.name)
	}
	tr.cpuPerK = append(tr.cpuPerK, (after-before)*1000/time.Duration(answered))
	tr.rates = append(tr.rates, lr.sendRate())
	return nil
}

// cmpErr returns the first non-nil error.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// median returns the middle value of ds (the upper middle for an even count).
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// throughputScenario measures every forwarder with healthy upstreams and returns the table.
func (b *bench) throughputScenario(fws []forwarder) (string, error) {
	rs, err := b.runThroughput(fws)
	if err != nil {
		return "", err
	}
	return tputTable(rs, b.rate, b.cpuDur), nil
}

// runThroughput measures every forwarder flat out, then their CPU cost in alternating rounds.
func (b *bench) runThroughput(fws []forwarder) ([]*tputResult, error) {
	type running struct {
		p      *process
		tiers  map[string]int8
		result *tputResult
	}
	var rs []*running
	defer func() {
		for _, r := range rs {
			r.p.stop()
		}
	}()
	for _, f := range fws {
		t1, t2, err := upstreamPair()
		if err != nil {
			return nil, err
		}
		defer t1.Close()
		defer t2.Close()
		p, err := f.start(b.out, filepath.Join(b.out, "logs", "throughput-"+f.name+".log"), t1.Addr(), t2.Addr())
		if err != nil {
			return nil, err
		}
		rs = append(rs, &running{p: p, tiers: tierMap(t1, t2), result: &tputResult{forwarder: f.name}})
	}
	for _, r := range rs {
		fmt.Printf("  throughput: %s flat out for %v\n", r.p.name, b.tputDur)
		if err := b.flatOut(r.p, r.result); err != nil {
			return nil, err
		}
	}
	// Alternating forwarders round by round spreads slow drifts of the shared machine over all of them.
	for round := range b.cpuRounds {
		for _, r := range rs {
			fmt.Printf("  throughput: %s CPU round %d at %d qps\n", r.p.name, round+1, b.rate)
			if err := b.cpuRound(r.p, r.tiers, round, r.result); err != nil {
				return nil, err
			}
		}
	}
	out := make([]*tputResult, len(rs))
	for i, r := range rs {
		out[i] = r.result
	}
	return out, nil
}
