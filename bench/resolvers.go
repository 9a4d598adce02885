package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func init() { register(benchScenario{"resolvers", (*bench).resolversScenario}) }

// Settings of this file's scenarios, from the command line.
var (
	resolversRate = flag.Int("resolvers-rate", 1000, "resolvers: offered queries per second")
	resolversDur  = flag.Duration("resolvers-duration", 20*time.Second, "resolvers: load per forwarder")
)

// The load names: a Zipf distribution over a large name space with a fixed seed, the
// same sequence for every forwarder. zipfS is chosen so that at the default 1000 qps
// for 20 s about 17 % of the queries are a name's first (a miss at a cold tier 1);
// a longer run repeats more and misses less.
const (
	zipfS      = 1.25
	zipfNames  = 1 << 24 // the name space: n0 ... n16777215 under loadZone
	zipfSeed1  = 1
	zipfSeed2  = 2
	resolverNo = 3 // tiers, one resolver each
)

// resolverRun is one forwarder's run in front of three cold resolvers.
type resolverRun struct {
	forwarder string
	load      *loadResult
	tiers     [resolverNo]countSnapshot // queries each tier's resolver received during the load
	auth      countSnapshot             // queries the resolvers sent the authoritative servers meanwhile
}

// loadNames returns the scenario's n query names, the same for every call.
func loadNames(n int) []string {
	z := rand.NewZipf(rand.New(rand.NewPCG(zipfSeed1, zipfSeed2)), zipfS, 1, zipfNames-1) //nolint:gosec // G404: seeded, so every run asks the same names
	names := make([]string, n)
	for i := range names {
		names[i] = "n" + strconv.FormatUint(z.Uint64(), 10) + "." + loadZone
	}
	return names
}

// firstSeen returns how many of names are a name's first occurrence: the misses of a cold cache with long TTLs.
func firstSeen(names []string) int {
	seen := make(map[string]struct{}, len(names))
	for _, n := range names {
		seen[n] = struct{}{}
	}
	return len(seen)
}

// resolversScenario runs every forwarder in turn in front of three tiers of fresh Unbounds
// behind one NSD, and returns the table; without unbound or nsd it says what to install.
func (b *bench) resolversScenario(fws []forwarder) (string, error) {
	for _, bin := range []string{"unbound", "nsd"} {
		if _, err := exec.LookPath(bin); err != nil {
			msg := fmt.Sprintf("### resolvers: skipped\n\n%s is not installed: `apt-get install -y unbound nsd` to run this scenario.\n", bin)
			fmt.Println("skipping resolvers:", bin, "is not installed (apt-get install -y unbound nsd)")
			return msg, nil
		}
	}
	if (*resolversRate) <= 0 {
		return "", fmt.Errorf("-resolvers-rate %d: want a positive rate", (*resolversRate))
	}
	nsd, err := startNSD(b.out, filepath.Join(b.out, "logs", "resolvers-nsd.log"))
	if err != nil {
		return "", err
	}
	defer nsd.stop()
	names := loadNames(int((*resolversDur).Seconds() * float64((*resolversRate))))
	runs, err := eachForwarder("resolvers", fws, func(f forwarder) (*resolverRun, error) { return b.runResolvers(f, nsd.addr, names) })
	if err != nil {
		return "", err
	}
	return b.resolversTable(runs, names), nil
}

// runResolvers starts the delay proxy, three cold Unbounds with a counting relay in front
// of each, and f in front of those as tiers 1, 2, 3, then sends the names at the scenario's rate.
func (b *bench) runResolvers(f forwarder, auth string, names []string) (*resolverRun, error) {
	proxy, err := startDelayProxy(auth)
	if err != nil {
		return nil, err
	}
	defer proxy.close()
	var fronts [resolverNo]*relay
	for i := range fronts {
		ub, err := startUnbound(b.out, filepath.Join(b.out, "logs", fmt.Sprintf("resolvers-%s-unbound%d.log", f.name, i+1)), proxy.addr())
		if err != nil {
			return nil, err
		}
		defer ub.stop()
		if fronts[i], err = startRelayOnFreePort(ub.addr, nil); err != nil {
			return nil, err
		}
		defer fronts[i].close()
	}
	f.t3 = fronts[2].addr()
	p, err := f.start(b.out, filepath.Join(b.out, "logs", "resolvers-"+f.name+".log"), fronts[0].addr(), fronts[1].addr())
	if err != nil {
		return nil, err
	}
	defer p.stop()

	snap := func() (tiers [resolverNo]countSnapshot, auth countSnapshot) {
		for i, fr := range fronts {
			tiers[i] = fr.counts.snapshot()
		}
		return tiers, proxy.counts.snapshot()
	}
	var tiers0 [resolverNo]countSnapshot
	var auth0 countSnapshot
	g := &loadGen{target: p.addr, rate: (*resolversRate), sockets: b.sockets, timeout: b.timeout,
		tiers: map[string]int8{loadAnswer: 1}, nameOf: func(i int) string { return names[i] }}
	// Counting starts with the load, so the forwarder's start-up probes are not in the run.
	lr, err := g.run(time.Duration(len(names))*time.Second/time.Duration((*resolversRate)), func(time.Time) { tiers0, auth0 = snap() })
	if err != nil {
		return nil, err
	}
	tiers1, auth1 := snap()
	r := &resolverRun{forwarder: f.name, load: lr, auth: auth1.sub(auth0)}
	for i := range r.tiers {
		r.tiers[i] = tiers1[i].sub(tiers0[i])
	}
	return r, nil
}

