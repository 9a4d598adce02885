package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

func init() { register(benchScenario{"hierarchy", (*bench).hierarchyScenario}) }

var (
	hierRate    = flag.Int("hierarchy-rate", 1000, "hierarchy: offered queries per second")
	hierPhase   = flag.Duration("hierarchy-phase", 10*time.Second, "hierarchy: length of each of the four phases")
	hierNXEvery = flag.Int("hierarchy-nx-every", 10, "hierarchy: every Nth query is for a name that does not exist (NXDOMAIN); 0 for none")
)

// The hierarchy's names: q<i>.a.bench.test. exists (a wildcard answers loadAnswer),
// q<i>.nx.bench.test. does not (NXDOMAIN). Every query is a name's first, so no cache answers it.
const (
	hierPositive = "a." + loadZone
	hierNegative = "nx." + loadZone
)

// hierZoneFile is loadZone as the origin and the resolvers' authoritative server serve it.
const hierZoneFile = `$TTL 86400
@   IN SOA ns hostmaster 1 3600 600 86400 3600
@   IN NS  ns
ns  IN A   127.0.0.1
*.a IN A   ` + loadAnswer + `
`

// hierNSDConf is NSD serving loadZone from hier.zone, and the root from root.zone where %[3]s
// says so, with nsdServerConf: unprivileged, on loopback, rate limiting off. Without the root, NSD
// REFUSES every name outside loadZone, `. NS` included: an authoritative-only origin.
const hierNSDConf = nsdServerConf + `%[3]szone:
    name: "` + loadZone + `"
    zonefile: "hier.zone"
`

// hierRootZone is the root stanza of hierNSDConf.
const hierRootZone = "zone:\n    name: \".\"\n    zonefile: \"root.zone\"\n"

// hierServers names the three tiers, in order.
var hierServers = [3]string{"isp-a", "isp-b", "origin"}

// hierPhases describes the four phases; each begins with an event of the run.
var hierPhases = [4]string{"healthy", "isp-a killed", "isp-a killed, isp-b frozen", "both back"}

// hierName returns query i's name.
func hierName(i int) string {
	if hierIsNX(i) {
		return "q" + strconv.Itoa(i) + "." + hierNegative
	}
	return "q" + strconv.Itoa(i) + "." + hierPositive
}

// hierIsNX reports whether query i is for a name that does not exist.
func hierIsNX(i int) bool { return *hierNXEvery > 0 && i%*hierNXEvery == *hierNXEvery-1 }

// hierIndex returns the query index of a load name q<i>.a.bench.test. or q<i>.nx.bench.test. (any case).
func hierIndex(name string) (int, bool) {
	name = strings.ToLower(dns.Fqdn(name))
	label, rest, ok := strings.Cut(name, ".")
	if !ok || (rest != hierPositive && rest != hierNegative) || len(label) < 2 || label[0] != 'q' {
		return 0, false
	}
	i, err := strconv.Atoi(label[1:])
	if err != nil || i < 0 || strconv.Itoa(i) != label[1:] {
		return 0, false
	}
	return i, true
}

// hierArrivals records when a server first received each load query, by the query's index.
type hierArrivals struct {
	at    []atomic.Int64 // Unix nanoseconds; 0 never
	other atomic.Int64   // queries for other names: probes, a resolver's own lookups
}

func newHierArrivals(n int) *hierArrivals { return &hierArrivals{at: make([]atomic.Int64, n)} }

// observe notes one query for name; it has the relay's delay signature and holds nothing.
func (a *hierArrivals) observe(name string) time.Duration {
	if i, ok := hierIndex(name); ok && i < len(a.at) {
		a.at[i].CompareAndSwap(0, time.Now().UnixNano())
	} else {
		a.other.Add(1)
	}
	return 0
}

// since returns when query i arrived, since start, and whether it did.
func (a *hierArrivals) since(i int, start time.Time) (time.Duration, bool) {
	t := a.at[i].Load()
	if t == 0 {
		return 0, false
	}
	return time.Duration(t - start.UnixNano()), true
}

