package faultdns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// safety bounds every wait so a bug fails the test instead of hanging it; nothing asserts on it.
const safety = 10 * time.Second

var nets = []string{"udp", "tcp"}

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func setMode(t *testing.T, s *Server, m Mode) {
	t.Helper()
	if err := s.SetMode(m); err != nil {
		t.Fatal(err)
	}
}

func query(name string, qtype uint16) *dns.Msg {
	return new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
}

// exchange sends q with a plain miekg client and expects a reply.
func exchange(t *testing.T, network, addr string, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: safety}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatalf("%s exchange: %v", network, err)
	}
	return r
}

// dial opens a miekg connection for tests that must see replies the Client would reject.
func dial(t *testing.T, network, addr string) *dns.Conn {
	t.Helper()
	co, err := dns.DialTimeout(network, addr, safety)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { co.Close() })
	co.SetDeadline(time.Now().Add(safety))
	return co
}

func waitQueries(t *testing.T, s *Server, n int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	if err := s.WaitQueries(ctx, n); err != nil {
		t.Fatalf("waiting for %d queries (have %d): %v", n, s.Queries(), err)
	}
}

func checkA(t *testing.T, s *Server, r *dns.Msg, name string) {
	t.Helper()
	if r.Rcode != dns.RcodeSuccess || !r.Response || !r.Authoritative || !r.RecursionAvailable || r.Truncated {
		t.Fatalf("bad header: %v", r)
	}
	if len(r.Question) != 1 || r.Question[0].Name != name {
		t.Fatalf("question = %v, want %s", r.Question, name)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("answer = %v, want one A", r.Answer)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || !a.A.Equal(s.AnswerIP()) || a.Hdr.Name != name || a.Hdr.Ttl != 30 {
		t.Fatalf("answer = %v, want %s 30 IN A %v", r.Answer[0], name, s.AnswerIP())
	}
}

func TestModeNames(t *testing.T) {
	for m := OK; m <= RefusedBare; m++ {
		got, err := ParseMode(strings.ToUpper(m.String()))
		if err != nil || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m.String(), got, err)
		}
	}
	if _, err := ParseMode("flaky"); err == nil {
		t.Error("ParseMode accepted an unknown name")
	}
	if s := Mode(42).String(); s != "Mode(42)" {
		t.Errorf("Mode(42).String() = %q", s)
	}
}

func TestStart(t *testing.T) {
	a, b := start(t), start(t)
	if a.AnswerIP().Equal(b.AnswerIP()) {
		t.Errorf("two servers share answer IP %v", a.AnswerIP())
	}
	for _, ip := range []net.IP{a.AnswerIP(), b.AnswerIP()} {
		if ip4 := ip.To4(); ip4 == nil || !net.IPv4(192, 0, 2, 0).Mask(net.CIDRMask(24, 32)).Equal(ip4.Mask(net.CIDRMask(24, 32))) || ip4[3] == 0 || ip4[3] == 255 {
			t.Errorf("answer IP %v outside 192.0.2.1-254", ip)
		}
	}
	if !strings.HasPrefix(a.Addr(), "127.0.0.1:") || a.Addr() == b.Addr() {
		t.Errorf("addrs %s, %s", a.Addr(), b.Addr())
	}

	c, err := StartWithIP("127.0.0.1:0", net.IPv4(192, 0, 2, 200))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkA(t, c, exchange(t, "udp", c.Addr(), query("x.test", dns.TypeA)), "x.test.")
	if !c.AnswerIP().Equal(net.IPv4(192, 0, 2, 200)) {
		t.Errorf("AnswerIP = %v", c.AnswerIP())
	}

	if _, err := Start("0.0.0.0:0"); err == nil {
		t.Error("Start listened beyond loopback")
	}
}

func TestNextIPWraps(t *testing.T) {
	seen := map[byte]bool{}
	for range 254 {
		seen[nextIP()[3]] = true
	}
	if len(seen) != 254 || seen[0] || seen[255] {
		t.Errorf("254 consecutive IPs cover %d last octets (0: %v, 255: %v)", len(seen), seen[0], seen[255])
	}
}

func TestStartTCPPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if s, err := Start(l.Addr().String()); err == nil {
		s.Close()
		t.Fatal("Start succeeded on a port whose TCP side is taken")
	}
	// The UDP socket bound before the failure must have been released.
	pc, err := net.ListenPacket("udp", l.Addr().String())
	if err != nil {
		t.Fatalf("UDP port leaked: %v", err)
	}
	pc.Close()
}

