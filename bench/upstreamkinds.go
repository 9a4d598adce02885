package main

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

func init() { register(benchScenario{"upstreamkinds", (*bench).upstreamKindsScenario}) }

// The scenario's flags, parsed by main's flag.Parse.
var (
	kindsQueries = flag.Int("kinds-queries", 200, "upstreamkinds: queries per cell, forwarder and transport")
	kindsRate    = flag.Int("kinds-rate", 200, "upstreamkinds: queries per second in a cell")
	kindsPick    = flag.String("kinds", "", "upstreamkinds: comma-separated kinds to run (default: all)")
)

// kindsEarly is how many of a transport's first queries a failing tier 1 may
// see before it must see no more: fall (2 by default) and a margin for the
// queries already in flight when the second failure is judged.
const kindsEarly = 10

// kindsFastError is the median latency under which a failing upstream alone gives clients a fast error.
const kindsFastError = 10 * time.Millisecond

// kindCheck is one query of a kind's fixed set and the answer the kind gives it.
type kindCheck struct {
	name  string
	qtype uint16
	rcode int
	data  string // the A address or TXT string in the answer; "" for an NXDOMAIN
}

// The fixed query sets: names with data and one without, in loadZone; the
// template stub answers A queries for its names only, so it gets those alone.
var (
	kindChecksA = []kindCheck{
		{"a." + loadZone, dns.TypeA, dns.RcodeSuccess, kindA},
		{"b." + loadZone, dns.TypeA, dns.RcodeSuccess, kindB},
	}
	kindChecksZone = append(slices.Clone(kindChecksA),
		kindCheck{"t." + loadZone, dns.TypeTXT, dns.RcodeSuccess, kindTXT},
		kindCheck{"nx." + loadZone, dns.TypeA, dns.RcodeNameError, ""},
	)
)

// kindEnv is what the kinds' servers are started with: the two NSDs.
type kindEnv struct {
	b       *bench
	rootNSD string // authoritative for the root and loadZone: the recursive resolvers' only server
	authNSD string // authoritative for loadZone only: the nsd kind, and the forwarders' upstream
}

// upstreamKind is one kind of upstream server.
type upstreamKind struct {
	name  string
	class string // recursive, authoritative, stub, forwarder, refuser
	bins  []string
	pkgs  string // the Debian packages that bring bins
	// fails: it refuses or fails every name (item 2), so it runs alone and as
	// tier 1 in front of a healthy tier 2 only, and is judged by item 2's rules.
	fails  bool
	checks []kindCheck
	// start starts the kind's server and returns its address and how to stop it.
	start func(e *kindEnv, logPath string) (addr string, stop func(), err error)
}

// kindProc adapts a start function that returns a process.
func kindProc(p *process, err error) (string, func(), error) {
	if err != nil {
		return "", nil, err
	}
	return p.addr, p.stop, nil
}

