package dnspool

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

func startUpstream(t *testing.T) *faultdns.Server {
	t.Helper()
	s, err := faultdns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitQueries(t *testing.T, s *faultdns.Server, n int64) {
	t.Helper()
	// A safety net against a hung test, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.WaitQueries(ctx, n); err != nil {
		t.Fatalf("upstream %s got %d queries, want %d: %v", s.Addr(), s.Queries(), n, err)
	}
}

func query(t *testing.T) (*dns.Msg, []byte) {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion("www.example.org.", dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return q, wire
}

// answerIP returns the address in the one A record of the packed answer p.
func answerIP(t *testing.T, p []byte) net.IP {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(p); err != nil || len(m.Answer) != 1 {
		t.Fatalf("answer %v: %v", m, err)
	}
	return m.Answer[0].(*dns.A).A
}

// max_idle_conns bounds the idle connections kept, however many were in
// use at once.
func TestMaxIdle(t *testing.T) {
	up := startUpstream(t)
	pool := New(up.Addr(), Options{MaxIdle: 1})
	defer pool.Close(0)
	sendAtOnce(t, pool, 3)
	if n := len(pool.idle); n != 1 {
		t.Fatalf("%d idle connections kept, want 1", n)
	}
}

// An idle connection is reused until expire after it was put back, and
// until max_age after it was dialled; the defaults keep it DefaultExpire
// and do not age it.
func TestFresh(t *testing.T) {
	now := time.Now()
	tests := []struct {
		desc      string
		opts      Options
		idle, age time.Duration
		fresh     bool
	}{
		{"default, just used", Options{}, time.Second, time.Hour, true},
		{"default, idle too long", Options{}, DefaultExpire, time.Hour, false},
		{"expire, within", Options{Expire: 10 * time.Second}, 9 * time.Second, time.Hour, true},
		{"expire, past", Options{Expire: 200 * time.Millisecond}, 300 * time.Millisecond, time.Second, false},
		{"max_age, within", Options{MaxAge: time.Minute}, time.Second, 59 * time.Second, true},
		{"max_age, past", Options{MaxAge: time.Minute}, time.Second, time.Minute, false},
	}
	for _, tt := range tests {
		p := New("127.0.0.1:53", tt.opts)
		c := &Conn{used: now.Add(-tt.idle), created: now.Add(-tt.age)}
		if got := p.fresh(c, now); got != tt.fresh {
			t.Errorf("%s: fresh = %t, want %t", tt.desc, got, tt.fresh)
		}
	}
}

// By default the pool keeps every connection put back, however many were
// in use at once, so a burst is served again without dials; those idle
// for expire are closed, the least recently used first.
func TestIdleKeptUntilExpired(t *testing.T) {
	up := startUpstream(t)
	pool := New(up.Addr(), Options{})
	defer pool.Close(0)
	const burst = 100
	sendAtOnce(t, pool, burst)
	sendAtOnce(t, pool, burst)
	if d, n := pool.Dials(), len(pool.idle); d != burst || n != burst {
		t.Fatalf("two bursts of %d: %d dials, %d idle; want %d and %d", burst, d, n, burst, burst)
	}

	pool.mu.Lock()
	for _, c := range pool.idle[:burst-1] { // all but the most recently used
		c.used = c.used.Add(-DefaultExpire)
	}
	pool.mu.Unlock()
	sendAtOnce(t, pool, 1)
	if n := len(pool.idle); n != 1 {
		t.Fatalf("%d idle connections after the others expired, want 1", n)
	}
}

// sendAtOnce sends n queries on the pool, each on a connection of its own,
// then awaits their answers and gives the connections back.
func sendAtOnce(t *testing.T, pool *Pool, n int) {
	t.Helper()
	_, wire := query(t)
	deadline := time.Now().Add(time.Minute)
	conns := make([]*Conn, 0, n)
	for range n {
		c, err := pool.Send(context.Background(), wire, deadline)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		_, err := c.Await(make([]byte, 4096), deadline)
		c.Done(err)
		if err != nil {
			t.Fatal(err)
		}
	}
}