func TestOK(t *testing.T) {
	s := start(t)
	for _, network := range nets {
		t.Run(network, func(t *testing.T) {
			checkA(t, s, exchange(t, network, s.Addr(), query("www.Example.org", dns.TypeA)), "www.Example.org.")

			r := exchange(t, network, s.Addr(), query("example.org", dns.TypeTXT))
			if len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != s.Addr() {
				t.Errorf("TXT answer = %v, want %s", r.Answer, s.Addr())
			}

			r = exchange(t, network, s.Addr(), query("example.org", dns.TypeAAAA))
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !r.Authoritative {
				t.Errorf("AAAA reply is not NODATA: %v", r)
			}
			if r.IsEdns0() != nil {
				t.Error("OPT in reply to a query without EDNS0")
			}

			q := query("example.org", dns.TypeA)
			q.SetEdns0(1232, true)
			r = exchange(t, network, s.Addr(), q)
			checkA(t, s, r, "example.org.")
			if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != 1232 || !opt.Do() {
				t.Errorf("OPT = %v, want size 1232 with DO", opt)
			}
		})
	}
}

func TestBigTXT(t *testing.T) {
	s := start(t)
	q := query("BIG.example.org", dns.TypeTXT)
	r := exchange(t, "tcp", s.Addr(), q)
	if r.Len() <= 512 || len(r.Answer) < 2 || r.Truncated {
		t.Fatalf("big answer is %d bytes in %d records", r.Len(), len(r.Answer))
	}
	q.SetEdns0(4096, false)
	if r := exchange(t, "udp", s.Addr(), q); r.Len() <= 512 || r.Truncated {
		t.Errorf("big UDP answer is %d bytes, TC=%v", r.Len(), r.Truncated)
	}

	// Without EDNS0 the server still sends it all; cutting it down is the client's business.
	co, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	co.SetDeadline(time.Now().Add(safety))
	wire, _ := query("big.example.org", dns.TypeTXT).Pack()
	if _, err := co.Write(wire); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := co.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n <= 512 {
		t.Errorf("datagram is %d bytes, want > 512", n)
	}
}

func TestRcodes(t *testing.T) {
	s := start(t)
	for mode, rcode := range map[Mode]int{ServFail: dns.RcodeServerFailure, Refused: dns.RcodeRefused, NXDomain: dns.RcodeNameError} {
		setMode(t, s, mode)
		for _, network := range nets {
			q := query("example.org", dns.TypeA)
			q.SetEdns0(1400, false)
			r := exchange(t, network, s.Addr(), q)
			if r.Rcode != rcode || len(r.Answer) != 0 || r.Id != q.Id {
				t.Errorf("%v/%s: reply %v", mode, network, r)
			}
			if len(r.Question) != 1 || r.Question[0] != q.Question[0] {
				t.Errorf("%v/%s: question %v not copied", mode, network, r.Question)
			}
			if r.IsEdns0() == nil {
				t.Errorf("%v/%s: OPT not echoed", mode, network)
			}
		}
	}
}

func TestTruncate(t *testing.T) {
	s := start(t)
	setMode(t, s, Truncate)
	r := exchange(t, "udp", s.Addr(), query("example.org", dns.TypeA))
	if !r.Truncated || len(r.Answer) != 0 || r.Rcode != dns.RcodeSuccess {
		t.Errorf("UDP reply %v, want TC and no records", r)
	}
	checkA(t, s, exchange(t, "tcp", s.Addr(), query("example.org", dns.TypeA)), "example.org.")
}

func TestWrongID(t *testing.T) {
	s := start(t)
	setMode(t, s, WrongID)
	for _, network := range nets {
		co := dial(t, network, s.Addr())
		q := query("example.org", dns.TypeA)
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if r.Id != q.Id+1 {
			t.Errorf("%s: reply ID %d for query ID %d", network, r.Id, q.Id)
		}
		r.Id = q.Id
		checkA(t, s, r, "example.org.")
	}
	// The TCP client checks IDs itself.
	c := &dns.Client{Net: "tcp", Timeout: safety}
	if _, _, err := c.Exchange(query("example.org", dns.TypeA), s.Addr()); !errors.Is(err, dns.ErrId) {
		t.Errorf("TCP exchange error %v, want %v", err, dns.ErrId)
	}
}