// upstreamKinds lists every kind, in the table's order.
func upstreamKinds() []upstreamKind {
	return []upstreamKind{
		{"unbound", "recursive", []string{"unbound", "nsd"}, "unbound nsd", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startUnbound(e.b.out, log, e.rootNSD))
		}},
		{"knot-resolver", "recursive", []string{"kresd", "nsd"}, "knot-resolver nsd", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startKindKresd(e.b.out, log, e.rootNSD))
		}},
		{"pdns-recursor", "recursive", []string{"pdns_recursor", "nsd"}, "pdns-recursor nsd", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startKindPdns(e.b.out, log, e.rootNSD))
		}},
		{"nsd", "authoritative", []string{"nsd"}, "nsd", false, kindChecksZone, func(e *kindEnv, _ string) (string, func(), error) {
			return e.authNSD, func() {}, nil // the shared one
		}},
		{"bind9", "authoritative", []string{"named"}, "bind9", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startKindNamed(e.b.out, log, false))
		}},
		{"coredns-file", "authoritative", nil, "", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startCoreKind(e.b.coredns, e.b.out, log, coreFileKind, "", kindWaitData))
		}},
		{"dnsmasq-local", "stub", []string{"dnsmasq"}, "dnsmasq-base", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startKindDnsmasq(e.b.out, log, dnsmasqStubArgs))
		}},
		{"coredns-template", "stub", nil, "", false, kindChecksA, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startCoreKind(e.b.coredns, e.b.out, log, coreTemplateKind, "", kindWaitData))
		}},
		{"dnsmasq-forward", "forwarder", []string{"dnsmasq", "nsd"}, "dnsmasq-base nsd", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startKindDnsmasq(e.b.out, log, func(port int) []string { return dnsmasqForwarderArgs(port, e.authNSD) }))
		}},
		{"dnsdist", "forwarder", []string{"dnsdist", "nsd"}, "dnsdist nsd", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startKindDnsdist(e.b.out, log, e.authNSD))
		}},
		{"coredns-forward", "forwarder", []string{"nsd"}, "nsd", false, kindChecksZone, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startCoreKind(e.b.coredns, e.b.out, log, coreForwardKind, e.authNSD, kindWaitData))
		}},
		{"unbound-refuse", "refuser", []string{"unbound"}, "unbound", true, kindChecksA, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startKindRefuser(e.b.out, log, e.rootNSD))
		}},
		{"bind9-refuse", "refuser", []string{"named"}, "bind9", true, kindChecksA, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startKindNamed(e.b.out, log, true))
		}},
		{"coredns-servfail", "refuser", nil, "", true, kindChecksA, func(e *kindEnv, log string) (string, func(), error) {
			return kindProc(startCoreKind(e.b.coredns, e.b.out, log, coreServfailKind, "", func(addr string) error {
				return kindWaitRcode(addr, "a."+loadZone, dns.TypeA, dns.RcodeServerFailure, 10*time.Second)
			}))
		}},
	}
}

// missing returns the programs of k that are not installed.
func (k upstreamKind) missing() []string {
	var out []string
	for _, bin := range k.bins {
		if _, err := exec.LookPath(bin); err != nil {
			out = append(out, bin)
		}
	}
	return out
}

// kindPosition is where the kind sits in the forwarder's tiers.
type kindPosition int

const (
	posOnly            kindPosition = iota // the only tier
	posBehindClosed                        // tier 2 behind a tier 1 whose port is closed
	posBehindBlackhole                     // tier 2 behind a tier 1 that reads and never answers
	posFirst                               // tier 1 in front of a healthy tier 2
)

func (p kindPosition) String() string {
	return [...]string{"only tier", "behind closed t1", "behind blackholed t1", "t1, healthy t2 behind"}[p]
}

// positions returns the positions a kind runs in: all, or for a failing kind alone and first.
func (k upstreamKind) positions() []kindPosition {
	if k.fails {
		return []kindPosition{posOnly, posFirst}
	}
	return []kindPosition{posOnly, posBehindClosed, posBehindBlackhole, posFirst}
}

// kindTier returns the tier number the kind has in position p.
func kindTier(p kindPosition) int8 {
	if p == posBehindClosed || p == posBehindBlackhole {
		return 2
	}
	return 1
}

// kindStanza renders forwarder fw's stanza with ups as tiers 1, 2: upstreamtier
// with every option at its default, forward as the other scenarios configure it
// (forwardStanza), the upstreams in order under policy sequential.
func kindStanza(fw string, ups []string) string {
	if fw == "forward" {
		second := ""
		if len(ups) > 1 {
			second = ups[1]
		}
		return fmt.Sprintf(forwardStanza, ups[0], second, "")
	}
	var s strings.Builder
	s.WriteString("upstreamtier {")
	for i, u := range ups {
		fmt.Fprintf(&s, "\n        tier t%d %s", i+1, u)
	}
	s.WriteString("\n    }")
	return s.String()
}

