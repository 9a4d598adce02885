package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	clog "github.com/coredns/coredns/plugin/pkg/log"
	"github.com/miekg/dns"
)

// These tests check, with this build of CoreDNS and real sockets, what the
// README and docs/ promise a user sees: in the client's answers, the log and the
// metrics.

// startUpstream starts an upstream in mode; faultdns.Refused makes every
// query through the plugin end in its own SERVFAIL.
func startUpstream(t *testing.T, mode faultdns.Mode) *faultdns.Server {
	t.Helper()
	up, err := faultdns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	if err := up.SetMode(mode); err != nil {
		t.Fatal(err)
	}
	return up
}

// serverBlock returns a server block on a free port of 127.0.0.1 with the
// given plugins, and the address to query it on.
func serverBlock(t *testing.T, plugins string) (corefile, addr string) {
	t.Helper()
	addr = freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	return fmt.Sprintf(".:%s {\n    bind %s\n%s\n}\n", port, host, plugins), addr
}

// logBuffer collects what CoreDNS logs.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// captureLog sends CoreDNS's log to a buffer until the test ends.
func captureLog(t *testing.T) *logBuffer {
	t.Helper()
	l := &logBuffer{}
	clog.SetOutput(l)
	t.Cleanup(func() { clog.SetOutput(os.Stderr) })
	return l
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a safety net, not a timing assertion
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logLine waits for the log line that contains every one of parts and
// returns it.
func logLine(t *testing.T, l *logBuffer, parts ...string) string {
	t.Helper()
	var found string
	waitFor(t, fmt.Sprintf("a log line with %q", parts), func() bool {
		for line := range strings.Lines(l.String()) {
			if containsAll(line, parts) {
				found = strings.TrimSpace(line)
				return true
			}
		}
		return false
	})
	return found
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func exchange(t *testing.T, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	c := dns.Client{Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, dns.Type(qtype), err)
	}
	return r
}

// extendedError returns the Extended DNS Error of m, or nil.
func extendedError(m *dns.Msg) *dns.EDNS0_EDE {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

// The log plugin prints the same `-` for tier and upstream whenever no
// upstream answered: a SERVFAIL of the plugin and a query type it answers
// itself.
func TestLogMetadataWithoutUpstream(t *testing.T) {
	up := startUpstream(t, faultdns.Refused)
	logs := captureLog(t)
	corefile, addr := serverBlock(t, fmt.Sprintf(`    metadata
    log . "{type} {name} {rcode} tier={/upstreamtier/tier} upstream={/upstreamtier/upstream} attempts={/upstreamtier/attempts} hedged={/upstreamtier/hedged}"
    upstreamtier {
        tier site %s
    }`, up.Addr()))
	startCoreDNS(t, corefile)

	if m := exchange(t, addr, "servfail.example.org", dns.TypeA); m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
	}
	if m := exchange(t, addr, "example.org", dns.TypeAXFR); m.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("AXFR: rcode %s, want NOTIMP", dns.RcodeToString[m.Rcode])
	}
	for _, name := range []string{"servfail.example.org.", "example.org."} {
		line := logLine(t, logs, " "+name+" ")
		if !strings.Contains(line, " tier=- upstream=- ") {
			t.Errorf("log line %q: want tier=- upstream=-", line)
		}
	}
}

// The cache plugin drops the OPT record of every answer it passes on, the
// Extended DNS Error with it: only a query that does not go through the
// cache gets it.
func TestExtendedErrorBehindCache(t *testing.T) {
	up := startUpstream(t, faultdns.Refused)
	stanza := fmt.Sprintf("    upstreamtier {\n        tier site %s\n    }", up.Addr())
	for _, tc := range []struct {
		name, cache string
		ede         bool
	}{
		{"no cache", "", true},
		{"cache", "cache 30", false},
		{"cache without caching SERVFAIL", "cache 30 {\n        servfail 0\n    }", false},
		{"cache with success and denial disabled", "cache 30 {\n        disable success\n        disable denial\n    }", false},
		{"cache for other zones", "cache 30 cluster.local", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			corefile, addr := serverBlock(t, "    "+tc.cache+"\n"+stanza)
			startCoreDNS(t, corefile)
			m := exchange(t, addr, "www.example.org", dns.TypeA)
			if m.Rcode != dns.RcodeServerFailure {
				t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
			}
			e := extendedError(m)
			switch {
			case tc.ede && (e == nil || e.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority):
				t.Errorf("want Extended DNS Error 22, got %v in:\n%s", e, m)
			case !tc.ede && e != nil:
				t.Errorf("want no Extended DNS Error behind the cache, got %v: the README says it is lost", e)
			}
			t.Logf("%s: Extended DNS Error %v", tc.name, e)
		})
	}
}