func TestWrongQuestion(t *testing.T) {
	s := start(t)
	setMode(t, s, WrongQuestion)
	for _, network := range nets {
		q := query("example.org", dns.TypeA)
		r := exchange(t, network, s.Addr(), q)
		if r.Id != q.Id {
			t.Errorf("%s: ID %d, want %d", network, r.Id, q.Id)
		}
		checkA(t, s, r, SpoofedName)
	}
	if s.QueriesFor("example.org") != 2 || s.QueriesFor(SpoofedName) != 0 {
		t.Errorf("counted %d for the asked name, %d for the spoofed one", s.QueriesFor("example.org"), s.QueriesFor(SpoofedName))
	}
}

func TestGarbage(t *testing.T) {
	s := start(t)
	setMode(t, s, Garbage)
	q := query("example.org", dns.TypeA)
	wire, _ := q.Pack()

	udp, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udp.SetDeadline(time.Now().Add(safety))
	udp.Write(wire)
	buf := make([]byte, 65535)
	n, err := udp.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	checkGarbage(t, q.Id, buf[:n])

	co := dial(t, "tcp", s.Addr())
	co.Write(wire) // dns.Conn frames it
	n, err = co.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	checkGarbage(t, q.Id, buf[:n])

	for _, network := range nets {
		c := &dns.Client{Net: network, Timeout: safety}
		if _, _, err := c.Exchange(query("example.org", dns.TypeA), s.Addr()); err == nil {
			t.Errorf("%s client accepted garbage", network)
		}
	}
}

func checkGarbage(t *testing.T, id uint16, b []byte) {
	t.Helper()
	if len(b) < 2 || b[0] != byte(id>>8) || b[1] != byte(id) {
		t.Errorf("garbage %x does not start with ID %04x", b, id)
	}
	if err := new(dns.Msg).Unpack(b); err == nil {
		t.Errorf("garbage %x unpacks", b)
	}
}

