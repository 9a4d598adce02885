package upstreamtier

import (
	"context"
	"fmt"
	stdlog "log"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// The helpers every test file of the package shares: upstreams, the
// plugin, queries and their answers, health changes, the log, waiting.

// startUpstreams starts n fault-injecting upstreams on 127.0.0.1, closed
// when the test ends.
func startUpstreams(tb testing.TB, n int) []*faultdns.Server {
	tb.Helper()
	servers := make([]*faultdns.Server, n)
	for i := range servers {
		s, err := faultdns.Start("127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { s.Close() })
		servers[i] = s
	}
	return servers
}

// newPlugin parses a Corefile stanza and starts the plugin; %s verbs in the
// stanza are filled with the addresses of the servers, in order.
func newPlugin(tb testing.TB, stanza string, servers ...*faultdns.Server) *UpstreamTier {
	tb.Helper()
	addrs := make([]any, len(servers))
	for i, s := range servers {
		addrs[i] = s.Addr()
	}
	c := caddy.NewTestController("dns", fmt.Sprintf(stanza, addrs...))
	c.ServerBlockKeys = []string{"."}
	ut, err := parseUpstreamTier(c)
	if err != nil {
		tb.Fatalf("parse: %v", err)
	}
	ut.Next = test.NextHandler(dns.RcodeRefused, errNextCalled)
	if err := ut.OnStartup(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ut.OnShutdown() })
	return ut
}

var errNextCalled = fmt.Errorf("next plugin called")

// newClientQuery returns an A query with EDNS0, as dig sends.
func newClientQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	return m
}

// serve runs one query through the plugin as a client over UDP or TCP
// would, and returns what the client got.
func serve(t *testing.T, ut *UpstreamTier, q *dns.Msg, tcp bool) (*dns.Msg, error) {
	t.Helper()
	rec := dnstest.NewRecorder(&test.ResponseWriter{TCP: tcp})
	_, err := ut.ServeDNS(context.Background(), rec, q)
	return rec.Msg, err
}

// serveRcode runs one query over UDP and returns the rcode ServeDNS gave
// back and what it wrote, if anything.
func serveRcode(t *testing.T, ut *UpstreamTier, q *dns.Msg) (int, *dns.Msg) {
	t.Helper()
	rec := dnstest.NewRecorder(&test.ResponseWriter{})
	rcode, _ := ut.ServeDNS(context.Background(), rec, q)
	return rcode, rec.Msg
}

// answerIP returns the address of the single A record in m.
func answerIP(t *testing.T, m *dns.Msg) net.IP {
	t.Helper()
	if m == nil {
		t.Fatal("no answer written")
	}
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("want one A record, got rcode %s and %d records:\n%s", dns.RcodeToString[m.Rcode], len(m.Answer), m)
	}
	a, ok := m.Answer[0].(*dns.A)
	if !ok {
		t.Fatalf("want an A record, got %s", m.Answer[0])
	}
	return a.A
}

// expectFrom asserts m is a valid answer to q from server s.
func expectFrom(t *testing.T, q, m *dns.Msg, s *faultdns.Server) {
	t.Helper()
	if got := answerIP(t, m); !got.Equal(s.AnswerIP()) {
		t.Fatalf("answer %s, want %s from upstream %s", got, s.AnswerIP(), s.Addr())
	}
	if m.Id != q.Id || !strings.EqualFold(m.Question[0].Name, q.Question[0].Name) || m.Question[0].Qtype != q.Question[0].Qtype {
		t.Fatalf("answer does not match the query:\nquery:\n%s\nanswer:\n%s", q, m)
	}
}

// ede returns the Extended DNS Error of m, or nil.
func ede(m *dns.Msg) *dns.EDNS0_EDE {
	opt := m.IsEdns0()
	if opt == nil {
		return nil
	}
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_EDE); ok {
			return e
		}
	}
	return nil
}

// waitQueries waits until s has received n queries in all.
func waitQueries(t *testing.T, s *faultdns.Server, n int64) {
	t.Helper()
	// A safety net against a hung test, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.WaitQueries(ctx, n); err != nil {
		t.Fatalf("upstream %s got %d queries, want %d: %v", s.Addr(), s.Queries(), n, err)
	}
}

