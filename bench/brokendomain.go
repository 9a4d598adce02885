package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

func init() { register(benchScenario{"brokendomain", (*bench).brokenDomainScenario}) }

// Settings of this file's scenarios, from the command line.
var (
	brokenShare = flag.Float64("broken-share", 0.2, "brokendomain: share of the queries under the zone tier 1 fails")
)

// brokenZone is the zone tier 1 answers SERVFAIL for in the brokendomain
// scenario, as a resolver does for a lame or DNSSEC-bogus domain.
const brokenZone = "broken" + nameSuffix

// isBroken reports whether query i goes to brokenZone: a hash of i below
// share, so broken names come in the runs and gaps of real traffic rather
// than every fifth query, and every run sends the same ones.
func isBroken(i int, share float64) bool {
	// splitmix64's finaliser: consecutive indexes give unrelated bits.
	x := uint64(i) + 0x9e3779b97f4a7c15 //nolint:gosec // G115: query indexes are not negative
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) < share*(1<<53)
}

// brokenName returns query i's name: under brokenZone for the broken share, else the load's usual name.
func (b *bench) brokenName(i int) string {
	if isBroken(i, (*brokenShare)) {
		return "q" + strconv.Itoa(i) + "." + brokenZone
	}
	return "q" + strconv.Itoa(i) + nameSuffix
}

// brokenDomainAbout says what the scenario does, for its table.
func (b *bench) brokenDomainAbout() string {
	return fmt.Sprintf("tier 1 answers SERVFAIL for every name under %s (%.0f%% of the queries), NOERROR for the rest; tier 2 answers everything", brokenZone, 100*(*brokenShare))
}

// brokenDomainScenario runs every forwarder with tier 1 failing one zone and returns the table.
func (b *bench) brokenDomainScenario(fws []forwarder) (string, error) {
	if (*brokenShare) < 0 || (*brokenShare) > 1 {
		return "", fmt.Errorf("-broken-share %v is not between 0 and 1", (*brokenShare))
	}
	breakZone := func(t1, _ *faultdns.Server) error {
		return t1.SetRules(faultdns.Rule{Zone: brokenZone, Mode: faultdns.ServFail})
	}
	runs, err := eachForwarder("brokendomain", fws, func(f forwarder) (*perNameRun, error) {
		return b.runPerName("brokendomain", f, breakZone, b.brokenName, nil)
	})
	if err != nil {
		return "", err
	}
	return b.brokenDomainTable(runs), nil
}

// brokenDomainTable renders the runs, good names and broken names apart.
func (b *bench) brokenDomainTable(runs []*perNameRun) string {
	var s strings.Builder
	fmt.Fprintf(&s, "### brokendomain: %s\n\n", b.brokenDomainAbout())
	fmt.Fprintf(&s, "%v at the fixed rate per forwarder. Good names are answered NOERROR by both tiers, broken names only by tier 2; "+
		"tier 1 / tier 2 count right NOERROR answers by the tier whose IP they carry; lost: no answer within the client timeout; latencies (p50 / p99) in ms. "+
		"Marked down: whether a coredns-based forwarder marked an upstream down during the run, from its metrics (– for the others).\n\n", (*pernameDur))
	s.WriteString("| forwarder | send qps | good sent | good tier 1 | good tier 2 | good lost | good SERVFAIL | good p50 / p99 | broken sent | broken tier 2 | broken SERVFAIL | broken lost | broken p50 / p99 | marked down |\n")
	s.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	var notes []string
	for _, r := range runs {
		good, broken := b.brokenStats(r)
		fmt.Fprintf(&s, "| %s | %.0f | %d | %d | %d | %d | %d | %s | %d | %d | %d | %d | %s | %s |\n",
			r.forwarder, r.load.sendRate(),
			good.sent, good.tier[1], good.tier[2], good.lost, good.servfail, p50p99(good),
			broken.sent, broken.tier[2], broken.servfail, broken.lost, p50p99(broken), r.down)
		if n := wrongNote(r, good, broken); n != "" {
			notes = append(notes, n)
		}
		if broken.tier[1] > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d broken names answered NOERROR with tier 1's IP", r.forwarder, broken.tier[1]))
		}
		notes = append(notes, r.notes(b.timeout)...)
	}
	writeNotes(&s, notes)
	return s.String()
}

// brokenStats summarises a run's good names and broken names.
func (b *bench) brokenStats(r *perNameRun) (good, broken phaseStats) {
	good = statsWhere(r.load.records, func(i int, _ *record) bool { return !isBroken(i, (*brokenShare)) }, b.timeout)
	broken = statsWhere(r.load.records, func(i int, _ *record) bool { return isBroken(i, (*brokenShare)) }, b.timeout)
	return good, broken
}