// kindForwarderCorefile serves the stanza on the root and a template on
// ready.example., so the bench knows when the forwarder serves without asking
// its upstreams. %[1]d is the DNS port, %[2]d the metrics port, %[3]s the stanza.
const kindForwarderCorefile = `ready.example.:%[1]d {
    bind 127.0.0.1
    template IN A ready.example {
        answer "{{ .Name }} 60 IN A 192.0.2.2"
    }
}
.:%[1]d {
    bind 127.0.0.1
    prometheus 127.0.0.1:%[2]d
    %[3]s
}
`

// startKindForwarder starts coredns with stanza and waits until it answers on ready.example.
func startKindForwarder(coredns, workDir, logPath, stanza string) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "kindfw-")
	if err != nil {
		return nil, err
	}
	var metricsPort int
	p, err := startDaemon(coredns, dir, logPath, func(port int) ([]string, error) {
		var err error
		if metricsPort, err = freePort(); err != nil {
			return nil, err
		}
		path := filepath.Join(dir, "Corefile")
		return []string{"-conf", path, "-quiet"}, os.WriteFile(path, []byte(fmt.Sprintf(kindForwarderCorefile, port, metricsPort, stanza)), 0o600)
	}, func(addr string) error { return probe(addr, 10*time.Second) })
	if err != nil {
		return nil, err
	}
	p.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	return p, nil
}

// kindOutcome is what one client query got.
type kindOutcome int

const (
	outOK       kindOutcome = iota // the answer the cell expects
	outServfail                    // SERVFAIL
	outRefused                     // REFUSED passed on
	outWrong                       // any other answer: another rcode, other data
	outLost                        // no answer within the client timeout
)

// kindSource is who an answer's data came from.
type kindSource int8

const (
	srcNone  kindSource = iota // no data that tells (an error, or data of no one's)
	srcKind                    // the kind's answer to the check
	srcOther                   // the healthy tier 2's faultdns answer (its IP, its address in TXT)
)

// kindJudge classifies answer m to check c; other is the healthy tier 2's answer
// IP and address ("" where there is none), and wantOther says the cell expects
// that tier's answers (a failing kind in front of it) rather than the kind's.
func kindJudge(c kindCheck, m *dns.Msg, otherIP, otherAddr string, wantOther bool) (kindOutcome, kindSource) {
	if m == nil {
		return outLost, srcNone
	}
	src := kindSourceOf(c, m, otherIP, otherAddr)
	switch {
	case src == srcKind && !wantOther, src == srcOther && wantOther:
		return outOK, src
	case m.Rcode == dns.RcodeServerFailure:
		return outServfail, src
	case m.Rcode == dns.RcodeRefused:
		return outRefused, src
	}
	return outWrong, src
}

// kindSourceOf tells whose answer m is: the kind's (exactly the check's rcode and
// data), the other tier's (its IP or address), or neither.
func kindSourceOf(c kindCheck, m *dns.Msg, otherIP, otherAddr string) kindSource {
	if len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, c.name) || m.Question[0].Qtype != c.qtype {
		return srcNone
	}
	var data []string
	for _, rr := range m.Answer {
		if !strings.EqualFold(rr.Header().Name, c.name) {
			continue
		}
		switch r := rr.(type) {
		case *dns.A:
			data = append(data, r.A.String())
		case *dns.TXT:
			data = append(data, strings.Join(r.Txt, ""))
		}
	}
	if m.Rcode == dns.RcodeSuccess && len(data) > 0 && (otherIP != "" && slices.Contains(data, otherIP) || otherAddr != "" && slices.Contains(data, otherAddr)) {
		return srcOther
	}
	if m.Rcode != c.rcode {
		return srcNone
	}
	if c.data == "" {
		if len(data) == 0 {
			return srcKind
		}
		return srcNone
	}
	if len(data) == 1 && data[0] == c.data {
		return srcKind
	}
	return srcNone
}

