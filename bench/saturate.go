package main

import (
	"cmp"
	"flag"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// Settings of this file's scenarios, from the command line.
var (
	tputDur    = flag.Duration("tput-duration", 5*time.Second, "throughput, configsize and encrypted: one flat-out round of one config")
	tputRounds = flag.Int("tput-rounds", 5, "throughput, configsize and encrypted: flat-out rounds per config, run alternately")
)

// satRound is one config's flat-out run: clients as fast as the server answers.
type satRound struct {
	sent, answered int           // queries sent; NOERROR answers among them
	elapsed        time.Duration // the load's length
	cpu            time.Duration // the server's user+system CPU meanwhile
	other          float64       // cores other processes kept busy meanwhile
}

// qps returns the NOERROR answers per second.
func (r satRound) qps() float64 { return float64(r.answered) / r.elapsed.Seconds() }

// cpuPerQuery returns the server's CPU per NOERROR answer.
func (r satRound) cpuPerQuery() time.Duration { return r.cpu / time.Duration(max(1, r.answered)) }

// satTool says what loads the server flat out: dnsperf, or the Go closed loop without it.
func satTool() string {
	if _, err := exec.LookPath("dnsperf"); err == nil {
		return "dnsperf"
	}
	return "go closed loop"
}

// saturate loads p flat out for the throughput duration, dnsperf -c 8 or the Go
// closed loop, and reads p's CPU time from /proc/PID/stat just before and after.
func (b *bench) saturate(p *process) (satRound, error) {
	var r satRound
	var loadCPU time.Duration // dnsperf's CPU, which is not other processes' load
	snap := takeCPU()
	cpu0, err := p.cpuTime()
	if err != nil {
		return r, err
	}
	if satTool() == "dnsperf" {
		out, err := b.runDnsperf(p, (*tputDur), "-c", "8", "-t", "2")
		if err != nil {
			return r, err
		}
		r.sent, r.answered = int(out.values["Queries sent"]), out.rcodes["NOERROR"]
		r.elapsed = time.Duration(out.values["Run time (s)"] * float64(time.Second))
		loadCPU = out.cpu
	} else {
		lr, err := b.closedLoop(p, closedLoopWorkers, (*tputDur))
		if err != nil {
			return r, err
		}
		r.sent, r.answered, r.elapsed = int(lr.sent), lr.rcodes["NOERROR"], (*tputDur)
	}
	cpu1, err := p.cpuTime()
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	r.other = otherLoad(snap, takeCPU(), r.cpu+loadCPU)
	if r.answered == 0 || r.elapsed <= 0 {
		return r, fmt.Errorf("%s: no NOERROR answer flat out", p.name)
	}
	return r, nil
}

// flatOut starts every config of fs in front of t1 and t2 (which a fixedCoreDNS config ignores),
// logging to OUT/logs/SC-NAME.log, and runs them flat out in satRounds. It returns the processes
// started, to be stopped by the caller also after an error, and each one's rounds.
func (b *bench) flatOut(sc string, fs []forwarder, t1, t2 string) ([]*process, [][]satRound, error) {
	var ps []*process
	for _, f := range fs {
		p, err := f.start(b.out, filepath.Join(b.out, "logs", sc+"-"+f.name+".log"), t1, t2)
		if err != nil {
			return ps, nil, err
		}
		ps = append(ps, p)
	}
	sat, err := b.satRounds(sc, ps)
	return ps, sat, err
}

// stopAll stops every process of ps.
func stopAll(ps []*process) {
	for _, p := range ps {
		p.stop()
	}
}

// roundOrder returns the order in which n configs run in round k: as given in
// even rounds, reversed in odd ones (A B C, C B A, A B C ...), so that a slow
// drift of a shared machine weighs on every config alike.
func roundOrder(k, n int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	if k%2 == 1 {
		slices.Reverse(order)
	}
	return order
}

// satRounds runs every process of ps flat out in each of the bench's rounds, in roundOrder,
// and returns rounds[i][k], process i's round k.
func (b *bench) satRounds(sc string, ps []*process) ([][]satRound, error) {
	rounds := make([][]satRound, len(ps))
	for k := range *tputRounds {
		for _, i := range roundOrder(k, len(ps)) {
			fmt.Printf("  %s: %s flat out for %v, round %d of %d\n", sc, ps[i].name, (*tputDur), k+1, (*tputRounds))
			r, err := b.saturate(ps[i])
			if err != nil {
				return nil, err
			}
			rounds[i] = append(rounds[i], r)
		}
	}
	return rounds, nil
}

// perRound returns f of each round.
func perRound[T any](rs []satRound, f func(satRound) T) []T {
	out := make([]T, len(rs))
	for k, r := range rs {
		out[k] = f(r)
	}
	return out
}

// median returns the middle value of vs (the upper middle for an even count), zero for none.
func median[T cmp.Ordered](vs []T) T {
	var zero T
	if len(vs) == 0 {
		return zero
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2]
}

// spread renders the median of vs and, in brackets, their range: "62.1 (60.3–66.0)".
func spread[T cmp.Ordered](vs []T, format func(T) string) string {
	if len(vs) == 0 {
		return "–"
	}
	return fmt.Sprintf("%s (%s–%s)", format(median(vs)), format(slices.Min(vs)), format(slices.Max(vs)))
}

// µs formats d in microseconds with one decimal.
func µs(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }

// ratios returns a[k] / b[k] for every round k.
func ratios[T time.Duration | float64](a, b []T) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for k := range out {
		out[k] = float64(a[k]) / float64(b[k])
	}
	return out
}

// twoDecimals formats a ratio.
func twoDecimals(v float64) string { return fmt.Sprintf("%.2f", v) }

// otherNote says how busy other processes kept the machine during rounds, if they did.
func otherNote(name string, rs []satRound) string {
	others := perRound(rs, func(r satRound) float64 { return r.other })
	if slices.Max(others) <= otherLoadNote {
		return ""
	}
	return fmt.Sprintf("%s: other processes kept %s cores busy (median, range over the rounds)", name,
		spread(others, func(v float64) string { return fmt.Sprintf("%.1f", v) }))
}

// lossNote says how many of a config's queries got no NOERROR answer flat out, if any did.
func lossNote(name string, rs []satRound) string {
	sent, answered := 0, 0
	for _, r := range rs {
		sent, answered = sent+r.sent, answered+r.answered
	}
	if answered >= sent {
		return ""
	}
	return fmt.Sprintf("%s: %.2f %% of the queries sent flat out got no NOERROR answer (dropped at saturation or timed out)", name, 100*float64(sent-answered)/float64(sent))
}

// satHeader is the text under a flat-out scenario's heading: what was run and how it is summarised.
func (b *bench) satHeader() string {
	return fmt.Sprintf("Flat out: %s (`-c 8`, unique names, no rate limit) for %v per round, %d rounds; each round runs every config once, "+
		"in turns alternated A B C, C B A, ... All configs run at once from the start, each with its own port, but only one is loaded at a time. "+
		"QPS: NOERROR answers per second. CPU / query: the server's user+system CPU time (`/proc/PID/stat` utime+stime, read before and after the round) "+
		"over its NOERROR answers. Every cell is the median over the rounds, then (min–max).",
		satTool(), (*tputDur), (*tputRounds))
}
