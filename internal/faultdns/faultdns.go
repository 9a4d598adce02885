// Package faultdns is a real DNS server on loopback whose misbehaviour can be
// switched at runtime, so tests and benchmarks can watch a forwarder fail over.
package faultdns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Mode is what the server does with the queries it receives.
type Mode int

// The modes a Server can be switched to.
const (
	OK            Mode = iota // answer normally
	Blackhole                 // read queries, never answer; TCP connections stay open
	Closed                    // UDP and TCP ports closed, open TCP connections dropped
	Slow                      // answer normally after the SetDelay delay, each query on its own clock
	ServFail                  // answer SERVFAIL
	Refused                   // answer REFUSED
	NXDomain                  // answer NXDOMAIN
	Truncate                  // UDP: TC bit and no records; TCP: normal answer
	WrongID                   // normal answer with ID = query ID + 1
	WrongQuestion             // normal answer for SpoofedName instead of the asked name
	Garbage                   // the query's ID followed by bytes that do not unpack
	NotImp                    // answer NOTIMP, as a server that does not do the query's kind
	RefusedBare               // answer REFUSED without the question section, as Unbound's access control does
)

var modeNames = [...]string{"ok", "blackhole", "closed", "slow", "servfail", "refused", "nxdomain", "truncate", "wrongid", "wrongquestion", "garbage", "notimp", "refusedbare"}

// String returns the lower-case name of m, as accepted by ParseMode.
func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return "Mode(" + strconv.Itoa(int(m)) + ")"
	}
	return modeNames[m]
}

// ParseMode returns the Mode whose String is s, ignoring case.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if strings.EqualFold(s, n) {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("faultdns: unknown mode %q", s)
}

// SpoofedName is the question name that WrongQuestion replies carry.
const SpoofedName = "spoofed.invalid."

// ErrClosed is returned by SetMode and WaitQueries after Close.
var ErrClosed = errors.New("faultdns: server closed")

const (
	ttl    = 30
	bigTXT = 16 // TXT records in a "big." answer: about 1.4 KB, well over 512 bytes
)

var ipSeq atomic.Uint32

// nextIP hands out 192.0.2.1 ... 192.0.2.254, then starts over.
func nextIP() net.IP {
	n := ipSeq.Add(1) - 1
	return net.IPv4(192, 0, 2, byte(n%254+1)).To4()
}

// Server is one fault-injecting upstream listening on UDP and TCP on the same loopback port.
type Server struct {
	addr string
	ip   net.IP
	done chan struct{}  // closed by Close to cut Slow delays short
	wg   sync.WaitGroup // every goroutine the server started

	mu      sync.Mutex
	mode    Mode
	delay   time.Duration
	udp     net.PacketConn // nil while Closed
	tcp     net.Listener   // nil while Closed
	conns   map[net.Conn]struct{}
	queries int64
	perName map[string]int64
	rules   []Rule
	waiters chan struct{} // closed on the next query; nil while nobody waits
	closed  bool
}

// Start starts a server on addr (e.g. "127.0.0.1:0") with the next answer IP from 192.0.2.1-254.
func Start(addr string) (*Server, error) { return StartWithIP(addr, nextIP()) }

// StartWithIP starts a server on the loopback addr that puts ip in its A answers.
func StartWithIP(addr string, ip net.IP) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if h := net.ParseIP(host); h == nil || !h.IsLoopback() {
		return nil, fmt.Errorf("faultdns: %q is not a loopback address", addr)
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("faultdns: answer IP %v is not IPv4", ip)
	}
	s := &Server{ip: ip.To4(), done: make(chan struct{}), conns: map[net.Conn]struct{}{}, perName: map[string]int64{}}
	// The kernel picks a port free for UDP only; if TCP holds it, another pick will do.
	tries := 1
	if port == "0" {
		tries = 5
	}
	for range tries {
		var udp net.PacketConn
		var tcp net.Listener
		if udp, tcp, err = bind(addr); err == nil {
			s.addr = udp.LocalAddr().String()
			s.mu.Lock()
			s.serve(udp, tcp)
			s.mu.Unlock()
			return s, nil
		}
	}
	return nil, err
}

// bind listens on UDP at addr and then on TCP on the same port.
func bind(addr string) (net.PacketConn, net.Listener, error) {
	udp, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, nil, err
	}
	tcp, err := net.Listen("tcp", udp.LocalAddr().String())
	if err != nil {
		udp.Close()
		return nil, nil, err
	}
	return udp, tcp, nil
}