func TestBlackhole(t *testing.T) {
	s := start(t)
	setMode(t, s, Blackhole)

	c := &dns.Client{Net: "udp", Timeout: 50 * time.Millisecond}
	if r, _, err := c.Exchange(query("udp.example.org", dns.TypeA), s.Addr()); err == nil {
		t.Fatalf("blackhole answered %v", r)
	}

	// A TCP query goes unanswered, yet the connection stays open for the next one.
	co := dial(t, "tcp", s.Addr())
	if err := co.WriteMsg(query("tcp.example.org", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	waitQueries(t, s, 2)
	setMode(t, s, OK)
	q := query("again.example.org", dns.TypeA)
	if err := co.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	r, err := co.ReadMsg()
	if err != nil {
		t.Fatalf("blackholed connection was dropped: %v", err)
	}
	if r.Id != q.Id {
		t.Fatalf("reply ID %d, want %d (the blackholed query was answered)", r.Id, q.Id)
	}
	checkA(t, s, r, "again.example.org.")
	if s.Queries() != 3 {
		t.Errorf("Queries = %d, want 3", s.Queries())
	}
}

func TestSlow(t *testing.T) {
	s := start(t)
	setMode(t, s, Slow)
	const delay = 20 * time.Millisecond
	s.SetDelay(delay)
	for _, network := range nets {
		begin := time.Now()
		checkA(t, s, exchange(t, network, s.Addr(), query("example.org", dns.TypeA)), "example.org.")
		if d := time.Since(begin); d < delay {
			t.Errorf("%s answered after %v, before the %v delay", network, d, delay)
		}
	}
}

// TestSlowIndependent shows a query is not held behind an earlier, slower one.
func TestSlowIndependent(t *testing.T) {
	for _, network := range nets {
		t.Run(network, func(t *testing.T) {
			s := start(t)
			setMode(t, s, Slow)
			s.SetDelay(time.Hour)
			co := dial(t, network, s.Addr()) // one socket: on TCP the queries are pipelined
			first := query("first.example.org", dns.TypeA)
			if err := co.WriteMsg(first); err != nil {
				t.Fatal(err)
			}
			waitQueries(t, s, 1)
			s.SetDelay(0)
			second := query("second.example.org", dns.TypeA)
			if err := co.WriteMsg(second); err != nil {
				t.Fatal(err)
			}
			r, err := co.ReadMsg()
			if err != nil {
				t.Fatal(err)
			}
			if r.Id != second.Id {
				t.Fatalf("got reply %d, want the second query's %d", r.Id, second.Id)
			}
			checkA(t, s, r, "second.example.org.")
			// Close must cut the hour-long wait short.
			s.Close()
		})
	}
}

func TestClosed(t *testing.T) {
	s := start(t)
	addr := s.Addr()

	// A TCP connection open before the switch is dropped by it.
	co := dial(t, "tcp", addr)
	co.WriteMsg(query("before.example.org", dns.TypeA))
	if _, err := co.ReadMsg(); err != nil {
		t.Fatal(err)
	}

	setMode(t, s, Closed)
	if _, err := co.ReadMsg(); err == nil {
		t.Error("TCP connection survived Closed")
	}
	if _, err := net.Dial("tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("TCP dial: %v, want connection refused", err)
	}
	// A connected UDP socket learns of the ICMP port unreachable.
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	udp.SetDeadline(time.Now().Add(safety))
	wire, _ := query("closed.example.org", dns.TypeA).Pack()
	udp.Write(wire)
	if _, err := udp.Read(make([]byte, 512)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("UDP read: %v, want connection refused", err)
	}
	if s.Queries() != 1 || s.QueriesFor("closed.example.org") != 0 {
		t.Errorf("Closed server counted queries: %d", s.Queries())
	}
	if s.Mode() != Closed {
		t.Errorf("Mode = %v", s.Mode())
	}
}

func TestClosedRebind(t *testing.T) {
	s := start(t)
	addr := s.Addr()
	for i := range 5 {
		setMode(t, s, Closed)
		setMode(t, s, Closed) // idempotent
		if _, err := net.Dial("tcp", addr); err == nil {
			t.Fatalf("round %d: TCP port still open", i)
		}
		next := OK
		if i%2 == 1 {
			next = ServFail // any mode but Closed re-binds
		}
		setMode(t, s, next)
		if s.Addr() != addr {
			t.Fatalf("Addr changed from %s to %s", addr, s.Addr())
		}
		for _, network := range nets {
			r := exchange(t, network, addr, query("example.org", dns.TypeA))
			if next == OK {
				checkA(t, s, r, "example.org.")
			} else if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("round %d %s: rcode %s", i, network, dns.RcodeToString[r.Rcode])
			}
		}
	}
	if s.Queries() != 10 {
		t.Errorf("Queries = %d, want 10", s.Queries())
	}
}

func TestRebindFails(t *testing.T) {
	s := start(t)
	setMode(t, s, Closed)
	squatter, err := net.ListenPacket("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMode(OK); err == nil {
		t.Fatal("re-bind onto a taken port succeeded")
	}
	if s.Mode() != Closed {
		t.Errorf("Mode = %v after failed re-bind, want closed", s.Mode())
	}
	squatter.Close()
	setMode(t, s, OK)
	checkA(t, s, exchange(t, "tcp", s.Addr(), query("example.org", dns.TypeA)), "example.org.")
}

func TestQueriesFor(t *testing.T) {
	s := start(t)
	exchange(t, "udp", s.Addr(), query("Mixed.Example.ORG", dns.TypeA))
	exchange(t, "tcp", s.Addr(), query("mixed.example.org", dns.TypeAAAA))
	exchange(t, "udp", s.Addr(), query("other.example.org", dns.TypeA))
	for _, name := range []string{"mixed.example.org", "MIXED.example.org."} {
		if n := s.QueriesFor(name); n != 2 {
			t.Errorf("QueriesFor(%q) = %d, want 2", name, n)
		}
	}
	if n := s.QueriesFor("nowhere.example.org"); n != 0 {
		t.Errorf("QueriesFor(unasked) = %d", n)
	}
	if s.Queries() != 3 {
		t.Errorf("Queries = %d, want 3", s.Queries())
	}
}

func TestWaitQueries(t *testing.T) {
	s := start(t)
	setMode(t, s, Blackhole) // nobody gets an answer, so only the server's count can say when it is done

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), safety)
		defer cancel()
		done <- s.WaitQueries(ctx, 3)
	}()
	co := dial(t, "udp", s.Addr())
	for range 3 {
		if err := co.WriteMsg(query("example.org", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.Queries() < 3 {
		t.Errorf("WaitQueries returned with only %d queries", s.Queries())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitQueries(ctx, 100); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled WaitQueries = %v", err)
	}
	if err := s.WaitQueries(ctx, 3); err != nil {
		t.Errorf("WaitQueries for a count already reached = %v", err)
	}

	go func() { done <- s.WaitQueries(context.Background(), 100) }()
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("WaitQueries across Close = %v, want ErrClosed", err)
	}
}

// TestSwitchUnderLoad changes modes while clients hammer the server, for the race detector.
func TestSwitchUnderLoad(t *testing.T) {
	s := start(t)
	s.SetDelay(time.Millisecond)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			c := &dns.Client{Net: nets[i%2], Timeout: 100 * time.Millisecond}
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.Exchange(query("load.example.org", dns.TypeA), s.Addr()) // any outcome will do
			}
		})
	}
	for range 3 {
		for m := OK; m <= RefusedBare; m++ {
			setMode(t, s, m)
			ctx, cancel := context.WithTimeout(context.Background(), safety)
			if m != Closed {
				s.WaitQueries(ctx, s.Queries()+1) // let some traffic meet this mode
			}
			cancel()
		}
	}
	setMode(t, s, OK)
	close(stop)
	wg.Wait()
	checkA(t, s, exchange(t, "udp", s.Addr(), query("after.example.org", dns.TypeA)), "after.example.org.")
	if err := s.SetMode(Mode(99)); err == nil {
		t.Error("SetMode accepted an unknown mode")
	}
}