// kindAnswer is one client query's fate.
type kindAnswer struct {
	outcome kindOutcome
	src     kindSource
	rcode   int // -1 when lost
	latency time.Duration
}

// kindLoad sends n queries, check i%len(checks) for query i, to addr over network
// at rate, each on its own socket or connection as separate clients do, and
// returns their fates once every one is answered or timed out. early is called
// just before query kindsEarly is sent.
func kindLoad(addr, network string, checks []kindCheck, n, rate int, timeout time.Duration, judge func(kindCheck, *dns.Msg) (kindOutcome, kindSource), early func()) []kindAnswer {
	out := make([]kindAnswer, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		if i == kindsEarly && early != nil {
			early()
		}
		wg.Go(func() {
			c := checks[i%len(checks)]
			q := new(dns.Msg)
			q.SetQuestion(c.name, c.qtype)
			cl := &dns.Client{Net: network, Timeout: timeout}
			t0 := time.Now()
			m, _, err := cl.Exchange(q, addr)
			d := time.Since(t0)
			if err != nil || d > timeout {
				out[i] = kindAnswer{outcome: outLost, rcode: -1}
				return
			}
			o, src := judge(c, m)
			out[i] = kindAnswer{outcome: o, src: src, rcode: m.Rcode, latency: d}
		})
	}
	wg.Wait()
	return out
}

// kindStats sums one transport's queries in one cell for one forwarder.
type kindStats struct {
	sent     int
	outcomes [outLost + 1]int
	byTier   [3]int // answers whose data came from tier 1 and 2
	p50      time.Duration
	rcodes   map[int]int // answers by rcode, for the notes
	// Client queries (names under loadZone) the tiers received during the run:
	kindGot  int64 // the kind
	kindLate int64 // the kind, from query kindsEarly on
	otherGot int64 // the other tier: the dead tier 1, or the healthy tier 2 (-1: none can count)
}

// summarise fills s's answer counts from answers; kindTierNo is the kind's tier, 1 or 2.
func (s *kindStats) summarise(answers []kindAnswer, kindTierNo int8) {
	s.sent = len(answers)
	s.rcodes = map[int]int{}
	var lats []time.Duration
	for _, a := range answers {
		s.outcomes[a.outcome]++
		if a.outcome == outLost {
			continue
		}
		s.rcodes[a.rcode]++
		lats = append(lats, a.latency)
		switch a.src {
		case srcKind:
			s.byTier[kindTierNo]++
		case srcOther:
			s.byTier[3-kindTierNo]++
		}
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		s.p50 = lats[len(lats)/2]
	}
}

// kindVerdict judges one transport's run of a cell: item 1 for the kinds that
// serve their names, item 2 for those that refuse or fail every name.
func kindVerdict(fails bool, pos kindPosition, s kindStats) (bool, string) {
	var why []string
	add := func(n int, what string) {
		if n > 0 {
			why = append(why, fmt.Sprintf("%d %s", n, what))
		}
	}
	switch {
	case fails && pos == posOnly:
		add(s.outcomes[outLost], "lost")
		if s.p50 >= kindsFastError {
			why = append(why, fmt.Sprintf("median %s ms ≥ %v", ms(s.p50), kindsFastError))
		}
	default:
		add(s.outcomes[outServfail], "SERVFAIL")
		add(s.outcomes[outRefused], "REFUSED")
		add(s.outcomes[outWrong], "wrong")
		add(s.outcomes[outLost], "lost")
		if fails && s.kindLate > 0 {
			why = append(why, fmt.Sprintf("t1 got %d after the first %d", s.kindLate, kindsEarly))
		}
		if !fails && pos == posFirst && s.otherGot > 0 {
			why = append(why, fmt.Sprintf("t2 got %d", s.otherGot))
		}
	}
	if len(why) == 0 {
		return true, "pass"
	}
	return false, "**FAIL**: " + strings.Join(why, ", ")
}