// logTap hands every line CoreDNS logs (through the standard logger) to
// the tests listening, and on to stderr.
type logTap struct {
	mu        sync.Mutex
	listeners map[chan string]bool
}

var (
	logs     = &logTap{listeners: map[chan string]bool{}}
	logsOnce sync.Once
)

func (lt *logTap) Write(p []byte) (int, error) {
	lt.mu.Lock()
	for ch := range lt.listeners {
		ch <- string(p)
	}
	lt.mu.Unlock()
	return os.Stderr.Write(p)
}

// listenLog returns the lines logged from now until the test ends.
func listenLog(tb testing.TB) <-chan string {
	tb.Helper()
	logsOnce.Do(func() { stdlog.SetOutput(logs) })
	ch := make(chan string, 4096)
	logs.mu.Lock()
	logs.listeners[ch] = true
	logs.mu.Unlock()
	tb.Cleanup(func() {
		logs.mu.Lock()
		delete(logs.listeners, ch)
		close(ch)
		logs.mu.Unlock()
	})
	return ch
}

// change is one health transition of an upstream.
type change struct {
	addr string
	up   bool
}

// healthLine is the log line of a health change, as upstreamChanged
// writes it: the upstream's address (with its scheme for encrypted ones)
// and whether it is down or up.
var healthLine = regexp.MustCompile(`upstream (\S+) of tier \S+ is (down|up again)`)

// watch returns the health changes of ut's upstreams, read from the log
// lines the plugin writes for them, until the test ends.
func watch(tb testing.TB, ut *UpstreamTier) <-chan change {
	tb.Helper()
	lines := listenLog(tb)
	ch := make(chan change, 64)
	go func() {
		for line := range lines {
			m := healthLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			_, addr, found := strings.Cut(m[1], "://")
			if !found {
				addr = m[1]
			}
			if ownsAddr(ut, addr) {
				ch <- change{addr, m[2] == "up again"}
			}
		}
	}()
	return ch
}

// ownsAddr reports whether addr is an upstream of ut.
func ownsAddr(ut *UpstreamTier, addr string) bool {
	for _, t := range ut.tiers {
		for _, u := range t.upstreams() {
			if u.addr == addr {
				return true
			}
		}
	}
	return false
}

// expectChanges waits for the next health changes, one per server, in any
// order: attempts and probes report on their own goroutines.
func expectChanges(t *testing.T, ch <-chan change, up bool, servers ...*faultdns.Server) {
	t.Helper()
	want := map[string]bool{}
	for _, s := range servers {
		want[s.Addr()] = true
	}
	for len(want) > 0 {
		select {
		case c := <-ch:
			if !want[c.addr] || c.up != up {
				t.Fatalf("health change %+v, want one of %v up=%t", c, want, up)
			}
			delete(want, c.addr)
		case <-time.After(time.Minute): // a safety net, not a timing assertion
			t.Fatalf("no health change for %v up=%t", want, up)
		}
	}
}

// names returns a fresh query name each call: the failover memory would
// send a name that just failed straight to the next tier.
func names() func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("www%d.example.org", n)
	}
}

// expectChange waits for the next health change and checks it.
func expectChange(t *testing.T, ch <-chan change, s *faultdns.Server, up bool) {
	t.Helper()
	select {
	case c := <-ch:
		if c.addr != s.Addr() || c.up != up {
			t.Fatalf("health change %+v, want %s up=%t", c, s.Addr(), up)
		}
	case <-time.After(time.Minute): // a safety net, not a timing assertion
		t.Fatalf("no health change for %s up=%t", s.Addr(), up)
	}
}

// hangGuard bounds how long a test waits for something that must not
// wait on the network: a hang detector far below the timeouts configured,
// not a performance assertion.
const hangGuard = 20 * time.Second

// blackhole is a UDP socket on 127.0.0.1 that reads every query and never
// answers, closed when the test ends.
func blackhole(tb testing.TB) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, dns.MaxMsgSize)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc.LocalAddr().String()
}