// hierRun is one forwarder's run of the hierarchy.
type hierRun struct {
	forwarder string
	load      *loadResult
	// events are when isp-a was killed, isp-b frozen, and both brought back (isp-b continued, isp-a
	// restarted on its port), since the load started: the phase edges.
	events [3]time.Duration
	// ispAReady is when the restarted isp-a first answered, since the load started; 0 if it never did.
	ispAReady time.Duration
	servers   [3]*hierArrivals
	log       []stampedLine // the forwarder's plugin log lines during the run, stamped
}

// hierarchyScenario runs upstreamtier and forward in front of isp-a, isp-b and origin, and returns the table.
func (b *bench) hierarchyScenario(fws []forwarder) (string, error) {
	for _, bin := range []string{"unbound", "nsd"} {
		if _, err := exec.LookPath(bin); err != nil {
			fmt.Println("skipping hierarchy:", bin, "is not installed (apt-get install -y unbound nsd)")
			return fmt.Sprintf("### hierarchy: skipped\n\n%s is not installed: `apt-get install -y unbound nsd` to run this scenario.\n", bin), nil
		}
	}
	if *hierRate <= 0 || *hierPhase <= 0 {
		return "", fmt.Errorf("-hierarchy-rate %d, -hierarchy-phase %v: want both positive", *hierRate, *hierPhase)
	}
	picked, others := upstreamtierAndForward(fws)
	if len(picked) == 0 {
		return "### hierarchy\n\nNot run: neither upstreamtier nor forward is among the forwarders.\n", nil
	}
	runs, err := eachForwarder("hierarchy", picked, func(f forwarder) (*hierRun, error) { return b.runHierarchy(f.name) })
	if err != nil {
		return "", err
	}
	var notes []string
	if len(others) > 0 {
		notes = append(notes, strings.Join(others, ", ")+": not run; this scenario compares the coredns-based forwarders")
	}
	return b.hierTable(runs, notes), nil
}

// hierStanza returns forwarder fw's configuration in front of the three tiers' addresses: upstreamtier
// with every option at its default, forward as the other scenarios configure it.
func hierStanza(fw string, ups [3]string) string {
	if fw == "upstreamtier" {
		return fmt.Sprintf("upstreamtier . {\n        tier %s %s\n        tier %s %s\n        tier %s %s\n    }",
			hierServers[0], ups[0], hierServers[1], ups[1], hierServers[2], ups[2])
	}
	return fmt.Sprintf(forwardStanza, ups[0], ups[1]+" "+ups[2], "")
}

// runHierarchy starts fresh servers for forwarder fw: an NSD with the root and the zone, behind a
// counting relay for each Unbound (each load name is one miss there, so the relay counts the
// client queries its Unbound got); Unbound isp-a and isp-b; the origin NSD, with the zone only,
// behind a counting relay of its own; and fw in front of isp-a, isp-b and the origin's relay.
// Then the load, with isp-a killed, isp-b frozen and both back at the phase edges.
func (b *bench) runHierarchy(fw string) (*hierRun, error) {
	logs := filepath.Join(b.out, "logs", "hierarchy-"+fw)
	n := int(4 * hierPhase.Seconds() * float64(*hierRate))
	run := &hierRun{forwarder: fw}
	for i := range run.servers {
		run.servers[i] = newHierArrivals(n)
	}
	auth, err := startHierNSD(b.out, logs+"-auth-nsd.log", true)
	if err != nil {
		return nil, err
	}
	defer auth.stop()
	var isp [2]*process
	var ispAuth [2]string // each Unbound's counting relay to auth
	for i := range isp {
		rl, err := startRelayOnFreePort(auth.addr, run.servers[i].observe)
		if err != nil {
			return nil, err
		}
		defer rl.close()
		ispAuth[i] = rl.addr()
		if isp[i], err = startHierUnbound(b.out, logs+"-"+hierServers[i]+".log", ispAuth[i]); err != nil {
			return nil, err
		}
		defer func() { isp[i].stop() }()
	}
	defer isp[1].signal(syscall.SIGCONT) // a stopped Unbound never sees stop's SIGTERM
	origin, err := startHierNSD(b.out, logs+"-origin-nsd.log", false)
	if err != nil {
		return nil, err
	}
	defer origin.stop()
	front, err := startRelayOnFreePort(origin.addr, run.servers[2].observe)
	if err != nil {
		return nil, err
	}
	defer front.close()
	p, err := fixedCoreDNS(fw, b.coredns, hierStanza(fw, [3]string{isp[0].addr, isp[1].addr, front.addr()})).start(b.out, logs+".log", "", "")
	if err != nil {
		return nil, err
	}
	defer p.stop()
	watch := watchLog(logs+".log", pluginLine)

	g := &loadGen{target: p.addr, rate: *hierRate, sockets: b.sockets, timeout: b.timeout,
		tiers: map[string]int8{loadAnswer: 1}, nameOf: hierName}
	errc := make(chan error, 1)
	lr, err := g.run(4**hierPhase, func(start time.Time) {
		go func() { errc <- run.switchServers(start, &isp, b.out, logs+"-"+hierServers[0]+".log", ispAuth[0]) }()
	})
	run.log = watch.close()
	if err != nil {
		return nil, err
	}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("switching the servers: %w", err)
	}
	run.load = lr
	return run, nil
}