// kindRun is one forwarder's run of one cell, both transports.
type kindRun struct {
	fw     string
	trans  [2]kindStats // UDP, TCP
	health string       // healthWatch's verdict
	downs  []string     // the forwarder's log lines about upstreams going down
}

// kindTransports are the client transports every cell is run over, in order.
var kindTransports = [2]string{"udp", "tcp"}

// kindCell is one kind in one position, for every forwarder.
type kindCell struct {
	kind upstreamKind
	pos  kindPosition
	runs []*kindRun
}

// upstreamKindsScenario runs the matrix of kinds × positions for upstreamtier and forward side by side.
func (b *bench) upstreamKindsScenario(fws []forwarder) (string, error) {
	var fwNames []string
	for _, f := range fws {
		if f.name == "upstreamtier" || f.name == "forward" {
			fwNames = append(fwNames, f.name)
		}
	}
	const title = "### upstreamkinds: every kind of upstream, in every position, with the defaults\n\n"
	if len(fwNames) == 0 {
		return title + "Skipped: neither upstreamtier nor forward was picked.\n", nil
	}
	var kinds []upstreamKind
	var notes, missing []string
	pkgs := map[string]bool{}
	for _, k := range upstreamKinds() {
		if *kindsPick != "" && !slices.Contains(strings.Split(*kindsPick, ","), k.name) {
			continue
		}
		if m := k.missing(); len(m) > 0 {
			missing = append(missing, fmt.Sprintf("%s (%s)", k.name, strings.Join(m, ", ")))
			for p := range strings.FieldsSeq(k.pkgs) {
				pkgs[p] = true
			}
			continue
		}
		kinds = append(kinds, k)
	}
	if len(missing) > 0 {
		hint := "apt-get install -y " + strings.Join(slices.Sorted(maps.Keys(pkgs)), " ")
		fmt.Printf("upstreamkinds: skipping %s: not installed (%s)\n", strings.Join(missing, "; "), hint)
		notes = append(notes, fmt.Sprintf("skipped, not installed: %s; `%s` to run them", strings.Join(missing, "; "), hint))
	}
	if len(kinds) == 0 {
		return title + "Skipped: no kind can run here.\n\n" + "- " + strings.Join(notes, "\n- ") + "\n", nil
	}

	env := &kindEnv{b: b}
	logOf := func(what string) string {
		return filepath.Join(b.out, "logs", "upstreamkinds-"+strings.ReplaceAll(what, " ", "-")+".log")
	}
	if _, err := exec.LookPath("nsd"); err == nil {
		root, err := startKindNSD(b.out, logOf("root-nsd"), true)
		if err != nil {
			return "", err
		}
		defer root.stop()
		auth, err := startKindNSD(b.out, logOf("nsd"), false)
		if err != nil {
			return "", err
		}
		defer auth.stop()
		env.rootNSD, env.authNSD = root.addr, auth.addr
	}
	var cells []*kindCell
	var probeAnswers []string // what each kind answers to the default probe, ". NS"
	for _, k := range kinds {
		addr, stop, err := k.start(env, logOf(k.name))
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s did not start: %v", k.name, err))
			fmt.Printf("upstreamkinds: %s did not start: %v\n", k.name, err)
			continue
		}
		probeAnswers = append(probeAnswers, fmt.Sprintf("%s %s", k.name, rootNSAnswer(addr)))
		for _, pos := range k.positions() {
			fmt.Printf("upstreamkinds: %s, %s\n", k.name, pos)
			// One forwarder after the other: at once, they would share the kind's
			// server and the CPUs, and one's load would time the other's attempts out.
			cell := &kindCell{kind: k, pos: pos}
			for _, fw := range fwNames {
				r, err := b.runKindCell(k, addr, pos, fw, logOf(k.name+"-"+pos.slug()+"-"+fw))
				if err != nil {
					stop()
					return "", fmt.Errorf("%s, %s, %s: %w", k.name, pos, fw, err)
				}
				cell.runs = append(cell.runs, r)
			}
			cells = append(cells, cell)
		}
		stop()
	}
	notes = append(notes, "what each kind answers to `. NS`, the probe's default name: "+strings.Join(probeAnswers, ", "))
	return title + b.kindsTable(cells, fwNames, notes), nil
}

