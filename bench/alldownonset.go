package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

func init() { register(benchScenario{"alldownonset", (*bench).allDownOnsetScenario}) }

// onsetFast is how soon after its send a SERVFAIL counts as fast: the
// forwarder answered it itself, without waiting for any upstream.
var onsetFast = flag.Duration("onset-fast", 5*time.Millisecond, "alldownonset: a SERVFAIL answered within this of its send is a fast one")

// Targets for upstreamtier from issue 21, item 4.
const (
	onsetTargetFirst     = 200 * time.Millisecond // from the last tier's silence to the first fast SERVFAIL
	onsetTargetLostShare = 0.01                   // unanswered within the client timeout, share of the fault window
	onsetTargetRecovery  = 200                    // SERVFAIL among the queries sent after recovery, fewer than this
	edeNoReachable       = dns.ExtendedErrorCodeNoReachableAuthority
)

// onsetCase is one way every upstream of a forwarder goes silent at once.
type onsetCase struct {
	id, about string
	tiers     int  // 1 or 2 tiers, one upstream each
	frozen    bool // the single upstream is a process of its own, stopped with SIGSTOP; else faultdns blackholes
}

var onsetCases = []onsetCase{
	{id: "two tiers blackholed", tiers: 2, about: "two tiers of one faultdns upstream each, both blackholed together"},
	{id: "one upstream blackholed", tiers: 1, about: "one tier of one faultdns upstream, blackholed"},
	{id: "one upstream frozen", tiers: 1, frozen: true,
		about: "one tier of one upstream, a CoreDNS `template` server in a process of its own, stopped (SIGSTOP: the kernel takes the datagrams, nothing answers), then continued (SIGCONT)"},
}

// frozenIP is the address the frozen case's template upstream answers A queries with.
const frozenIP = "198.51.100.7"

// onsetStanza returns forwarder fw's stanza for the case's upstreams.
func onsetStanza(fw string, tiers int, ups []string) string {
	switch {
	case fw == "upstreamtier" && tiers == 2:
		return fmt.Sprintf(upstreamtierStanza, ups[0], ups[1], "")
	case fw == "upstreamtier":
		return fmt.Sprintf("upstreamtier {\n        tier t1 %s\n    }", ups[0])
	case tiers == 2:
		return fmt.Sprintf(forwardStanza, ups[0], ups[1], "")
	default:
		return strings.Replace(fmt.Sprintf(forwardStanza, ups[0], "", ""), "  {", " {", 1)
	}
}

// onsetRun is one forwarder's run of one case.
type onsetRun struct {
	forwarder string
	load      *loadResult
	faultAt   time.Duration // the upstreams went silent, since the load started
	recoverAt time.Duration // they came back
	log       []stampedLine // the forwarder's plugin log lines during the run, stamped
}

// allDownOnsetScenario runs every case for upstreamtier and forward and returns one table, a row per case and forwarder.
func (b *bench) allDownOnsetScenario(fws []forwarder) (string, error) {
	picked, others := upstreamtierAndForward(fws)
	if len(picked) == 0 {
		return "### alldownonset\n\nNot run: neither upstreamtier nor forward is among the forwarders.\n", nil
	}
	var runs [][]*onsetRun
	for _, c := range onsetCases {
		var cr []*onsetRun
		for _, f := range picked {
			fmt.Printf("alldownonset %s: %s\n", c.id, f.name)
			r, err := b.runOnset(c, f.name)
			if err != nil {
				return "", fmt.Errorf("%s %s: %w", c.id, f.name, err)
			}
			cr = append(cr, r)
		}
		runs = append(runs, cr)
	}
	var notes []string
	if len(others) > 0 {
		notes = append(notes, strings.Join(others, ", ")+": not run; this scenario compares the coredns-based forwarders")
	}
	return b.onsetTable(runs, notes), nil
}

// upstreamtierAndForward splits fws into the two forwarders this file's and hierarchy's scenarios compare, and the others' names.
func upstreamtierAndForward(fws []forwarder) (picked []forwarder, others []string) {
	for _, f := range fws {
		if f.name == "upstreamtier" || f.name == "forward" {
			picked = append(picked, f)
		} else {
			others = append(others, f.name)
		}
	}
	return picked, others
}