// serve installs the listeners and starts reading from them; s.mu must be held.
func (s *Server) serve(udp net.PacketConn, tcp net.Listener) {
	s.udp, s.tcp = udp, tcp
	s.wg.Go(func() { s.serveUDP(udp) })
	s.wg.Go(func() { s.serveTCP(tcp) })
}

// unbind closes the listeners and every TCP connection; s.mu must be held.
func (s *Server) unbind() {
	if s.udp == nil {
		return
	}
	// Close returns only once the sockets are gone, so the port is refused from here on.
	s.udp.Close()
	s.tcp.Close()
	s.udp, s.tcp = nil, nil
	for c := range s.conns {
		c.Close()
	}
	clear(s.conns)
}

// Addr returns the "host:port" the server listens on, the same in every mode.
func (s *Server) Addr() string { return s.addr }

// AnswerIP returns the IPv4 address this server puts in A answers.
func (s *Server) AnswerIP() net.IP { return slices.Clone(s.ip) }

// SetMode switches the server to m; it fails if m is unknown, the server is closed, or the port cannot be re-bound.
func (s *Server) SetMode(m Mode) error {
	if m < OK || m > RefusedBare {
		return fmt.Errorf("faultdns: unknown mode %v", m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	switch {
	case m == Closed:
		s.unbind()
	case s.mode == Closed:
		udp, tcp, err := bind(s.addr)
		if err != nil {
			return fmt.Errorf("faultdns: re-binding %s: %w", s.addr, err)
		}
		s.serve(udp, tcp)
	}
	s.mode = m
	return nil
}

// Rule makes a server in mode OK serve some queries in another mode, as a
// real resolver fails per name (a lame or DNSSEC-bogus zone) or per type
// (REFUSED for AXFR over UDP): the queries whose name is at or below Zone
// (any name if empty) and whose type is one of Qtypes (any type if empty),
// and of those a Share of the names (all of them if 0), picked by a hash of
// the name so that a name is always served the same way.
type Rule struct {
	Zone   string
	Qtypes []uint16
	Share  float64
	Mode   Mode          // any mode but Closed, which is a property of the ports
	Delay  time.Duration // how long Slow holds the reply
}

// matches reports whether the rule applies to q.
func (r *Rule) matches(q dns.Question) bool {
	if r.Zone != "" && !dns.IsSubDomain(dns.Fqdn(r.Zone), q.Name) {
		return false
	}
	if len(r.Qtypes) > 0 && !slices.Contains(r.Qtypes, q.Qtype) {
		return false
	}
	if r.Share <= 0 || r.Share >= 1 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(dns.CanonicalName(q.Name)))
	return float64(h.Sum32()) < r.Share*(1<<32)
}

// SetRules replaces the server's rules; the first rule that matches a query
// decides how it is served while the server is in mode OK. In any other mode
// the mode applies to every query, as a server that is down fails them all.
func (s *Server) SetRules(rules ...Rule) error {
	for _, r := range rules {
		if r.Mode < OK || r.Mode > RefusedBare || r.Mode == Closed {
			return fmt.Errorf("faultdns: mode %v cannot be a rule's", r.Mode)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = slices.Clone(rules)
	return nil
}

// Mode returns the current mode.
func (s *Server) Mode() Mode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mode
}

// SetDelay sets how long Slow mode holds each reply; queries already waiting keep their delay.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Queries returns how many queries the server has received.
func (s *Server) Queries() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries
}

// QueriesFor returns how many queries for name (in any case, dot optional) the server has received.
func (s *Server) QueriesFor(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perName[dns.CanonicalName(name)]
}

// WaitQueries blocks until Queries() >= n, ctx is done, or the server is closed.
func (s *Server) WaitQueries(ctx context.Context, n int64) error {
	for {
		s.mu.Lock()
		if s.queries >= n {
			s.mu.Unlock()
			return nil
		}
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		if s.waiters == nil {
			s.waiters = make(chan struct{})
		}
		ch := s.waiters
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// wake releases every WaitQueries caller to re-check; s.mu must be held.
func (s *Server) wake() {
	if s.waiters != nil {
		close(s.waiters)
		s.waiters = nil
	}
}

// Close shuts the server down and returns once all its goroutines have exited.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.unbind()
		s.wake()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) serveUDP(pc net.PacketConn) {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			// An unconnected UDP socket only fails like this once closed.
			return
		}
		out, delay := s.handle(buf[:n], true)
		switch {
		case out == nil:
		case delay == 0:
			pc.WriteTo(out, from)
		default:
			s.wg.Go(func() {
				if s.sleep(delay) {
					pc.WriteTo(out, from)
				}
			})
		}
	}
}

func (s *Server) serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if !s.track(l, c) {
			c.Close()
			continue
		}
		s.wg.Go(func() { s.serveConn(c) })
	}
}