// switchServers kills isp-a at the first phase edge, freezes isp-b at the second, and at the
// third continues isp-b and restarts isp-a on its port, resolving through the same relay.
// Each edge is taken just before its switch.
func (r *hierRun) switchServers(start time.Time, isp *[2]*process, workDir, logPath, authA string) error {
	at := func(k int) {
		time.Sleep(time.Until(start.Add(time.Duration(k+1) * *hierPhase)))
		r.events[k] = time.Since(start)
	}
	addr := isp[0].addr
	at(0)
	if err := isp[0].cmd.Process.Kill(); err != nil {
		return err
	}
	isp[0].cmd.Wait()
	at(1)
	if err := isp[1].signal(syscall.SIGSTOP); err != nil {
		return err
	}
	at(2)
	if err := isp[1].signal(syscall.SIGCONT); err != nil {
		return err
	}
	old := isp[0]
	old.stop() // the killed one's log and directory
	p, err := startHierUnboundOn(workDir, logPath, authA, hierPortOf(addr))
	if err != nil {
		return fmt.Errorf("restarting isp-a on %s: %w", addr, err)
	}
	r.ispAReady = time.Since(start)
	isp[0] = p
	return nil
}

// hierPortOf returns the port of host:port.
func hierPortOf(addr string) int {
	_, port, _ := strings.Cut(addr, ":")
	n, _ := strconv.Atoi(port)
	return n
}

// startHierNSD starts NSD on a free loopback port serving loadZone from hierZoneFile, and the root
// too when root is set; it is ready when it answers loadZone's SOA.
func startHierNSD(workDir, logPath string, root bool) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "nsd-")
	if err != nil {
		return nil, err
	}
	files := map[string]string{"hier.zone": hierZoneFile}
	rootConf := ""
	if root {
		files["root.zone"], rootConf = rootZone, hierRootZone
	}
	for file, body := range files {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	return startDaemon("nsd", dir, logPath, func(port int) ([]string, error) {
		path := filepath.Join(dir, "nsd.conf")
		return []string{"-d", "-c", path}, os.WriteFile(path, []byte(fmt.Sprintf(hierNSDConf, dir, port, rootConf)), 0o600)
	}, func(addr string) error { return askSOA(addr, loadZone, 10*time.Second) })
}

// startHierUnbound starts a cold Unbound as startUnbound does, on a free port that startHierUnboundOn can bind again after a kill.
func startHierUnbound(workDir, logPath, auth string) (*process, error) {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		var p *process
		if p, err = startHierUnboundOn(workDir, logPath, auth, port); err == nil {
			return p, nil
		}
	}
	return nil, err
}

// startHierUnboundOn starts a cold Unbound on port of 127.0.0.1 with unboundConf, resolving through auth,
// appending to logPath, and waits until it answers a readiness probe (from its local-data).
func startHierUnboundOn(workDir, logPath, auth string, port int) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "unbound-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(unboundConf, dir, port, hostAtPort(auth))), 0o600); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("unbound", "-d", "-c", path)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	if err := cmd.Start(); err != nil {
		log.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	p := &process{name: "unbound", addr: loopback(port), dir: dir, cmd: cmd, log: log}
	if err := hierAwaitAnswer(p.addr, 10*time.Second); err != nil {
		p.cmd.Process.Kill()
		p.stop()
		return nil, fmt.Errorf("unbound: %w (log: %s)", err, logPath)
	}
	return p, nil
}