// runOnset starts fresh upstreams for case c and forwarder fw in front of them, and loads it through the fault.
func (b *bench) runOnset(c onsetCase, fw string) (*onsetRun, error) {
	slug := strings.ReplaceAll(c.id, " ", "-")
	base := filepath.Join(b.out, "logs", "alldownonset-"+slug+"-"+fw)
	var ups []string
	tiers := map[string]int8{}
	var silence, speak func() error
	if c.frozen {
		up, err := fixedCoreDNS("frozen-upstream", b.coredns, fmt.Sprintf(encAnswer, frozenIP)).start(b.out, base+"-upstream.log", "", "")
		if err != nil {
			return nil, err
		}
		defer up.stop()
		defer up.signal(syscall.SIGCONT) // a stopped upstream never sees stop's SIGTERM
		ups, tiers[frozenIP] = []string{up.addr}, 1
		silence = func() error { return up.signal(syscall.SIGSTOP) }
		speak = func() error { return up.signal(syscall.SIGCONT) }
	} else {
		var servers []*faultdns.Server
		for i := range c.tiers {
			s, err := startUpstream()
			if err != nil {
				return nil, err
			}
			defer s.Close()
			servers = append(servers, s)
			ups = append(ups, s.Addr())
			tiers[s.AnswerIP().String()] = int8(i + 1) // #nosec G115 -- one or two tiers
		}
		setAll := func(m faultdns.Mode) error {
			for _, s := range servers {
				if err := s.SetMode(m); err != nil {
					return err
				}
			}
			return nil
		}
		silence = func() error { return setAll(faultdns.Blackhole) }
		speak = func() error { return setAll(faultdns.OK) }
	}
	p, err := fixedCoreDNS(fw, b.coredns, onsetStanza(fw, c.tiers, ups)).start(b.out, base+".log", "", "")
	if err != nil {
		return nil, err
	}
	defer p.stop()
	watch := watchLog(base+".log", pluginLine)

	g := &loadGen{target: p.addr, rate: b.rate, sockets: b.sockets, timeout: b.timeout, tiers: tiers, edns: true}
	run := &onsetRun{forwarder: fw}
	errc := make(chan error, 1)
	// The fault is switched by timers from the load's own start, so its edges line up with send times;
	// each edge is taken just before the switch, so no query sent after it meets the old state.
	lr, err := g.run(b.timing.before+b.timing.fault+b.timing.after, func(start time.Time) {
		go func() {
			time.Sleep(time.Until(start.Add(b.timing.before)))
			run.faultAt = time.Since(start)
			if err := silence(); err != nil {
				errc <- err
				return
			}
			time.Sleep(time.Until(start.Add(b.timing.before + b.timing.fault)))
			run.recoverAt = time.Since(start)
			errc <- speak()
		}()
	})
	run.log = watch.close()
	if err != nil {
		return nil, err
	}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("switching the fault: %w", err)
	}
	run.load = lr
	return run, nil
}

// onsetStats is what the table says about one run.
type onsetStats struct {
	before, window, after phaseStats
	// first is the first query sent in the window that got a fast SERVFAIL; -1 if none did.
	first int
	// firstAt is first's send time after the onset; steadyAt when every 100 ms of sends from then on
	// to the window's end got at least 99 % fast SERVFAILs; steady is false if the window never got there.
	firstAt, steadyAt time.Duration
	steady            bool
	ede22             int // SERVFAILs in the window that carried EDE 22
	// slowAfter counts the queries sent in the window after first that got no fast SERVFAIL: whether it held.
	slowAfter int
}

// onsetSummary computes the run's onset statistics.
func onsetSummary(r *onsetRun, fast, timeout time.Duration) onsetStats {
	recs := r.load.records
	end := time.Duration(recs[len(recs)-1].sent) + 1
	s := onsetStats{
		before: stats(recs, 0, r.faultAt, timeout),
		window: stats(recs, r.faultAt, r.recoverAt, timeout),
		after:  stats(recs, r.recoverAt, end, timeout),
	}
	s.first = firstFastServfail(recs, r.faultAt, r.recoverAt, fast)
	if s.first >= 0 {
		s.firstAt = time.Duration(recs[s.first].sent) - r.faultAt
		for i := s.first + 1; i < len(recs) && time.Duration(recs[i].sent) < r.recoverAt; i++ {
			if !fastServfail(&recs[i], fast) {
				s.slowAfter++
			}
		}
	}
	s.steadyAt, s.steady = steadyFrom(recs, r.faultAt, r.recoverAt, func(rec *record) bool { return fastServfail(rec, fast) })
	for i := range recs {
		rec := &recs[i]
		if t := time.Duration(rec.sent); t >= r.faultAt && t < r.recoverAt && answeredServfail(rec, timeout) && rec.hasEDE && rec.ede == edeNoReachable {
			s.ede22++
		}
	}
	return s
}

