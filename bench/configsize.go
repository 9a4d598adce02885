package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/upstreamtier/upstreamtier/internal/responder"
)

func init() { register(benchScenario{"configsize", (*bench).configSizeScenario}) }

// configSizes are the configsize scenario's upstreamtier shapes, named as the
// sub-benchmarks of BenchmarkServeDNSConfigSize in bench_test.go.
var configSizes = []struct {
	name           string
	tiers, perTier int
}{
	{"1tier-2upstreams", 1, 2},
	{"10tiers-100upstreams", 10, 10},
}

// configSizeTarget is the most CPU per query the largest shape may cost over the smallest.
const configSizeTarget = 1.05

// tierStanza returns an upstreamtier stanza of tiers tiers of perTier of addrs each, in order, every option at its default.
func tierStanza(addrs []string, tiers, perTier int) string {
	lines := []string{"upstreamtier {"}
	for t := range tiers {
		lines = append(lines, fmt.Sprintf("        tier t%d %s", t+1, strings.Join(addrs[t*perTier:(t+1)*perTier], " ")))
	}
	return strings.Join(append(lines, "    }"), "\n")
}

// configSizeScenario runs healthy upstreamtier in each of configSizes, every
// upstream a port of one responder, flat out in alternated rounds, and returns
// the table with the Go benchmark's allocations beside it. It runs whatever
// forwarders are picked, as long as upstreamtier is among them.
func (b *bench) configSizeScenario(fws []forwarder) (string, error) {
	const title = "### configsize: 2 upstreams in 1 tier against 100 in 10 tiers, healthy, flat out\n\n"
	if !slices.ContainsFunc(fws, func(f forwarder) bool { return f.name == "upstreamtier" }) {
		return title + "Not run: upstreamtier is not among the forwarders.\n", nil
	}
	ports := 0
	for _, c := range configSizes {
		ports += c.tiers * c.perTier
	}
	up, err := responder.Start(ports, netip.MustParseAddr(answerIP))
	if err != nil {
		return "", err
	}
	defer up.Close()
	addrs := up.Addrs()
	var fs []forwarder
	for _, c := range configSizes {
		n := c.tiers * c.perTier
		fs = append(fs, fixedCoreDNS(c.name, b.coredns, tierStanza(addrs[:n], c.tiers, c.perTier)))
		addrs = addrs[n:]
	}
	ps, sat, err := b.flatOut("configsize", fs, "", "")
	defer stopAll(ps)
	if err != nil {
		return "", err
	}
	allocs, why := b.goBench("^BenchmarkServeDNSConfigSize$")

	var s strings.Builder
	s.WriteString(title)
	fmt.Fprintf(&s, "%s Upstreamtier with every option at its default; each upstream is its own port of one `internal/responder` on 127.0.0.1, "+
		"tier 1 serves (policy random) and the lower tiers get only standby probes. Allocations: the Go benchmark `%s`, medians.\n\n",
		b.satHeader(), fmt.Sprintf(goBenchCommand, "^BenchmarkServeDNSConfigSize$", (*goBenchCount)))
	s.WriteString("| config | QPS | CPU µs / query | allocs / query | B / query |\n")
	s.WriteString("|---|--:|--:|--:|--:|\n")
	var notes []string
	for i, c := range configSizes {
		alloc, bytes := "–", "–"
		if a, ok := allocs["ServeDNSConfigSize/"+c.name]; ok {
			alloc, bytes = fmt.Sprintf("%.0f", a.allocs), fmt.Sprintf("%.0f", a.bytes)
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", c.name,
			spread(perRound(sat[i], satRound.qps), func(v float64) string { return fmt.Sprintf("%.0f", v) }),
			spread(perRound(sat[i], satRound.cpuPerQuery), µs), alloc, bytes)
		notes = appendNotes(notes, lossNote(c.name, sat[i]), otherNote(c.name, sat[i]))
	}
	small, large := configSizes[0].name, configSizes[len(configSizes)-1].name
	cpuS, cpuL := perRound(sat[0], satRound.cpuPerQuery), perRound(sat[len(sat)-1], satRound.cpuPerQuery)
	ratio := float64(median(cpuL)) / float64(median(cpuS))
	verdict := "met"
	if ratio > configSizeTarget {
		verdict = "**missed**"
	}
	fmt.Fprintf(&s, "\n**%s / %s**: CPU per query **%.2f** (ratio of the medians; round by round %s; target ≤ %.2f: %s), QPS %.2f",
		large, small, ratio, spread(ratios(cpuL, cpuS), twoDecimals), configSizeTarget, verdict,
		median(perRound(sat[len(sat)-1], satRound.qps))/median(perRound(sat[0], satRound.qps)))
	if a, ok := allocs["ServeDNSConfigSize/"+large]; ok {
		if b, ok := allocs["ServeDNSConfigSize/"+small]; ok {
			fmt.Fprintf(&s, ", allocations %.0f / %.0f, bytes %.0f / %.0f", a.allocs, b.allocs, a.bytes, b.bytes)
		}
	}
	s.WriteString(".\n")
	if why != "" {
		notes = append(notes, "allocations: the Go benchmark was "+why)
	}
	writeNotes(&s, notes)
	return s.String(), nil
}

// appendNotes appends the notes that say something.
func appendNotes(notes []string, more ...string) []string {
	for _, n := range more {
		if n != "" {
			notes = append(notes, n)
		}
	}
	return notes
}