// hierAwaitAnswer asks addr for a readiness name every 10 ms until a NOERROR answer with a record
// arrives, so a restart's return time is within about 10 ms of its first answer.
func hierAwaitAnswer(addr string, wait time.Duration) error {
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	var last error
	for i, deadline := 0, time.Now().Add(wait); time.Now().Before(deadline); i++ {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("restart%d.ready.example.", i), dns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return nil
		}
		last = err
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering after %v: %v", addr, wait, last)
}

// hierClass is what became of one query of the hierarchy.
type hierClass int

const (
	hierUnanswered hierClass = iota // no answer within the client timeout
	hierRightA                      // NOERROR with the zone's A record, for a name that exists
	hierRightNX                     // NXDOMAIN, for a name that does not
	hierWrong                       // NOERROR or NXDOMAIN that is not the zone's answer
	hierOther                       // any other rcode (SERVFAIL, REFUSED, ...)
)

// hierClassify says what became of r, query for a name that exists unless nx.
func hierClassify(r *record, nx bool, timeout time.Duration) hierClass {
	if _, ok := r.latency(timeout); !ok {
		return hierUnanswered
	}
	switch {
	case r.rcode == dns.RcodeSuccess && !nx && !r.wrong:
		return hierRightA
	case r.rcode == dns.RcodeNameError && nx:
		return hierRightNX
	case r.rcode == dns.RcodeSuccess || r.rcode == dns.RcodeNameError:
		return hierWrong
	}
	return hierOther
}

// hierPhaseOf returns the phase a time falls in: how many of the ascending edges are at or before it.
func hierPhaseOf(t time.Duration, edges []time.Duration) int {
	k := 0
	for k < len(edges) && edges[k] <= t {
		k++
	}
	return k
}

// hierPhaseStats summarises the queries sent in one phase.
type hierPhaseStats struct {
	sent, unanswered, rightA, rightNX, wrong int
	other                                    map[int8]int // by rcode
	p50, p99                                 time.Duration
	received                                 [3]int // of these queries, how many each tier's server received
}

// hierSummary buckets the run's queries by the phase they were sent in.
func hierSummary(r *hierRun, timeout time.Duration) [4]hierPhaseStats {
	var ph [4]hierPhaseStats
	var lats [4][]time.Duration
	for i := range ph {
		ph[i].other = map[int8]int{}
	}
	recs := r.load.records
	for i := range recs {
		rec := &recs[i]
		k := hierPhaseOf(time.Duration(rec.sent), r.events[:])
		s := &ph[k]
		s.sent++
		switch hierClassify(rec, hierIsNX(i), timeout) {
		case hierUnanswered:
			s.unanswered++
		case hierRightA:
			s.rightA++
		case hierRightNX:
			s.rightNX++
		case hierWrong:
			s.wrong++
		case hierOther:
			s.other[rec.rcode]++
		}
		if d, ok := rec.latency(timeout); ok {
			lats[k] = append(lats[k], d)
		}
		for j, a := range r.servers {
			if _, ok := a.since(i, r.load.start); ok {
				s.received[j]++
			}
		}
	}
	for k := range ph {
		ph[k].p50, ph[k].p99 = hierPercentiles(lats[k])
	}
	return ph
}

// hierPercentiles returns the median and the 99th percentile of ds (sorted in place), 0 for none.
func hierPercentiles(ds []time.Duration) (p50, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[min(len(ds)-1, (99*len(ds)+99)/100-1)]
}

// hierLastArrival returns the latest arrival at a, since start, of any load query; ok is false if none arrived.
func hierLastArrival(a *hierArrivals, start time.Time) (time.Duration, bool) {
	var last time.Duration
	var any bool
	for i := range a.at {
		if t, ok := a.since(i, start); ok && (!any || t > last) {
			last, any = t, true
		}
	}
	return last, any
}