// fastServfail reports whether r got a SERVFAIL within fast of its send.
func fastServfail(r *record, fast time.Duration) bool {
	d, ok := r.latency(fast)
	return ok && d >= 0 && r.rcode == dns.RcodeServerFailure
}

// answeredServfail reports whether r got a SERVFAIL within timeout.
func answeredServfail(r *record, timeout time.Duration) bool {
	_, ok := r.latency(timeout)
	return ok && r.rcode == dns.RcodeServerFailure
}

// firstFastServfail returns the index of the first query sent in [from, to) that got a fast SERVFAIL, or -1.
func firstFastServfail(recs []record, from, to, fast time.Duration) int {
	lo := sort.Search(len(recs), func(i int) bool { return time.Duration(recs[i].sent) >= from })
	for i := lo; i < len(recs) && time.Duration(recs[i].sent) < to; i++ {
		if fastServfail(&recs[i], fast) {
			return i
		}
	}
	return -1
}

// steadyFrom returns how long after from the queries sent in every full switchWindow up to to
// had at least switchShare of them good; ok is false if the last window falls short.
// Windows start at each query's send time, as switchTime's do; the last switchWindow before to is not judged.
func steadyFrom(recs []record, from, to time.Duration, good func(*record) bool) (time.Duration, bool) {
	to -= switchWindow
	lo := sort.Search(len(recs), func(i int) bool { return time.Duration(recs[i].sent) >= from })
	hi, n := lo, 0
	since := time.Duration(-1)
	for ; lo < len(recs); lo++ {
		start := time.Duration(recs[lo].sent)
		if start+switchWindow > to {
			break
		}
		for hi < len(recs) && time.Duration(recs[hi].sent) < start+switchWindow {
			if good(&recs[hi]) {
				n++
			}
			hi++
		}
		switch {
		case float64(n) < switchShare*float64(hi-lo):
			since = -1
		case since < 0:
			since = start
		}
		if good(&recs[lo]) {
			n--
		}
	}
	return since - from, since >= 0
}

// onsetTable renders the runs, a row per case and forwarder, and checks upstreamtier's against the targets.
func (b *bench) onsetTable(runs [][]*onsetRun, notes []string) string {
	var s strings.Builder
	s.WriteString("### alldownonset: every upstream silent at once\n\n")
	fmt.Fprintf(&s, "%d qps of unique A names with EDNS0 over %d UDP sockets, client timeout %v; phases %v healthy / %v silent / %v recovered. "+
		"Window: the queries sent while silent. Unanswered: no answer within the client timeout. "+
		"First fast SERVFAIL: the send time, after the onset of silence, of the first query that got a SERVFAIL within %v of its send; "+
		"EDE: that answer's Extended DNS Error (22 is No Reachable Authority); then not fast: the window's later queries without a fast SERVFAIL. "+
		"All fast from: when every 100 ms of sends from then to the window's end got ≥ 99 %% fast SERVFAILs. "+
		"After: SERVFAIL (and unanswered) among the queries sent after recovery. Latencies in ms.\n\n",
		b.rate, b.sockets, b.timeout, b.timing.before, b.timing.fault, b.timing.after, *onsetFast)
	for _, c := range onsetCases {
		fmt.Fprintf(&s, "- *%s*: %s\n", c.id, c.about)
	}
	s.WriteString("\n| case | forwarder | send qps | window | unanswered | SERVFAIL | with EDE 22 | first fast SERVFAIL | EDE | then not fast | all fast from | window p50 | window p99 | after: SERVFAIL | after: unanswered |\n")
	s.WriteString("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for ci, cr := range runs {
		c := onsetCases[ci]
		for _, r := range cr {
			st := onsetSummary(r, *onsetFast, b.timeout)
			first, ede := "never", "–"
			if st.first >= 0 {
				rec := &r.load.records[st.first]
				first = ms(st.firstAt) + " ms"
				ede = "none"
				if rec.hasEDE {
					ede = strconv.FormatUint(uint64(rec.ede), 10)
				}
			}
			steady, slow := "never", "–"
			if st.first >= 0 {
				slow = strconv.Itoa(st.slowAfter)
			}
			if st.steady {
				steady = ms(st.steadyAt) + " ms"
			}
			fmt.Fprintf(&s, "| %s | %s | %.0f | %d | %d (%.1f %%) | %d | %d | %s | %s | %s | %s | %s | %s | %d | %d |\n",
				c.id, r.forwarder, r.load.sendRate(), st.window.sent, st.window.lost, onsetPct(st.window.lost, st.window.sent),
				st.window.servfail, st.ede22, first, ede, slow, steady, ms(st.window.p50), ms(st.window.p99),
				st.after.servfail, st.after.lost)
			if st.before.lost+st.before.servfail+st.before.wrong > 0 {
				notes = append(notes, fmt.Sprintf("%s, %s: before the fault %d unanswered, %d SERVFAIL, %d wrong of %d%s", c.id, r.forwarder,
					st.before.lost, st.before.servfail, st.before.wrong, st.before.sent, badBefore(r.load.records, r.faultAt, b.timeout)))
			}
			if w := st.window.wrong + st.after.wrong; w > 0 {
				notes = append(notes, fmt.Sprintf("%s, %s: %d wrong answers", c.id, r.forwarder, w))
			}
			if o := otherRcodes(r.load.records, b.timeout); o != "" {
				notes = append(notes, fmt.Sprintf("%s, %s: answers with other rcodes: %s", c.id, r.forwarder, o))
			}
			if r.load.maxLag > 50*time.Millisecond {
				notes = append(notes, fmt.Sprintf("%s, %s: the load generator fell up to %s ms behind schedule", c.id, r.forwarder, ms(r.load.maxLag)))
			}
			if r.forwarder == "upstreamtier" {
				notes = append(notes, onsetTargetNote(c, r, st))
				if st.slowAfter > 0 {
					notes = append(notes, slowAfterNote(c, r, st, *onsetFast, b.timeout))
				}
			}
			notes = append(notes, fmt.Sprintf("%s, %s, its log, times after the onset: %s", c.id, r.forwarder,
				logNote(r.log, r.load.start.Add(r.faultAt))))
		}
	}
	writeNotes(&s, notes)
	return s.String()
}