// track records c so unbind can drop it, unless l has been closed meanwhile.
func (s *Server) track(l net.Listener, c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcp != l {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) serveConn(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	var hdr [2]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		out, delay := s.handle(msg, false)
		if out == nil {
			continue
		}
		// One Write per framed reply: concurrent Writes on a net.Conn do not interleave.
		out = append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(out)), uint16(len(out))), out...) //nolint:gosec // G115: DNS messages fit 16 bits
		if delay == 0 {
			c.Write(out)
			continue
		}
		s.wg.Go(func() {
			if s.sleep(delay) {
				c.Write(out)
			}
		})
	}
}

// sleep waits for d and reports whether the server is still open.
func (s *Server) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// handle counts the query in b and returns the wire reply (nil for none) and how long to hold it.
func (s *Server) handle(b []byte, udp bool) ([]byte, time.Duration) {
	q := new(dns.Msg)
	if q.Unpack(b) != nil || q.Response {
		return nil, 0
	}
	mode, delay := s.receive(q)
	var r *dns.Msg
	switch mode {
	case Blackhole, Closed:
		return nil, 0
	case Garbage:
		// A header promising one question, then a label of reserved type 0b10.
		return append(binary.BigEndian.AppendUint16(nil, q.Id), 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0x80, 'j', 'u', 'n', 'k'), 0
	case ServFail:
		r = reply(q, dns.RcodeServerFailure)
	case Refused:
		r = reply(q, dns.RcodeRefused)
	case NXDomain:
		r = reply(q, dns.RcodeNameError)
	case NotImp:
		r = reply(q, dns.RcodeNotImplemented)
	case RefusedBare:
		r = reply(q, dns.RcodeRefused)
		r.Question = nil
	case Truncate:
		if udp {
			r = reply(q, dns.RcodeSuccess)
			r.Truncated = true
		} else {
			r = s.answer(q)
		}
	case WrongID:
		r = s.answer(q)
		r.Id++
	case WrongQuestion:
		if len(q.Question) > 0 {
			q.Question[0].Name = SpoofedName
		}
		r = s.answer(q)
	default: // OK, Slow
		r = s.answer(q)
	}
	if mode != Slow {
		delay = 0
	}
	out, err := r.Pack()
	if err != nil {
		return nil, 0
	}
	return out, delay
}

// receive counts q and returns the mode and delay to serve it with.
func (s *Server) receive(q *dns.Msg) (Mode, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A query read just before the switch to Closed was, as far as clients can tell, never received.
	if s.mode == Closed {
		return Closed, 0
	}
	s.queries++
	if len(q.Question) > 0 {
		s.perName[dns.CanonicalName(q.Question[0].Name)]++
	}
	s.wake()
	if s.mode == OK && len(q.Question) > 0 {
		for _, r := range s.rules {
			if r.matches(q.Question[0]) {
				return r.Mode, r.Delay
			}
		}
	}
	return s.mode, s.delay
}

// reply starts a response to q with rcode, as a recursive server would, echoing EDNS0.
func reply(q *dns.Msg, rcode int) *dns.Msg {
	r := new(dns.Msg)
	r.SetRcode(q, rcode)
	r.RecursionAvailable = true
	if opt := q.IsEdns0(); opt != nil {
		r.SetEdns0(opt.UDPSize(), opt.Do())
	}
	return r
}

// answer is the normal NOERROR reply to q: an A record, TXT records naming the server, or no data.
func (s *Server) answer(q *dns.Msg) *dns.Msg {
	if len(q.Question) == 0 {
		return reply(q, dns.RcodeFormatError)
	}
	r := reply(q, dns.RcodeSuccess)
	r.Authoritative = true
	qq := q.Question[0]
	hdr := dns.RR_Header{Name: qq.Name, Rrtype: qq.Qtype, Class: dns.ClassINET, Ttl: ttl}
	switch qq.Qtype {
	case dns.TypeA:
		r.Answer = []dns.RR{&dns.A{Hdr: hdr, A: s.ip}}
	case dns.TypeTXT:
		r.Answer = []dns.RR{&dns.TXT{Hdr: hdr, Txt: []string{s.addr}}}
		if strings.HasPrefix(dns.CanonicalName(qq.Name), "big.") {
			// Distinct strings, since an RRset must not hold duplicates.
			for i := 1; i < bigTXT; i++ {
				r.Answer = append(r.Answer, &dns.TXT{Hdr: hdr, Txt: []string{s.addr, fmt.Sprintf("record %02d of an answer longer than 512 bytes", i)}})
			}
		}
	}
	return r
}