// rootNSAnswer says what addr answers to ". NS" over UDP, as a probe asks it.
func rootNSAnswer(addr string) string {
	q := new(dns.Msg)
	q.SetQuestion(".", dns.TypeNS)
	m, _, err := (&dns.Client{Timeout: time.Second}).Exchange(q, addr)
	switch {
	case err != nil:
		return "no answer (" + err.Error() + ")"
	case len(m.Question) == 0:
		return dns.RcodeToString[m.Rcode] + " without a question section"
	}
	return dns.RcodeToString[m.Rcode]
}

// slug names a position in file names.
func (p kindPosition) slug() string {
	return [...]string{"only", "behind-closed", "behind-blackhole", "first"}[p]
}

// runKindCell builds the tiers of position pos around the kind at kindAddr,
// starts forwarder fw in front of them and sends the kind's checks over UDP, then TCP.
func (b *bench) runKindCell(k upstreamKind, kindAddr string, pos kindPosition, fw, logPath string) (*kindRun, error) {
	// A counting relay in front of the kind: the client queries it gets from this forwarder.
	front, err := startRelayOnFreePort(kindAddr, nil)
	if err != nil {
		return nil, err
	}
	defer front.close()
	ups := []string{front.addr()}
	other := func() int64 { return -1 }
	var otherIP, otherAddr string
	countNames := func(s *faultdns.Server) func() int64 {
		return func() int64 {
			var n int64
			for _, c := range k.checks {
				n += s.QueriesFor(c.name)
			}
			return n
		}
	}
	switch pos {
	case posBehindClosed:
		port, err := freePort() // nothing listens: ICMP port unreachable, TCP RST
		if err != nil {
			return nil, err
		}
		ups = []string{loopback(port), front.addr()}
	case posBehindBlackhole, posFirst:
		s, err := startUpstream()
		if err != nil {
			return nil, err
		}
		defer s.Close()
		other = countNames(s)
		if pos == posFirst {
			ups = append(ups, s.Addr())
			otherIP, otherAddr = s.AnswerIP().String(), s.Addr()
		} else {
			if err := s.SetMode(faultdns.Blackhole); err != nil {
				return nil, err
			}
			ups = []string{s.Addr(), front.addr()}
		}
	}
	p, err := startKindForwarder(b.coredns, b.out, logPath, kindStanza(fw, ups))
	if err != nil {
		return nil, err
	}
	defer p.stop()
	t2 := ""
	if len(ups) > 1 {
		t2 = ups[1]
	}
	w := watchHealth(p, ups[0], t2)
	wantOther := k.fails && pos == posFirst
	judge := func(c kindCheck, m *dns.Msg) (kindOutcome, kindSource) {
		return kindJudge(c, m, otherIP, otherAddr, wantOther)
	}
	r := &kindRun{fw: fw}
	// What reached the kind for client names: the relay's count, less upstreamtier's
	// probes that ask a client name (those of a down or suspect upstream).
	kindCount := func() int64 { return front.counts.load.Load() - nameProbes(p.metrics, front.addr()) }
	for i, network := range kindTransports {
		k0, o0 := kindCount(), other()
		var kEarly int64
		answers := kindLoad(p.addr, network, k.checks, *kindsQueries, *kindsRate, b.timeout, judge, func() { kEarly = kindCount() })
		st := &r.trans[i]
		st.summarise(answers, kindTier(pos))
		k1 := kindCount()
		st.kindGot, st.kindLate = max(0, k1-k0), max(0, k1-kEarly)
		if o := other(); o >= 0 {
			st.otherGot = o - o0
		} else {
			st.otherGot = -1
		}
	}
	r.health = w.stop()
	r.downs = kindDownLines(logPath)
	return r, nil
}