// onsetTargetNote says how upstreamtier's run of case c compares with issue 21's targets.
func onsetTargetNote(c onsetCase, r *onsetRun, st onsetStats) string {
	var edeOK bool
	if st.first >= 0 {
		rec := &r.load.records[st.first]
		edeOK = rec.hasEDE && rec.ede == edeNoReachable
	}
	lost := onsetPct(st.window.lost, st.window.sent)
	checks := []string{
		fmt.Sprintf("first fast SERVFAIL %s (≤ %v: %s)", onsetFirstText(st), onsetTargetFirst, verdict(st.first >= 0 && st.firstAt <= onsetTargetFirst)),
		fmt.Sprintf("with EDE 22 (%s)", verdict(edeOK)),
		fmt.Sprintf("%.1f %% unanswered (≤ %.0f %%: %s)", lost, 100*onsetTargetLostShare, verdict(lost <= 100*onsetTargetLostShare)),
		fmt.Sprintf("%d SERVFAIL after recovery (< %d: %s)", st.after.servfail, onsetTargetRecovery, verdict(st.after.servfail < onsetTargetRecovery)),
	}
	return fmt.Sprintf("upstreamtier, %s, against the targets: %s", c.id, strings.Join(checks, "; "))
}

// badBefore says how long before the onset the healthy phase's queries without a right answer were sent, e.g.
// ", sent 40-0.5 ms before the onset": those sent just before it may have met the silence.
func badBefore(recs []record, faultAt, timeout time.Duration) string {
	first, last := time.Duration(-1), time.Duration(-1)
	for i := range recs {
		r := &recs[i]
		t := time.Duration(r.sent)
		if t >= faultAt {
			break
		}
		if _, ok := r.latency(timeout); ok && r.rcode == dns.RcodeSuccess && !r.wrong {
			continue
		}
		if first < 0 {
			first = faultAt - t
		}
		last = faultAt - t
	}
	if first < 0 {
		return ""
	}
	return fmt.Sprintf(", sent %s–%s ms before the onset", ms(first), ms(last))
}

