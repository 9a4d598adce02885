package dnspool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// hangGuard bounds waits that must not depend on the network: a hang
// detector, not a timing assertion.
const hangGuard = time.Minute

func queryFor(t *testing.T, name string) []byte {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return wire
}

// answerName returns the question name of the packed answer p.
func answerName(t *testing.T, p []byte) string {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(p); err != nil || len(m.Question) != 1 {
		t.Fatalf("answer %v: %v", m, err)
	}
	return m.Question[0].Name
}

// scripted is a UDP upstream on 127.0.0.1 whose test reads each query
// and decides what to send back.
type scripted struct {
	pc *net.UDPConn
}

func startScripted(t *testing.T) *scripted {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return &scripted{pc: pc}
}

func (s *scripted) addr() string { return s.pc.LocalAddr().String() }

// next reads the next query and where it came from.
func (s *scripted) next(t *testing.T) (*dns.Msg, *net.UDPAddr) {
	t.Helper()
	s.pc.SetReadDeadline(time.Now().Add(hangGuard))
	buf := make([]byte, dns.MaxMsgSize)
	n, from, err := s.pc.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	q := new(dns.Msg)
	if err := q.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return q, from
}

// answer sends the reply to q, with the A record ip, from pc to addr.
func answer(t *testing.T, pc *net.UDPConn, addr *net.UDPAddr, q *dns.Msg, ip net.IP) {
	t.Helper()
	r := new(dns.Msg)
	r.SetReply(q)
	r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: ip}}
	b, err := r.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteToUDP(b, addr); err != nil {
		t.Fatal(err)
	}
}

