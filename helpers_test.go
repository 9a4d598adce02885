package upstreamtier

import (
	"context"
	"fmt"
	stdlog "log"
	"net"
	"os"
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