// slowAfterNote says when the window's queries after the first fast SERVFAIL that got none were sent, and what they got.
func slowAfterNote(c onsetCase, r *onsetRun, st onsetStats, fast, timeout time.Duration) string {
	recs := r.load.records
	var from, to, worst time.Duration
	lost, n := 0, 0
	for i := st.first + 1; i < len(recs) && time.Duration(recs[i].sent) < r.recoverAt; i++ {
		rec := &recs[i]
		if fastServfail(rec, fast) {
			continue
		}
		at := time.Duration(rec.sent) - r.faultAt
		if n == 0 {
			from = at
		}
		to, n = at, n+1
		if d, ok := rec.latency(timeout); ok {
			worst = max(worst, d)
		} else {
			lost++
		}
	}
	return fmt.Sprintf("%s, %s: the %d queries after the first fast SERVFAIL that got none were sent %s–%s ms after the onset; %d unanswered, the others answered within %s ms",
		c.id, r.forwarder, n, ms(from), ms(to), lost, ms(worst))
}

// onsetFirstText is the first fast SERVFAIL's time after the onset, or "never".
func onsetFirstText(st onsetStats) string {
	if st.first < 0 {
		return "never"
	}
	return ms(st.firstAt) + " ms"
}

// onsetPct returns n as a percentage of of, 0 for none.
func onsetPct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// logWatch stamps the lines a forwarder writes to its log file as they come, so a table's notes
// can say when it marked an upstream down or up (CoreDNS's log lines carry no time of their own).
type logWatch struct {
	mu    sync.Mutex
	lines []stampedLine
	stop  chan struct{}
	done  chan struct{}
}

// stampedLine is one log line and when the watch read it; zero for a line written before the watch began.
type stampedLine struct {
	at   time.Time
	text string
}

// logPoll is how often the watch looks for new lines: the stamps are late by at most this.
const logPoll = 2 * time.Millisecond

// watchLog starts watching the log file at path, keeping the lines that keep accepts.
func watchLog(path string, keep func(string) bool) *logWatch {
	w := &logWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		buf := make([]byte, 64<<10)
		var rest []byte
		// What the file holds when the watch opens it was written at startup, at no time the watch knows.
		for first := true; ; first = false {
			n, _ := f.Read(buf)
			if n > 0 {
				var lines []string
				lines, rest = splitLines(rest, buf[:n])
				now := time.Now()
				if first {
					now = time.Time{}
				}
				w.mu.Lock()
				for _, l := range lines {
					if keep(l) {
						w.lines = append(w.lines, stampedLine{now, l})
					}
				}
				w.mu.Unlock()
				continue
			}
			select {
			case <-w.stop:
				return
			case <-time.After(logPoll):
			}
		}
	}()
	return w
}

// close stops the watch and returns the lines it kept.
func (w *logWatch) close() []stampedLine {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lines
}

// splitLines appends chunk to the unfinished line pending and returns the finished lines and what is left.
func splitLines(pending, chunk []byte) ([]string, []byte) {
	data := append(pending, chunk...)
	var lines []string
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return lines, data
		}
		lines = append(lines, string(data[:i]))
		data = data[i+1:]
	}
}

// pluginLine keeps the log lines of upstreamtier and forward (state changes, all-down), not CoreDNS's own.
func pluginLine(l string) bool {
	return strings.Contains(l, "plugin/upstreamtier") || strings.Contains(l, "plugin/forward")
}

// logNoteMax is how many log lines a note quotes at most.
const logNoteMax = 12

// logNote renders the lines with their times after ref, e.g. "+12 ms: upstream ... is down", at most logNoteMax.
func logNote(lines []stampedLine, ref time.Time) string {
	return logNoteAs(lines, ref, func(d time.Duration) string { return ms(d) + " ms" })
}

// logNoteAs is logNote with the times formatted by format.
func logNoteAs(lines []stampedLine, ref time.Time, format func(time.Duration) string) string {
	var out []string
	for i, l := range lines {
		if i == logNoteMax {
			out = append(out, fmt.Sprintf("… %d more", len(lines)-logNoteMax))
			break
		}
		text := l.text
		if _, after, ok := strings.Cut(text, "plugin/"); ok {
			text = "plugin/" + after
		}
		if l.at.IsZero() {
			out = append(out, fmt.Sprintf("at startup: `%s`", text))
			continue
		}
		d := l.at.Sub(ref)
		sign := "+"
		if d < 0 {
			sign, d = "-", -d
		}
		out = append(out, fmt.Sprintf("%s%s: `%s`", sign, format(d), text))
	}
	if len(out) == 0 {
		return "no plugin log lines"
	}
	return strings.Join(out, "; ")
}