// serverGoroutines counts goroutines running a Server method.
func serverGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "faultdns.(*Server).")
		}
		buf = make([]byte, 2*len(buf))
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	if n := serverGoroutines(); n != 0 {
		t.Fatalf("%d server goroutine frames before the test; an earlier test leaked", n)
	}
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Leave work of every kind in flight: held Slow replies on both transports, an idle TCP connection.
	setMode(t, s, Slow)
	s.SetDelay(time.Hour)
	for _, network := range nets {
		co := dial(t, network, s.Addr())
		co.WriteMsg(query("held.example.org", dns.TypeA))
	}
	dial(t, "tcp", s.Addr())
	waitQueries(t, s, 2)
	if serverGoroutines() == 0 {
		t.Fatal("stack dump shows no server goroutines; the check below would prove nothing")
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := serverGoroutines(); n != 0 {
		t.Errorf("%d server goroutine frames after Close", n)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := s.SetMode(OK); !errors.Is(err, ErrClosed) {
		t.Errorf("SetMode after Close = %v, want ErrClosed", err)
	}
}

// Rules fail some names or types while the rest is answered, and only in mode OK.
func TestRules(t *testing.T) {
	s := start(t)
	if err := s.SetRules(
		Rule{Zone: "broken.test", Mode: ServFail},
		Rule{Qtypes: []uint16{dns.TypeAXFR, dns.TypeIXFR}, Mode: Refused},
		Rule{Zone: "slow.test", Share: 0.5, Mode: Slow, Delay: time.Millisecond},
	); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
	}{
		{"www.broken.test", dns.TypeA, dns.RcodeServerFailure},
		{"BROKEN.test", dns.TypeAAAA, dns.RcodeServerFailure},
		{"notbroken.test", dns.TypeA, dns.RcodeSuccess},
		{"example.org", dns.TypeAXFR, dns.RcodeRefused},
		{"example.org", dns.TypeIXFR, dns.RcodeRefused},
		{"example.org", dns.TypeA, dns.RcodeSuccess},
	} {
		for _, network := range nets {
			if r := exchange(t, network, s.Addr(), query(tc.name, tc.qtype)); r.Rcode != tc.rcode {
				t.Errorf("%s %s/%s: rcode %s, want %s", tc.name, dns.TypeToString[tc.qtype], network, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
		}
	}

	// A share picks names by hash: about half, and always the same ones.
	slow := Rule{Zone: "slow.test", Share: 0.5}
	n := 0
	for i := range 1000 {
		q := dns.Question{Name: fmt.Sprintf("n%d.slow.test.", i), Qtype: dns.TypeA, Qclass: dns.ClassINET}
		if slow.matches(q) {
			n++
			if !slow.matches(q) {
				t.Fatalf("%s matched once, not twice", q.Name)
			}
		}
	}
	if n < 400 || n > 600 {
		t.Errorf("share 0.5 matched %d of 1000 names", n)
	}

	// A server that is down fails every name, whatever the rules say.
	setMode(t, s, NXDomain)
	if r := exchange(t, "udp", s.Addr(), query("example.org", dns.TypeAXFR)); r.Rcode != dns.RcodeNameError {
		t.Errorf("mode NXDOMAIN with rules: rcode %s", dns.RcodeToString[r.Rcode])
	}
	if err := s.SetRules(Rule{Mode: Closed}); err == nil {
		t.Error("a Closed rule was accepted")
	}
}