// nameProbes returns how many probes upstreamtier at metrics sent upstream that
// may ask a client name: those of kind down and suspect (the others ask the
// probe name). 0 for forward, whose health checks ask ". NS" only.
func nameProbes(metrics, upstream string) int64 {
	ms, err := readMetrics(metrics)
	if err != nil {
		return 0
	}
	var n float64
	for _, m := range ms {
		if m.name == utProbes && m.labels["upstream"] == upstream && (m.labels["kind"] == "down" || m.labels["kind"] == "suspect") {
			n += m.value
		}
	}
	return int64(n)
}

// kindDownLines returns the distinct messages of a forwarder's log about upstreams or
// tiers going down or failing probes, without their timestamps, at most 3.
func kindDownLines(logPath string) []string {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return nil
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if !strings.Contains(line, "is down") && !strings.Contains(line, "unavailable") && !strings.Contains(line, "probe") && !strings.Contains(line, "Unhealthy") {
			continue
		}
		if _, rest, ok := strings.Cut(line, "] "); ok {
			line = rest // CoreDNS's "[INFO] plugin/NAME: " prefix
		}
		line = strings.TrimSpace(line)
		if !slices.Contains(out, line) {
			out = append(out, line)
		}
		if len(out) == 3 {
			break
		}
	}
	return out
}

// kindOtherText is the "other tier" column: the client queries the tier that is not the kind got.
func kindOtherText(k upstreamKind, pos kindPosition, s kindStats) string {
	switch {
	case k.fails && pos == posFirst:
		return fmt.Sprintf("t1 got %d (%d from query %d on)", s.kindGot, s.kindLate, kindsEarly+1)
	case pos == posFirst:
		return fmt.Sprintf("t2 got %d", s.otherGot)
	case pos == posBehindBlackhole:
		return fmt.Sprintf("dead t1 got %d", s.otherGot)
	}
	return "–"
}