// hierOtherText renders counts by rcode, e.g. "SERVFAIL 12, REFUSED 3", "0" for none.
func hierOtherText(other map[int8]int) string {
	out := make([]string, 0, len(other))
	for rc, n := range other {
		out = append(out, fmt.Sprintf("%s %d", dns.RcodeToString[int(rc)], n))
	}
	if len(out) == 0 {
		return "0"
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// hierTable renders the runs, a row per forwarder and phase, and checks upstreamtier's against the targets.
func (b *bench) hierTable(runs []*hierRun, notes []string) string {
	var s strings.Builder
	s.WriteString("### hierarchy: Unbound isp-a → Unbound isp-b → NSD origin, real servers on loopback\n\n")
	nx := "no names that do not exist"
	if *hierNXEvery > 0 {
		nx = fmt.Sprintf("every %dth query is for q<i>.%s, which does not exist (NXDOMAIN)", *hierNXEvery, hierNegative)
	}
	fmt.Fprintf(&s, "%d qps of unique A names q<i>.%s (the zone's wildcard answers %s; %s) over %d UDP sockets, client timeout %v. "+
		"Tiers: isp-a and isp-b are cold Unbounds resolving %s from an NSD that also serves a loopback root; origin is an NSD authoritative for %s only "+
		"(it REFUSES `. NS` and every name outside its zone). upstreamtier: `upstreamtier . { tier isp-a A; tier isp-b B; tier origin C }`, every option at its default; "+
		"forward: `forward . A B C { policy sequential; health_check 0.5s; max_fails 1; failover SERVFAIL REFUSED }`. "+
		"Phases of %v: isp-a killed (SIGKILL, port closed) at the first edge, isp-b frozen (SIGSTOP) at the second, at the third isp-b continued (SIGCONT) and isp-a restarted on its port. "+
		"Rows by the phase the queries were sent in. Right: NOERROR with the zone's A record, or NXDOMAIN for a name that does not exist; wrong: any other NOERROR or NXDOMAIN. "+
		"isp-a, isp-b, origin: how many of the phase's client queries each server received (a counting relay between each Unbound and its authoritative server, where each name is one miss, and in front of the origin). Latencies in ms.\n\n",
		*hierRate, hierPositive, loadAnswer, nx, b.sockets, b.timeout, loadZone, loadZone, *hierPhase)
	s.WriteString("| forwarder | phase | send qps | sent | unanswered | right NOERROR | right NXDOMAIN | other rcodes | wrong | p50 | p99 | isp-a | isp-b | origin |\n")
	s.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range runs {
		ph := hierSummary(r, b.timeout)
		for k, st := range ph {
			fmt.Fprintf(&s, "| %s | %d: %s | %.0f | %d | %d | %d | %d | %s | %d | %s | %s | %d | %d | %d |\n",
				r.forwarder, k+1, hierPhases[k], r.load.sendRate(), st.sent, st.unanswered, st.rightA, st.rightNX, hierOtherText(st.other), st.wrong,
				ms(st.p50), ms(st.p99), st.received[0], st.received[1], st.received[2])
		}
		notes = append(notes, r.backNote())
		if r.load.maxLag > 50*time.Millisecond {
			notes = append(notes, fmt.Sprintf("%s: the load generator fell up to %s ms behind schedule", r.forwarder, ms(r.load.maxLag)))
		}
		notes = append(notes, fmt.Sprintf("%s: other queries (probes, the resolvers' own lookups) seen by isp-a's, isp-b's and the origin's relay: %d / %d / %d",
			r.forwarder, r.servers[0].other.Load(), r.servers[1].other.Load(), r.servers[2].other.Load()))
		if r.forwarder == "upstreamtier" {
			notes = append(notes, hierTargetNote(r, ph))
		}
		for j := 1; j < len(hierServers); j++ {
			if early := r.early(j); early != "" {
				notes = append(notes, early)
			}
		}
		notes = append(notes, fmt.Sprintf("%s, its log, seconds since the load started: %s", r.forwarder,
			logNoteAs(r.log, r.load.start, func(d time.Duration) string { return hierSecs(d) + " s" })))
	}
	writeNotes(&s, notes)
	return s.String()
}

// earlyMax is how many of a lower tier's early queries a note lists.
const earlyMax = 5

// early lists the client queries server j (isp-b or the origin) received that were sent while a
// tier above it was still up: before the edge at which the tier just above went down. For each,
// when every server received it after its send; "" for none.
func (r *hierRun) early(j int) string {
	edge := r.events[j-1]
	var out []string
	n := 0
	for i := range r.load.records {
		sent := time.Duration(r.load.records[i].sent)
		if sent >= edge {
			break
		}
		if _, ok := r.servers[j].since(i, r.load.start); !ok {
			continue
		}
		if n++; n > earlyMax {
			continue
		}
		at := make([]string, 0, len(r.servers))
		for k, a := range r.servers {
			got := "–"
			if t, ok := a.since(i, r.load.start); ok {
				got = "+" + ms(t-sent) + " ms"
			}
			at = append(at, hierServers[k]+" "+got)
		}
		out = append(out, fmt.Sprintf("query %d sent at %s s (%s)", i, hierSecs(sent), strings.Join(at, ", ")))
	}
	if n == 0 {
		return ""
	}
	if n > earlyMax {
		out = append(out, fmt.Sprintf("… %d more", n-earlyMax))
	}
	return fmt.Sprintf("%s: %s received %d client queries sent before %s was down; when each server received them after their send: %s",
		r.forwarder, hierServers[j], n, hierServers[j-1], strings.Join(out, "; "))
}

// backAfter returns how long after both ISPs came back the origin received its last client query:
// 0 when it received none after that; ok is false when it never received any.
func (r *hierRun) backAfter() (time.Duration, bool) {
	last, ok := hierLastArrival(r.servers[2], r.load.start)
	if !ok {
		return 0, false
	}
	return max(0, last-r.events[2]), true
}

// backNote says when the origin stopped getting client queries, and when the restarted isp-a answered.
func (r *hierRun) backNote() string {
	ready := "never answered again"
	if r.ispAReady > 0 {
		ready = fmt.Sprintf("answered again %s ms after its restart began", ms(r.ispAReady-r.events[2]))
	}
	d, ok := r.backAfter()
	origin := "the origin got no client query in the whole run"
	if ok {
		origin = fmt.Sprintf("the origin's last client query arrived %s ms after both ISPs were brought back", ms(d))
	}
	return fmt.Sprintf("%s: %s; isp-a %s (phase edges at %s / %s / %s s)", r.forwarder, origin, ready,
		hierSecs(r.events[0]), hierSecs(r.events[1]), hierSecs(r.events[2]))
}

// hierSecs formats d in seconds with two decimals.
func hierSecs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

// hierTargetNote says how upstreamtier's run compares with issue 21's targets (item 5).
func hierTargetNote(r *hierRun, ph [4]hierPhaseStats) string {
	var unanswered, bad int
	for _, st := range ph {
		unanswered += st.unanswered
		bad += st.wrong
		for _, n := range st.other {
			bad += n
		}
	}
	judged, atEdge := r.originWhileUp()
	d, _ := r.backAfter()
	checks := []string{
		fmt.Sprintf("%d unanswered (0: %s)", unanswered, verdict(unanswered == 0)),
		fmt.Sprintf("%d answers not right (0: %s)", bad, verdict(bad == 0)),
		fmt.Sprintf("origin got %d client queries sent while an ISP was up (0: %s; %d more sent in the last %v before an edge, which meet the next state, not judged)",
			judged, verdict(judged == 0), atEdge, switchWindow),
		fmt.Sprintf("origin's last client query %s ms after both back (≤ 1 s: %s)", ms(d), verdict(d <= time.Second)),
	}
	return "upstreamtier against the targets: " + strings.Join(checks, "; ")
}

// originWhileUp counts the client queries the origin received that were sent before both ISPs
// were down (phases 1 and 2): judged, and atEdge for those sent in the last switchWindow before
// the next edge, which may reach an ISP after it died or froze, as switchTime leaves such queries out.
func (r *hierRun) originWhileUp() (judged, atEdge int) {
	for i := range r.load.records {
		sent := time.Duration(r.load.records[i].sent)
		k := hierPhaseOf(sent, r.events[:])
		if k >= 2 {
			break
		}
		if _, ok := r.servers[2].since(i, r.load.start); !ok {
			continue
		}
		if sent >= r.events[k]-switchWindow {
			atEdge++
		} else {
			judged++
		}
	}
	return judged, atEdge
}