// Many queries in flight at once on the sockets of one Mux each get the
// answer to their own question. 40 at once: a burst of hundreds overflows
// the receive buffer of the upstream's one socket on loopback, and the
// kernel drops datagrams (RcvbufErrors in /proc/net/snmp).
func TestMuxConcurrent(t *testing.T) {
	up := startUpstream(t)
	m := NewMux(up.Addr(), Options{})
	defer m.Close(0)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			name := fmt.Sprintf("q%d.example.org.", i)
			wire := queryFor(t, name)
			for range 100 {
				c, err := m.Send(context.Background(), wire, 1232, time.Now().Add(hangGuard))
				if err != nil {
					errs <- err
					return
				}
				p, err := c.Await(time.Now().Add(hangGuard))
				if err == nil {
					if m := new(dns.Msg); m.Unpack(p) != nil || len(m.Question) != 1 || m.Question[0].Name != name {
						err = fmt.Errorf("query for %s got the answer %v", name, m)
					}
				}
				c.Done()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := m.Dials(); n != MuxSockets {
		t.Errorf("%d sockets dialled for 4000 queries, want %d", n, MuxSockets)
	}
	if n := m.InUse(); n != 0 {
		t.Errorf("%d calls still in use", n)
	}
}

// A query that gave up keeps its ID reserved on the socket: its late
// answer, arriving while the next query on the same socket waits, is
// dropped, and the next query gets its own answer.
func TestMuxLateAnswerSkipped(t *testing.T) {
	up := startScripted(t)
	m := NewMux(up.addr(), Options{MaxIdle: 1}) // one socket
	defer m.Close(0)
	ctx := context.Background()

	first, err := m.Send(ctx, queryFor(t, "first.example.org"), 1232, time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	q1, from := up.next(t)
	if _, err := first.Await(time.Now()); !isTimeout(err) {
		t.Fatalf("want a timeout, got %v", err)
	}
	s, id := first.s, first.id
	first.Done()
	s.mu.Lock()
	kept := s.waiting[id] == reserved
	s.mu.Unlock()
	if !kept {
		t.Fatalf("the ID %d of the query that gave up is not reserved", id)
	}

	second, err := m.Send(ctx, queryFor(t, "second.example.org"), 1232, time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	q2, from2 := up.next(t)
	if from2.String() != from.String() {
		t.Fatalf("second query from %s, want the same socket %s", from2, from)
	}
	if q2.Id == q1.Id {
		t.Fatalf("second query reuses the reserved ID %d", q1.Id)
	}
	// The late answer first, then the second query's own answer.
	answer(t, up.pc, from, q1, net.IPv4(192, 0, 2, 1))
	answer(t, up.pc, from, q2, net.IPv4(192, 0, 2, 2))
	p, err := second.Await(time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	if got := answerName(t, p); got != "second.example.org." {
		t.Fatalf("the second query got the answer for %s", got)
	}
	second.Done()
}

// An answer from another port than the upstream's never counts, even
// with the right ID and question: the sockets are connected.
func TestMuxSpoofFromOtherPortIgnored(t *testing.T) {
	up := startScripted(t)
	m := NewMux(up.addr(), Options{})
	defer m.Close(0)
	c, err := m.Send(context.Background(), queryFor(t, "www.example.org"), 1232, time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	q, from := up.next(t)
	spoofer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer spoofer.Close()
	answer(t, spoofer, from, q, net.IPv4(203, 0, 113, 66))
	answer(t, up.pc, from, q, net.IPv4(192, 0, 2, 1))
	p, err := c.Await(time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	c.Done()
	if got := answerIP(t, p); !got.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Fatalf("took the answer %s from another port", got)
	}
}

// A socket takes MuxRotate queries, then a fresh one with another source
// port takes over, and the old one is closed once its last query is done.
func TestMuxRotation(t *testing.T) {
	up := startUpstream(t)
	m := NewMux(up.Addr(), Options{MaxIdle: 1})
	defer m.Close(0)
	wire := queryFor(t, "www.example.org")
	ports := map[string]bool{}
	for range MuxRotate + 1 {
		c, err := m.Send(context.Background(), wire, 1232, time.Now().Add(hangGuard))
		if err != nil {
			t.Fatal(err)
		}
		ports[c.s.conn.LocalAddr().String()] = true
		if _, err := c.Await(time.Now().Add(hangGuard)); err != nil {
			t.Fatal(err)
		}
		c.Done()
	}
	if n := m.Dials(); n != 2 {
		t.Fatalf("%d sockets dialled for %d queries, want 2", n, MuxRotate+1)
	}
	if len(ports) != 2 {
		t.Fatalf("queries left from %v, want two source ports", ports)
	}
	m.mu.Lock()
	open := len(m.open)
	m.mu.Unlock()
	if open != 1 {
		t.Fatalf("%d sockets open, want 1: the retired one was not closed", open)
	}
}

// A socket that sat idle for Expire, or was used for MaxAge, takes no new
// query.
func TestMuxRotationByTime(t *testing.T) {
	up := startUpstream(t)
	m := NewMux(up.Addr(), Options{MaxIdle: 1, Expire: time.Hour, MaxAge: time.Hour})
	defer m.Close(0)
	wire := queryFor(t, "www.example.org")
	exchange := func() {
		t.Helper()
		c, err := m.Send(context.Background(), wire, 1232, time.Now().Add(hangGuard))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Await(time.Now().Add(hangGuard)); err != nil {
			t.Fatal(err)
		}
		c.Done()
	}
	exchange()
	exchange()
	if n := m.Dials(); n != 1 {
		t.Fatalf("%d dials, want 1", n)
	}
	m.mu.Lock()
	m.socks[0].created = m.socks[0].created.Add(-2 * time.Hour) // as if dialled long ago
	m.mu.Unlock()
	exchange()
	if n := m.Dials(); n != 2 {
		t.Fatalf("%d dials after max_age, want 2", n)
	}
	m.mu.Lock()
	m.socks[0].used = m.socks[0].used.Add(-2 * time.Hour) // as if idle long
	m.mu.Unlock()
	exchange()
	if n := m.Dials(); n != 3 {
		t.Fatalf("%d dials after expire, want 3", n)
	}
}

// Close ends the waits on a silent upstream once the grace is over, and
// refuses new queries at once.
func TestMuxCloseEndsWaits(t *testing.T) {
	up := startUpstream(t)
	up.SetMode(faultdns.Blackhole)
	m := NewMux(up.Addr(), Options{})
	wire := queryFor(t, "www.example.org")
	calls := make([]*Call, 0, 6)
	for range 6 {
		c, err := m.Send(context.Background(), wire, 1232, time.Now().Add(hangGuard))
		if err != nil {
			t.Fatal(err)
		}
		calls = append(calls, c)
	}
	waitQueries(t, up, 6)
	m.Close(0)
	if _, err := m.Send(context.Background(), wire, 1232, time.Now().Add(hangGuard)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close: %v, want ErrClosed", err)
	}
	for _, c := range calls {
		_, err := c.Await(time.Now().Add(hangGuard))
		if err == nil || isTimeout(err) {
			t.Fatalf("a wait after Close ended with %v, want the closed socket's error", err)
		}
		c.Done()
	}
	if n := m.InUse(); n != 0 {
		t.Errorf("%d calls still in use", n)
	}
}

// AwaitCtx ends when its context is done; the call's ID stays reserved.
func TestMuxAwaitCtx(t *testing.T) {
	up := startUpstream(t)
	up.SetMode(faultdns.Blackhole)
	m := NewMux(up.Addr(), Options{})
	defer m.Close(0)
	c, err := m.Send(context.Background(), queryFor(t, "www.example.org"), 1232, time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitQueries(t, up, 1)
		cancel()
	}()
	if _, err := c.AwaitCtx(ctx, time.Now().Add(hangGuard)); !errors.Is(err, context.Canceled) {
		t.Fatalf("AwaitCtx: %v, want context.Canceled", err)
	}
	s, id := c.s, c.id
	c.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting[id] != reserved {
		t.Fatalf("the ID of the abandoned call is not reserved")
	}
}

// A closed port (ICMP port unreachable) fails the query waiting at once,
// rather than at its deadline, and the next query goes on a fresh socket.
func TestMuxRefused(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	m := NewMux(addr, Options{MaxIdle: 1})
	defer m.Close(0)
	wire := queryFor(t, "www.example.org")
	for range 2 {
		c, err := m.Send(context.Background(), wire, 1232, time.Now().Add(hangGuard))
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatal(err)
			}
			continue
		}
		if _, err := c.Await(time.Now().Add(hangGuard)); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("Await on a closed port: %v, want ECONNREFUSED", err)
		}
		c.Done()
	}
	if n := m.Dials(); n != 2 {
		t.Errorf("%d dials, want 2: a refused socket is replaced", n)
	}
}

// An answer longer than the client's buffer size is cut to it, as the
// kernel cuts a datagram read into a smaller buffer.
func TestMuxCutToSize(t *testing.T) {
	up := startUpstream(t)
	m := NewMux(up.Addr(), Options{})
	defer m.Close(0)
	q := new(dns.Msg)
	q.SetQuestion("big.example.org.", dns.TypeTXT)
	wire, _ := q.Pack()
	c, err := m.Send(context.Background(), wire, 512, time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Await(time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	c.Done()
	if len(p) != 512 {
		t.Fatalf("answer of %d bytes, want it cut to 512", len(p))
	}
}

// Datagrams from the upstream's address with the waiting query's ID that
// are not its answer (another name, another type, a query, garbage) are
// dropped and counted, and the query takes its own answer after them;
// its name in other letter case is its answer.
func TestMuxForgedDatagramsDropped(t *testing.T) {
	up := startScripted(t)
	m := NewMux(up.addr(), Options{MaxIdle: 1})
	defer m.Close(0)
	c, err := m.Send(context.Background(), queryFor(t, "www.example.org"), 1232, time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	q, from := up.next(t)

	forged := []func(r *dns.Msg){
		func(r *dns.Msg) { r.Question[0].Name = "evil.example.org." },
		func(r *dns.Msg) { r.Question[0].Qtype = dns.TypeAAAA },
		func(r *dns.Msg) { r.Question[0].Qclass = dns.ClassCHAOS },
		func(r *dns.Msg) { r.Response = false },
		func(r *dns.Msg) { r.Question = nil },
	}
	for _, forge := range forged {
		r := new(dns.Msg)
		r.SetReply(q)
		forge(r)
		b, err := r.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.pc.WriteToUDP(b, from); err != nil {
			t.Fatal(err)
		}
	}
	garbage := []byte{byte(q.Id >> 8), byte(q.Id), 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0x80}
	if _, err := up.pc.WriteToUDP(garbage, from); err != nil {
		t.Fatal(err)
	}
	q.Question[0].Name = "WWW.Example.ORG."
	answer(t, up.pc, from, q, net.IPv4(192, 0, 2, 1))

	p, err := c.Await(time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	c.Done()
	if got := answerIP(t, p); !got.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Fatalf("took %s, want the genuine answer", got)
	}
	if n := m.Unmatched(); n != int64(len(forged)+1) {
		t.Errorf("%d datagrams counted unmatched, want %d", n, len(forged)+1)
	}
}

// An error without a question section, as Unbound's access control
// refuses, is the query's answer: the plugin judges it by its rcode.
func TestMuxQuestionlessErrorTaken(t *testing.T) {
	up := startScripted(t)
	m := NewMux(up.addr(), Options{})
	defer m.Close(0)
	c, err := m.Send(context.Background(), queryFor(t, "www.example.org"), 1232, time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	q, from := up.next(t)
	r := new(dns.Msg)
	r.SetRcode(q, dns.RcodeRefused)
	r.Question = nil
	b, err := r.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.pc.WriteToUDP(b, from); err != nil {
		t.Fatal(err)
	}
	p, err := c.Await(time.Now().Add(hangGuard))
	if err != nil {
		t.Fatal(err)
	}
	c.Done()
	got := new(dns.Msg)
	if err := got.Unpack(p); err != nil || got.Rcode != dns.RcodeRefused || len(got.Question) != 0 {
		t.Fatalf("got %v (%v), want the question-less REFUSED", got, err)
	}
}