// kindsTable renders the matrix: a row per kind, position and transport, each forwarder's figures side by side.
func (b *bench) kindsTable(cells []*kindCell, fwNames, notes []string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "Each kind is a real server on loopback (recursive resolvers behind an NSD serving the root and %s; the forwarders in front of an NSD serving %s only). "+
		"Per cell, forwarder and transport: %d queries at %d qps, each from its own socket or TCP connection, cycling through the kind's names "+
		"(with data: NOERROR with it; nx.%s: NXDOMAIN; the template stub and the failing kinds: A names only); client timeout %v. "+
		"Dead tier 1: a closed port, or a faultdns server that reads and never answers; healthy tier 2: a faultdns server answering with its own IP. "+
		"upstreamtier has every option at its default; forward is `policy sequential`, `health_check 0.5s`, `max_fails 1`, `failover SERVFAIL REFUSED`. "+
		"Columns per forwarder: answers ok / SERVFAIL / REFUSED / wrong / lost; answers with the data of tier 1 / tier 2; median latency in ms; "+
		"client queries the other tier received (for a failing tier 1: what it received, and from query %d on); the verdict. "+
		"A refusing or failing kind alone passes with a median under %v and nothing lost; in front of tier 2, with no error seen and nothing reaching it from query %d on.\n\n",
		loadZone, loadZone, *kindsQueries, *kindsRate, loadZone, b.timeout, kindsEarly+1, kindsFastError, kindsEarly+1)
	s.WriteString("| kind | position | transport |")
	for _, fw := range fwNames {
		fmt.Fprintf(&s, " %[1]s ok / SF / REF / wrong / lost | %[1]s t1 / t2 | %[1]s p50 | %[1]s other tier | %[1]s |", fw)
	}
	s.WriteString("\n|---|---|---|" + strings.Repeat("--:|--:|--:|---|---|", len(fwNames)) + "\n")
	type failed struct { // a kind's failing rows of one forwarder
		kind string
		rows []string
	}
	fails := map[string][]failed{}
	var health []string
	for _, c := range cells {
		for ti, tr := range kindTransports {
			fmt.Fprintf(&s, "| %s | %s | %s |", c.kind.name, c.pos, strings.ToUpper(tr))
			for _, r := range c.runs {
				st := r.trans[ti]
				ok, verdict := kindVerdict(c.kind.fails, c.pos, st)
				o := st.outcomes
				fmt.Fprintf(&s, " %d / %d / %d / %d / %d | %d / %d | %s | %s | %s |",
					o[outOK], o[outServfail], o[outRefused], o[outWrong], o[outLost], st.byTier[1], st.byTier[2], ms(st.p50), kindOtherText(c.kind, c.pos, st), verdict)
				if ok {
					continue
				}
				f := fails[r.fw]
				if len(f) == 0 || f[len(f)-1].kind != c.kind.name {
					f = append(f, failed{kind: c.kind.name})
				}
				f[len(f)-1].rows = append(f[len(f)-1].rows, c.pos.slug()+" "+tr)
				fails[r.fw] = f
				if o[outWrong] > 0 {
					notes = append(notes, fmt.Sprintf("%s, %s, %s, %s: answers by rcode: %s", c.kind.name, c.pos, tr, r.fw, otherRcodeText(st.rcodes)))
				}
				if ti == 0 || kindRowPasses(c.kind, c.pos, r.trans[0]) {
					health = append(health, fmt.Sprintf("%s, %s, %s: marked down: %s%s", c.kind.name, c.pos, r.fw, r.health, kindLogText(r.downs)))
				}
			}
			s.WriteString("\n")
		}
	}
	var head []string
	for _, fw := range fwNames {
		n := len(kindTransports) * len(cells)
		if len(fails[fw]) == 0 {
			head = append(head, fmt.Sprintf("**%s**: all %d rows pass", fw, n))
			continue
		}
		var parts []string
		rows := 0
		for _, f := range fails[fw] {
			n := len(f.rows)
			rows += n
			if of := kindRows(cells, f.kind); n == of {
				parts = append(parts, fmt.Sprintf("%s (all %d)", f.kind, of))
			} else {
				parts = append(parts, fmt.Sprintf("%s (%s)", f.kind, strings.Join(f.rows, ", ")))
			}
		}
		head = append(head, fmt.Sprintf("**%s**: %d of %d rows fail: %s", fw, rows, n, strings.Join(parts, "; ")))
	}
	notes = append(append(head, notes...), health...)
	writeNotes(&s, notes)
	return s.String()
}

// kindRows returns how many rows kind has in the table.
func kindRows(cells []*kindCell, kind string) int {
	n := 0
	for _, c := range cells {
		if c.kind.name == kind {
			n += len(kindTransports)
		}
	}
	return n
}

// kindRowPasses reports whether one transport's row of a cell passes.
func kindRowPasses(k upstreamKind, pos kindPosition, s kindStats) bool {
	ok, _ := kindVerdict(k.fails, pos, s)
	return ok
}

// kindLogText renders a failing run's log lines about health for its note.
func kindLogText(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	var out []string
	for _, l := range lines {
		if len(l) > 200 {
			l = l[:200] + "…"
		}
		out = append(out, l)
	}
	return "; log: " + strings.Join(out, " | ")
}

// otherRcodeText lists the rcodes of answers, e.g. "NOERROR 12, NXDOMAIN 3".
func otherRcodeText(rcodes map[int]int) string {
	out := make([]string, 0, len(rcodes))
	for _, rc := range slices.Sorted(maps.Keys(rcodes)) {
		out = append(out, fmt.Sprintf("%s %d", dns.RcodeToString[rc], rcodes[rc]))
	}
	return strings.Join(out, ", ")
}