// Every series the configuration determines is exported from startup, at
// 0, before any query: a scrape right after startup finds them.
func TestMetricsFromStartup(t *testing.T) {
	up := []*faultdns.Server{startUpstream(t, faultdns.OK), startUpstream(t, faultdns.OK)}
	metricsAddr := freeAddr(t)
	corefile, _ := serverBlock(t, fmt.Sprintf(`    prometheus %s
    upstreamtier {
        tier s1 %s
        tier s2 %s
        max_concurrent 100
    }`, metricsAddr, up[0].Addr(), up[1].Addr()))
	startCoreDNS(t, corefile)
	series := scrape(t, metricsAddr)

	var want []string
	add := func(name string, labels ...string) {
		want = append(want, "coredns_upstreamtier_"+name+"{"+strings.Join(labels, ",")+"}")
	}
	for _, r := range []string{"all_down", "all_failed", "prohibited"} {
		add("servfail_total", `reason="`+r+`"`)
	}
	add("max_concurrent_rejects_total")
	for _, ft := range [][2]string{{"s1", "s2"}, {"s1", ""}, {"s2", ""}} {
		add("failovers_total", `from="`+ft[0]+`"`, `to="`+ft[1]+`"`)
		add("failbacks_total", `from="`+ft[1]+`"`, `to="`+ft[0]+`"`)
	}
	for _, qt := range []string{"AXFR", "IXFR", "TKEY", "None", "OPT", "TSIG"} {
		add("local_answers_total", `qtype="`+qt+`"`)
	}
	for i, tier := range []string{"s1", "s2"} {
		tl := `tier="` + tier + `"`
		for _, name := range []string{"hedges_total", "failover_memory_remembered_total", "failover_memory_skips_total", "tier_available", "serving_tier"} {
			add(name, tl)
		}
		ul := `upstream="` + up[i].Addr() + `"`
		for _, rc := range []string{"NOERROR", "NXDOMAIN"} {
			add("requests_total", tl, ul, `rcode="`+rc+`"`)
		}
		for _, r := range []string{"timeout", "network", "rcode", "mismatch"} {
			add("attempt_failures_total", tl, ul, `reason="`+r+`"`)
		}
		for _, kind := range []string{"down", "standby", "suspect", "liveness"} {
			for _, res := range []string{"ok", "fail"} {
				add("probes_total", tl, ul, `kind="`+kind+`"`, `result="`+res+`"`)
			}
		}
		add("attempt_duration_seconds_count", tl, ul)
		add("upstream_healthy", tl, ul)
	}
	for _, w := range want {
		if !series.has(w) {
			t.Errorf("no series %s right after startup", w)
		}
	}
}

// scraped is one scrape: each series' name and labels.
type scraped []struct {
	name   string
	labels map[string]string
}

var (
	seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? \S+$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads the prometheus plugin's metrics at addr.
func scrape(t *testing.T, addr string) scraped {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s scraped
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := seriesLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		labels := map[string]string{}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			labels[p[1]] = p[2]
		}
		s = append(s, struct {
			name   string
			labels map[string]string
		}{m[1], labels})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return s
}

// has reports whether the scrape has a series with want's name and at
// least want's labels, want written as name{label="value",...}.
func (s scraped) has(want string) bool {
	m := seriesLine.FindStringSubmatch(want + " 0")
	if m == nil {
		return false
	}
	for _, series := range s {
		if series.name != m[1] {
			continue
		}
		all := true
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			if v, ok := series.labels[p[1]]; !ok || v != p[2] {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// The errors stanza the migration guide suggests turns the plugin's
// SERVFAILs into one line per period instead of one per query.
func TestErrorsConsolidate(t *testing.T) {
	stanza := readmeErrorsStanza(t)
	up := startUpstream(t, faultdns.Refused)
	logs := captureLog(t)
	// The barrier zone goes to whoami, without an error.
	corefile, addr := serverBlock(t, stanza+fmt.Sprintf("\n    upstreamtier {\n        except barrier.test\n        tier site %s\n    }\n    whoami", up.Addr()))
	inst := startCoreDNS(t, corefile)
	// One TCP connection: CoreDNS serves its queries one after the other,
	// so once the barrier query is answered, the errors plugin has seen
	// every SERVFAIL before it.
	conn, err := dns.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ask := func(name string) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		if err := conn.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		r, err := conn.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	const n = 3
	for i := range n {
		if m := ask(fmt.Sprintf("www%d.example.org.", i)); m.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[m.Rcode])
		}
	}
	if m := ask("barrier.test."); m.Rcode != dns.RcodeSuccess {
		t.Fatalf("barrier: rcode %s, want NOERROR from whoami", dns.RcodeToString[m.Rcode])
	}
	// The errors plugin prints what it consolidated when it shuts down, as
	// on SIGTERM.
	inst.ShutdownCallbacks()
	line := logLine(t, logs, "errors like '^plugin/upstreamtier: '")
	if !strings.Contains(line, fmt.Sprintf("%d errors like", n)) {
		t.Errorf("consolidated line %q, want %d errors", line, n)
	}
	if strings.Contains(logs.String(), "[ERROR] plugin/errors:") {
		t.Errorf("SERVFAILs logged one by one:\n%s", logs)
	}
}

// readmeErrorsStanza returns the errors stanza of the example, in the
// README or docs/, that consolidates the plugin's errors.
func readmeErrorsStanza(t *testing.T) string {
	t.Helper()
	stanza := regexp.MustCompile(`(?m)^    errors \{\n(?:        .*\n)*?        consolidate .*\n(?:        .*\n)*?    \}$`)
	for _, f := range docFiles(t) {
		if m := stanza.FindString(f.text); m != "" {
			return m
		}
	}
	t.Fatal("neither README.md nor docs/ has an example errors stanza with consolidate")
	return ""
}
