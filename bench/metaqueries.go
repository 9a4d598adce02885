package main

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

func init() { register(benchScenario{"metaqueries", (*bench).metaQueriesScenario}) }

// Settings of this file's scenarios, from the command line.
var (
	metaRate = flag.Int("meta-rate", 4, "metaqueries: queries per second of each meta type (AXFR, IXFR, qtype 0, ANY)")
)

// metaTypes are the query types the side client sends: the ones clients
// send and resolvers refuse or answer empty.
var metaTypes = []uint16{dns.TypeAXFR, dns.TypeIXFR, dns.TypeNone, dns.TypeANY}

// metaTypeName names a meta type for the table; miekg calls type 0 "None".
func metaTypeName(t uint16) string {
	if t == dns.TypeNone {
		return "qtype 0"
	}
	return dns.TypeToString[t]
}

// Outcomes counted among the rcodes: no answer within the client timeout
// (dnsmasq, for one, drops AXFR and IXFR over UDP), and an answer that does not unpack.
const (
	noAnswer   = -1
	unreadable = -2
)

// metaRules make both tiers answer meta queries as Unbound 1.17 does over
// UDP: REFUSED for AXFR and IXFR. Unbound answers qtype 0 from a local zone
// and sends it on otherwise, so what a client gets depends on the zone's
// servers; REFUSED stands in for them. ANY gets faultdns's empty NOERROR,
// as from Unbound.
func metaRules(t1, t2 *faultdns.Server) error {
	rules := []faultdns.Rule{
		{Qtypes: []uint16{dns.TypeAXFR, dns.TypeIXFR}, Mode: faultdns.Refused},
		{Qtypes: []uint16{dns.TypeNone}, Mode: faultdns.Refused},
	}
	if err := t1.SetRules(rules...); err != nil {
		return err
	}
	return t2.SetRules(rules...)
}

// metaClient sends each meta type rate times a second over UDP, alongside the load, and counts the answers by rcode.
type metaClient struct {
	rate    int
	timeout time.Duration
	length  time.Duration // how long it sends for

	wg     sync.WaitGroup
	mu     sync.Mutex
	rcodes map[uint16]map[int]int // type -> rcode (noAnswer for none) -> answers
}

// run sends to target from start for c.length, each query from its own goroutine and socket, as separate clients do.
func (c *metaClient) run(target string, start time.Time) {
	c.rcodes = map[uint16]map[int]int{}
	c.wg.Go(func() {
		every := time.Second / time.Duration(max(c.rate, 1))
		for k := 0; time.Duration(k)*every < c.length; k++ {
			time.Sleep(time.Until(start.Add(time.Duration(k) * every)))
			for _, t := range metaTypes {
				name := "meta" + strconv.Itoa(k) + nameSuffix
				c.wg.Go(func() { c.count(t, c.ask(target, name, t)) })
			}
		}
	})
}

// ask sends one query of type t for name and returns the answer's rcode, noAnswer or unreadable.
func (c *metaClient) ask(target, name string, t uint16) int {
	m := new(dns.Msg)
	m.SetQuestion(name, t)
	cl := &dns.Client{Net: "udp", Timeout: c.timeout}
	r, _, err := cl.Exchange(m, target)
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		return noAnswer
	case err != nil:
		return unreadable
	}
	return r.Rcode
}

// count records one answer.
func (c *metaClient) count(t uint16, rcode int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rcodes[t] == nil {
		c.rcodes[t] = map[int]int{}
	}
	c.rcodes[t][rcode]++
}

// wait returns once every query has been answered or has timed out.
func (c *metaClient) wait() { c.wg.Wait() }

// rcodeCell renders answers by rcode, most first, e.g. "REFUSED 38, none 2".
func rcodeCell(counts map[int]int) string {
	rcs := slices.Collect(maps.Keys(counts))
	slices.SortFunc(rcs, func(a, b int) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return a - b
	})
	out := make([]string, 0, len(rcs))
	for _, rc := range rcs {
		name := dns.RcodeToString[rc]
		switch {
		case rc == noAnswer:
			name = "none"
		case rc == unreadable:
			name = "unreadable"
		case name == "":
			name = "RCODE" + strconv.Itoa(rc)
		}
		out = append(out, fmt.Sprintf("%s %d", name, counts[rc]))
	}
	if len(out) == 0 {
		return "–"
	}
	return strings.Join(out, ", ")
}

// metaRun is one forwarder's metaqueries run: the load and the side client's answers.
type metaRun struct {
	*perNameRun
	meta *metaClient
}

// metaQueriesAbout says what the scenario does, for its table.
func (b *bench) metaQueriesAbout() string {
	return fmt.Sprintf("normal load, and a side client sending AXFR, IXFR, qtype 0 and ANY over UDP, %d/s each; both tiers REFUSE AXFR, IXFR and qtype 0", (*metaRate))
}

// metaQueriesScenario runs every forwarder with meta queries beside the load and returns the table.
func (b *bench) metaQueriesScenario(fws []forwarder) (string, error) {
	runs, err := eachForwarder("metaqueries", fws, func(f forwarder) (metaRun, error) {
		mc := &metaClient{rate: (*metaRate), timeout: b.timeout, length: (*pernameDur)}
		r, err := b.runPerName("metaqueries", f, metaRules, nil, mc.run)
		mc.wait()
		return metaRun{r, mc}, err
	})
	if err != nil {
		return "", err
	}
	return b.metaQueriesTable(runs), nil
}

// metaQueriesTable renders the normal load and the meta queries' answers per forwarder.
func (b *bench) metaQueriesTable(runs []metaRun) string {
	var s strings.Builder
	fmt.Fprintf(&s, "### metaqueries: %s\n\n", b.metaQueriesAbout())
	fmt.Fprintf(&s, "%v at the fixed rate per forwarder. Normal: the load's A queries; tier 1 / tier 2 count right NOERROR answers by the tier whose IP they carry; "+
		"lost: no answer within the client timeout; latencies (p50 / p99) in ms. Each meta type's answers by rcode; none: no answer within the client timeout; unreadable: an answer that does not unpack. "+
		"Marked down: whether a coredns-based forwarder marked an upstream down during the run, from its metrics (– for the others).\n\n", (*pernameDur))
	s.WriteString("| forwarder | send qps | normal sent | tier 1 | tier 2 | SERVFAIL | lost | p50 / p99 |")
	for _, t := range metaTypes {
		s.WriteString(" " + metaTypeName(t) + " |")
	}
	s.WriteString(" marked down |\n|---|--:|--:|--:|--:|--:|--:|--:|" + strings.Repeat("---|", len(metaTypes)) + "---|\n")
	var notes []string
	for _, r := range runs {
		n := statsWhere(r.load.records, func(int, *record) bool { return true }, b.timeout)
		fmt.Fprintf(&s, "| %s | %.0f | %d | %d | %d | %d | %d | %s |", r.forwarder, r.load.sendRate(), n.sent, n.tier[1], n.tier[2], n.servfail, n.lost, p50p99(n))
		for _, t := range metaTypes {
			s.WriteString(" " + rcodeCell(r.meta.rcodes[t]) + " |")
		}
		s.WriteString(" " + r.down + " |\n")
		if w := wrongNote(r.perNameRun, n); w != "" {
			notes = append(notes, w)
		}
		notes = append(notes, r.notes(b.timeout)...)
	}
	writeNotes(&s, notes)
	return s.String()
}
