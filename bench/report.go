package main

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// phaseStats summarises the queries sent during one phase.
type phaseStats struct {
	sent, lost, servfail int
	wrong                int    // NOERROR answers to another question or with an unknown IP
	tier                 [3]int // right NOERROR answers by tier number
	p50, p99, max        time.Duration
}

// otherLoadNote is the CPU use by other processes, in cores, above which a run gets a note.
const otherLoadNote = 0.25

// switchWindow is the sliding window over which a tier switch must hold.
const switchWindow = 100 * time.Millisecond

// switchShare is the share of a window's queries the new tier must answer.
const switchShare = 0.99

// stats summarises the records sent in [from, to).
func stats(recs []record, from, to time.Duration, timeout time.Duration) phaseStats {
	return statsWhere(recs, func(_ int, r *record) bool {
		t := time.Duration(r.sent)
		return t >= from && t < to
	}, timeout)
}

// statsWhere summarises the records that keep accepts, given their index and record.
func statsWhere(recs []record, keep func(i int, r *record) bool, timeout time.Duration) phaseStats {
	var s phaseStats
	var lats []time.Duration
	for i := range recs {
		r := &recs[i]
		if !keep(i, r) {
			continue
		}
		s.sent++
		d, ok := r.latency(timeout)
		if !ok {
			s.lost++
			continue
		}
		lats = append(lats, d)
		switch r.rcode {
		case dns.RcodeSuccess:
			if r.wrong {
				s.wrong++
			} else {
				s.tier[r.tier]++
			}
		case dns.RcodeServerFailure:
			s.servfail++
		}
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		s.p50 = lats[len(lats)/2]
		s.p99 = lats[min(len(lats)-1, int(math.Ceil(0.99*float64(len(lats))))-1)]
		s.max = lats[len(lats)-1]
	}
	return s
}

// switchTime returns how long after from the queries sent in every full window up to to
// got at least switchShare of their answers from tier; ok is false if the last window fails.
// "Every window from then on" keeps a forwarder that flaps back from counting as switched.
// Lost and failed queries count against the share: a window of silence is not a switch.
func switchTime(recs []record, tier int8, from, to, timeout time.Duration) (time.Duration, bool) {
	// Queries sent just before the phase ends may meet the upstreams' next state; they are not judged.
	to -= switchWindow
	// Records are in send order, so two indices bound the window.
	lo := sort.Search(len(recs), func(i int) bool { return time.Duration(recs[i].sent) >= from })
	hi, good := lo, 0
	since := time.Duration(-1) // start of the current run of good windows
	for ; lo < len(recs); lo++ {
		start := time.Duration(recs[lo].sent)
		if start+switchWindow > to {
			break
		}
		for hi < len(recs) && time.Duration(recs[hi].sent) < start+switchWindow {
			if answeredBy(&recs[hi], tier, timeout) {
				good++
			}
			hi++
		}
		switch {
		case float64(good) < switchShare*float64(hi-lo):
			since = -1
		case since < 0:
			since = start
		}
		if answeredBy(&recs[lo], tier, timeout) {
			good--
		}
	}
	return since - from, since >= 0
}

// otherRcodes counts the answers that are neither NOERROR nor SERVFAIL, by rcode, e.g. "REFUSED 12".
func otherRcodes(recs []record, timeout time.Duration) string {
	counts := map[int8]int{}
	for i := range recs {
		r := &recs[i]
		if _, ok := r.latency(timeout); ok && r.rcode != dns.RcodeSuccess && r.rcode != dns.RcodeServerFailure {
			counts[r.rcode]++
		}
	}
	out := make([]string, 0, len(counts))
	for rc, n := range counts {
		out = append(out, fmt.Sprintf("%s %d", dns.RcodeToString[int(rc)], n))
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// answeredBy reports whether r got a NOERROR answer from tier within timeout.
func answeredBy(r *record, tier int8, timeout time.Duration) bool {
	_, ok := r.latency(timeout)
	return ok && r.rcode == dns.RcodeSuccess && !r.wrong && r.tier == tier
}

// faultTable renders one scenario's runs as a markdown table, one row per forwarder.
func faultTable(sc faultScenario, tm timing, runs []*faultRun, timeout time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### %s: %s\n\n", sc.id, sc.about)
	fmt.Fprintf(&b, "Phases %v / %v / %v; each cell is before / during / after the fault; latencies in ms.\n\n", tm.before, tm.fault, tm.after)
	b.WriteString("| forwarder | send qps | sent | lost | SERVFAIL | wrong | tier 1 | tier 2 | p50 | p99 | max | failover | failback |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	notes := make([]string, 0, len(runs))
	for _, r := range runs {
		recs := r.load.records
		end := time.Duration(recs[len(recs)-1].sent) + 1
		ph := [3]phaseStats{
			stats(recs, 0, r.faultAt, timeout),
			stats(recs, r.faultAt, r.recoverAt, timeout),
			stats(recs, r.recoverAt, end, timeout),
		}
		cells := func(f func(phaseStats) string) string {
			return f(ph[0]) + " / " + f(ph[1]) + " / " + f(ph[2])
		}
		count := func(f func(phaseStats) int) string {
			return cells(func(s phaseStats) string { return strconv.Itoa(f(s)) })
		}
		lat := func(f func(phaseStats) time.Duration) string {
			return cells(func(s phaseStats) string { return ms(f(s)) })
		}
		failover, failback := "never", "never"
		if d, ok := switchTime(recs, 2, r.faultAt, r.recoverAt, timeout); sc.noTier2 {
			failover = "n/a"
		} else if ok {
			failover = ms(d) + " ms"
		}
		if d, ok := switchTime(recs, 1, r.recoverAt, end, timeout); ok {
			failback = ms(d) + " ms"
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			r.forwarder, r.load.sendRate(),
			count(func(s phaseStats) int { return s.sent }),
			count(func(s phaseStats) int { return s.lost }),
			count(func(s phaseStats) int { return s.servfail }),
			count(func(s phaseStats) int { return s.wrong }),
			count(func(s phaseStats) int { return s.tier[1] }),
			count(func(s phaseStats) int { return s.tier[2] }),
			lat(func(s phaseStats) time.Duration { return s.p50 }),
			lat(func(s phaseStats) time.Duration { return s.p99 }),
			lat(func(s phaseStats) time.Duration { return s.max }),
			failover, failback)
		notes = append(notes, r.notes(timeout)...)
	}
	writeNotes(&b, notes)
	return b.String()
}

// notes returns what a reader of a fixed-rate run's row should also know.
func (r *faultRun) notes(timeout time.Duration) []string {
	var notes []string
	if o := otherRcodes(r.load.records, timeout); o != "" {
		notes = append(notes, fmt.Sprintf("%s: answers with other rcodes: %s", r.forwarder, o))
	}
	if r.other > otherLoadNote {
		notes = append(notes, fmt.Sprintf("%s: other processes kept %.1f cores busy during the run", r.forwarder, r.other))
	}
	if r.load.maxLag > 50*time.Millisecond {
		notes = append(notes, fmt.Sprintf("%s: the load generator fell up to %s ms behind schedule", r.forwarder, ms(r.load.maxLag)))
	}
	return notes
}

// writeNotes appends notes to a table as a list, if there are any.
func writeNotes(b *strings.Builder, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(b, "\n- %s", n)
	}
	if len(notes) > 0 {
		b.WriteString("\n")
	}
}

// ms formats d in milliseconds with two significant digits below 10 ms.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.2f", v)
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