// silentTCP is a TCP server on 127.0.0.1 that takes every connection and
// never says a word, as a hung server whose kernel still accepts: a TLS
// handshake with it waits for ever. Each connection accepted is sent on
// accepted (up to 16 unread) and closed when the test ends.
func silentTCP(tb testing.TB) (addr string, accepted <-chan net.Conn) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tb.Cleanup(func() { c.Close() })
			select {
			case conns <- c:
			default:
			}
		}
	}()
	return l.Addr().String(), conns
}

// within runs f and fails the test if it has not returned within
// hangGuard.
func within(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		f()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatalf("%s still running after %s", what, hangGuard)
	}
}

// waitFor polls cond until it holds, failing the test after hangGuard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	guard := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(guard) {
			t.Fatalf("waited %s for %s", hangGuard, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serveBackground sends n client queries to ut, each in a goroutine of
// its own; the group is done when all are answered.
func serveBackground(t *testing.T, ut *UpstreamTier, n int) *sync.WaitGroup {
	t.Helper()
	var served sync.WaitGroup
	for range n {
		served.Go(func() {
			serveRcode(t, ut, newClientQuery("www.example.org", dns.TypeA))
		})
	}
	return &served
}

func waitGroupWithin(t *testing.T, wg *sync.WaitGroup, what string) {
	t.Helper()
	within(t, what, wg.Wait)
}

// newPluginAddrs is newPlugin with addresses instead of servers.
func newPluginAddrs(t *testing.T, stanza string, addrs ...string) *UpstreamTier {
	t.Helper()
	args := make([]any, len(addrs))
	for i, a := range addrs {
		args[i] = a
	}
	return newPlugin(t, fmt.Sprintf(stanza, args...))
}

// waitProbing waits until the upstream at addr has a probe or an attempt
// on the wire, so that a shutdown finds it in flight.
func waitProbing(t *testing.T, ut *UpstreamTier, addr string) {
	t.Helper()
	waitFor(t, "an exchange in flight with "+addr, func() bool {
		for _, tr := range ut.tiers {
			for _, u := range tr.upstreams() {
				if l, ok := u.link.(interface{ InUse() int }); ok && u.addr == addr && l.InUse() > 0 {
					return true
				}
			}
		}
		return false
	})
}

// expectNoChange fails if ut has reported a health change.
func expectNoChange(t *testing.T, ch <-chan change) {
	t.Helper()
	select {
	case c := <-ch:
		t.Fatalf("unexpected health change %+v", c)
	default:
	}
}

// upstreamsOf returns every upstream of ut, tier by tier.
func upstreamsOf(ut *UpstreamTier) []*Upstream {
	var all []*Upstream
	for _, t := range ut.tiers {
		all = append(all, t.upstreams()...)
	}
	return all
}

// logWatch hands on the lines CoreDNS logs.
type logWatch struct{ lines <-chan string }

// watchLog returns the lines logged from now until the test ends.
func watchLog(t *testing.T) *logWatch {
	t.Helper()
	return &logWatch{lines: listenLog(t)}
}

// wait returns the next line logged that contains s.
func (lw *logWatch) wait(t *testing.T, s string) string {
	t.Helper()
	timeout := time.After(time.Minute) // a safety net, not a timing assertion
	for {
		select {
		case line := <-lw.lines:
			if strings.Contains(line, s) {
				return line
			}
		case <-timeout:
			t.Fatalf("nothing logged with %q", s)
		}
	}
}

// expectServfail22 asserts m is a SERVFAIL with EDE 22, No Reachable
// Authority.
func expectServfail22(t *testing.T, m *dns.Msg) {
	t.Helper()
	if m == nil {
		t.Fatal("no answer written")
	}
	if e := ede(m); m.Rcode != dns.RcodeServerFailure || e == nil || e.InfoCode != dns.ExtendedErrorCodeNoReachableAuthority {
		t.Fatalf("want SERVFAIL with EDE 22, got\n%s", m)
	}
}

// silentEncrypted is a server on 127.0.0.1 for an encrypted scheme that
// never says a word: a UDP socket that reads every datagram for quic, a
// TCP listener that takes every connection and hangs in the handshake
// for tls and https.
func silentEncrypted(tb testing.TB, scheme string) string {
	tb.Helper()
	if scheme == "quic" {
		return blackhole(tb)
	}
	addr, _ := silentTCP(tb)
	return addr
}