// Targets for upstreamtier from the rework's issue, checked in a note under the table.
const (
	targetLowerShare = 0.001 // tiers 2 and 3 get at most 0.1 % of the queries sent
	targetAuthRatio  = 1.02  // authoritative load at most 1.02 × forward's
)

// resolversTable renders the resolvers scenario, one row per forwarder.
func (b *bench) resolversTable(runs []*resolverRun, names []string) string {
	var s strings.Builder
	s.WriteString("### resolvers: three tiers of cold Unbound resolvers, healthy\n\n")
	fmt.Fprintf(&s, "%d qps for %v of A queries for Zipf-distributed names (s = %.2f over %d names under %s, fixed seed, the same sequence for every forwarder): "+
		"%d distinct names, so %.1f %% of the queries are a first ask, a miss at a cold tier 1. "+
		"Each forwarder meets three fresh Unbounds (tier 1, 2, 3) behind one NSD; each authoritative query is held %v-%v by the delay proxy (log-uniform, by name). "+
		"Tier columns: the load queries each tier's resolver received, and their share of those sent; probes: the other queries (health checks) per tier. "+
		"Auth: queries the resolvers sent the authoritative servers, and their ratio to forward's. Latencies in ms.\n\n",
		(*resolversRate), (*resolversDur), zipfS, zipfNames, loadZone, firstSeen(names), 100*float64(firstSeen(names))/float64(len(names)),
		authDelayMin, authDelayMax)
	s.WriteString("| forwarder | send qps | sent | lost | SERVFAIL | wrong | p50 | p99 | max | tier 1 | tier 2 | tier 3 | auth | auth / forward | probes t1 / t2 / t3 |\n")
	s.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	var fwAuth int64
	var fwP99 time.Duration
	for _, r := range runs {
		if r.forwarder == "forward" {
			fwAuth, fwP99 = r.auth.load, r.stats(b.timeout).p99
		}
	}
	var notes []string
	for _, r := range runs {
		st := r.stats(b.timeout)
		share := func(n int64) string { return fmt.Sprintf("%d (%.2f %%)", n, 100*float64(n)/float64(max(1, st.sent))) }
		ratio := "-"
		if fwAuth > 0 {
			ratio = fmt.Sprintf("%.3f", float64(r.auth.load)/float64(fwAuth))
		}
		fmt.Fprintf(&s, "| %s | %.0f | %d | %d | %d | %d | %s | %s | %s | %s | %s | %s | %d | %s | %d / %d / %d |\n",
			r.forwarder, r.load.sendRate(), st.sent, st.lost, st.servfail, st.wrong, ms(st.p50), ms(st.p99), ms(st.max),
			share(r.tiers[0].load), share(r.tiers[1].load), share(r.tiers[2].load), r.auth.load, ratio,
			r.tiers[0].probe, r.tiers[1].probe, r.tiers[2].probe)
		if o := otherRcodes(r.load.records, b.timeout); o != "" {
			notes = append(notes, fmt.Sprintf("%s: answers with other rcodes: %s", r.forwarder, o))
		}
		if r.load.maxLag > 50*time.Millisecond {
			notes = append(notes, fmt.Sprintf("%s: the load generator fell up to %s ms behind schedule", r.forwarder, ms(r.load.maxLag)))
		}
		if r.auth.probe > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d authoritative queries for probe names", r.forwarder, r.auth.probe))
		}
		if r.forwarder == "upstreamtier" && fwAuth > 0 {
			notes = append(notes, targetNote(r, st, float64(r.auth.load)/float64(fwAuth), fwP99))
		}
	}
	writeNotes(&s, notes)
	return s.String()
}

// stats summarises the whole run's queries.
func (r *resolverRun) stats(timeout time.Duration) phaseStats {
	return stats(r.load.records, 0, time.Duration(r.load.records[len(r.load.records)-1].sent)+1, timeout)
}

// targetNote says how upstreamtier's run compares with the rework's targets.
func targetNote(r *resolverRun, st phaseStats, authRatio float64, fwP99 time.Duration) string {
	lower := float64(r.tiers[1].load+r.tiers[2].load) / float64(max(1, st.sent))
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "**missed**"
	}
	return fmt.Sprintf("upstreamtier against the targets: tiers 2+3 got %.2f %% of the queries (≤ %.1f %%: %s), authoritative load %.3f × forward's (≤ %.2f: %s), %d lost (0: %s), p99 %s ms vs forward's %s ms (%s)",
		100*lower, 100*targetLowerShare, mark(lower <= targetLowerShare), authRatio, targetAuthRatio, mark(authRatio <= targetAuthRatio),
		st.lost, mark(st.lost == 0), ms(st.p99), ms(fwP99), mark(st.p99 <= fwP99))
}
