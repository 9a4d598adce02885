package dnspool

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Mux carries plain DNS over UDP to one upstream on a few long-lived
// connected sockets, many queries in flight on each. Every socket has one
// reader goroutine that reads the answers and hands each to the call
// waiting for its ID, so a query costs one write, and no read of its own
// that finds nothing yet and parks in the poller.
//
// What an off-path spoofer must guess for an answer to be taken: the
// query's 16-bit ID (from crypto/rand, never two in flight with the same
// ID on one socket), its question, and the source port of the socket it
// left from, one of up to MuxSockets sockets whose ports the kernel chose
// at random. A datagram with a waiting ID and another question, or that is
// not a response, is dropped and counted (Unmatched), and the query keeps
// waiting for its own answer: one forged datagram never ends a query. The
// sockets are connected, so the kernel drops datagrams from any address
// and port but the upstream's. They rotate: a socket takes no new query
// after MuxRotate queries, after MaxAge (DefaultMuxAge by default), or
// once idle for Expire, and is closed when its last query is done, so
// the ports keep changing and a port learnt is soon worth nothing. The
// ID of a query that timed out stays reserved on its socket until the
// socket is closed: the late answer is dropped, never taken by a later
// query. An ICMP port unreachable on a socket (the upstream's port is
// closed) fails the queries waiting on it and retires the socket.
type Mux struct {
	addr string
	opts Options
	n    int // sockets in use at once

	mu     sync.Mutex
	socks  []*muxSocket            // the sockets new queries go to; nil slots are dialled on use
	open   map[*muxSocket]struct{} // every socket not yet closed, retired ones included
	next   int                     // the slot of the next query
	closed bool

	dials     atomic.Int64
	inUse     atomic.Int64
	unmatched atomic.Int64
}

const (
	// MuxSockets is how many sockets a Mux sends on at once, unless
	// Options.MaxIdle is smaller.
	MuxSockets = 4
	// MuxRotate is how many queries a socket carries before it is
	// replaced; it also bounds the IDs reserved on one socket.
	MuxRotate = 4096
	// DefaultMuxAge is how long a socket takes new queries when
	// Options.MaxAge is not set.
	DefaultMuxAge = 10 * time.Second
)

// NewMux returns a UDP multiplexer to addr. Options keep their meaning
// for sockets: Source is the local address, Expire how long an idle
// socket is kept, MaxAge how long a socket takes new queries (default
// DefaultMuxAge), MaxIdle, when set, caps the sockets below MuxSockets.
func NewMux(addr string, opts Options) *Mux {
	if opts.Expire <= 0 {
		opts.Expire = DefaultExpire
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMuxAge
	}
	n := MuxSockets
	if opts.MaxIdle > 0 && opts.MaxIdle < n {
		n = opts.MaxIdle
	}
	return &Mux{addr: addr, opts: opts, n: n, socks: make([]*muxSocket, n), open: make(map[*muxSocket]struct{})}
}

// Dials returns the number of sockets dialled so far.
func (m *Mux) Dials() int64 { return m.dials.Load() }

// InUse returns the number of queries in flight.
func (m *Mux) InUse() int { return int(m.inUse.Load()) }

// Unmatched returns how many datagrams with the ID of a waiting query
// were dropped because they were not its answer.
func (m *Mux) Unmatched() int64 { return m.unmatched.Load() }

// muxSocket is one connected socket of a Mux and the calls in flight on it.
type muxSocket struct {
	m       *Mux
	conn    *net.UDPConn
	created time.Time
	used    time.Time // when the last query was sent, under m.mu
	sent    int       // queries sent, under m.mu

	mu      sync.Mutex
	waiting map[uint16]*Call // by ID: the calls waiting, and reserved IDs (reserved)
	live    int              // calls sent and not yet Done
	retired bool             // takes no new call; closed once live is 0
	dead    bool             // closed
}

// reserved marks the ID of a call that gave up before its answer came.
var reserved = new(Call)

// Call is one query in flight on a Mux, from Send to Done.
type Call struct {
	s        *muxSocket
	id       uint16
	question []byte     // the query's question section, which its answer must echo; nil if not found
	size     int        // the largest answer: the client's buffer size
	buf      []byte     // the answer, valid until Done
	n        int        // its length
	ch       chan error // the reader's word: nil with an answer in buf[:n], or the socket's error
	got      bool       // the word was taken
	t        *time.Timer
}

var callPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &Call{ch: make(chan error, 1), t: t}
}}

// Send writes the packed query wire under a fresh random ID on one of the
// sockets, dialling one first if due, and returns the call the answer
// will come to. size is the largest answer the client takes. wire's first
// two bytes get the ID. A write that fails (a socket error left by an
// earlier ICMP message) retires the socket and is tried once more on a
// fresh one.
func (m *Mux) Send(ctx context.Context, wire []byte, size int, deadline time.Time) (*Call, error) {
	c := callPool.Get().(*Call)
	c.size, c.got = max(size, dns.MinMsgSize), false
	c.question = c.question[:0]
	if end := QuestionEnd(wire); end > 0 {
		c.question = append(c.question, wire[headerLen:end]...)
	} else {
		c.question = nil
	}
	for try := 0; ; try++ {
		s, err := m.socket(ctx, deadline)
		if err != nil {
			callPool.Put(c)
			return nil, err
		}
		if !s.reserve(c) {
			continue // retired meanwhile
		}
		m.inUse.Add(1)
		binary.BigEndian.PutUint16(wire, c.id)
		if _, err := s.conn.Write(wire); err != nil {
			s.cancel(c)
			m.inUse.Add(-1)
			m.retire(s)
			if try == 0 && !errors.Is(err, net.ErrClosed) {
				continue
			}
			callPool.Put(c)
			return nil, err
		}
		return c, nil
	}
}

// socket returns the socket for the next query, replacing the one of its
// slot if it is due for rotation.
func (m *Mux) socket(ctx context.Context, deadline time.Time) (*muxSocket, error) {
	now := time.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	i := m.next
	m.next++
	if m.next == m.n {
		m.next = 0
	}
	s := m.socks[i]
	var old *muxSocket
	if s == nil || s.sent >= MuxRotate || now.Sub(s.created) >= m.opts.MaxAge || now.Sub(s.used) >= m.opts.Expire {
		fresh, err := m.dial(ctx, deadline, now)
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
		old, s, m.socks[i] = s, fresh, fresh
	}
	s.sent++
	s.used = now
	m.mu.Unlock()
	if old != nil {
		old.retire()
	}
	return s, nil
}

// dial opens a socket, with m.mu held, and starts its reader.
func (m *Mux) dial(ctx context.Context, deadline, now time.Time) (*muxSocket, error) {
	m.dials.Add(1)
	d := net.Dialer{Deadline: deadline}
	if m.opts.Source != nil {
		d.LocalAddr = &net.UDPAddr{IP: m.opts.Source}
	}
	nc, err := d.DialContext(ctx, "udp", m.addr)
	if err != nil {
		return nil, err
	}
	s := &muxSocket{m: m, conn: nc.(*net.UDPConn), created: now, used: now, waiting: make(map[uint16]*Call)}
	m.open[s] = struct{}{}
	go s.read()
	return s, nil
}

// retire takes s out of rotation, if it is still in it.
func (m *Mux) retire(s *muxSocket) {
	m.mu.Lock()
	for i, t := range m.socks {
		if t == s {
			m.socks[i] = nil
		}
	}
	m.mu.Unlock()
	s.retire()
}

// reserve gives c a random ID no call in flight on s has, nor any that
// gave up on s; false if s takes no new calls.
func (s *muxSocket) reserve(c *Call) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retired {
		return false
	}
	for {
		id := queryID()
		if _, taken := s.waiting[id]; !taken {
			c.s, c.id = s, id
			s.waiting[id] = c
			s.live++
			return true
		}
	}
}

// cancel ends c, whose query was not sent: its ID is free again. If the
// socket failed meanwhile and its reader handed c an error, that word is
// taken, so that c is clean for its next use.
func (s *muxSocket) cancel(c *Call) {
	s.mu.Lock()
	taken := s.waiting[c.id] != c
	if !taken {
		delete(s.waiting, c.id)
	}
	s.live--
	s.mu.Unlock()
	if taken {
		<-c.ch
	}
}

// retire stops new calls on s and closes it if none is in flight.
func (s *muxSocket) retire() {
	s.mu.Lock()
	s.retired = true
	last := s.drained()
	s.mu.Unlock()
	if last {
		s.close()
	}
}

// drained reports, with s.mu held, whether s is retired with no call in
// flight and not closed yet; then it is marked dead, and the caller, the
// only one told, closes it.
func (s *muxSocket) drained() bool {
	if !s.retired || s.live > 0 || s.dead {
		return false
	}
	s.dead = true
	return true
}

// close closes the socket, which ends its reader.
func (s *muxSocket) close() {
	s.conn.Close()
	s.m.mu.Lock()
	delete(s.m.open, s)
	s.m.mu.Unlock()
}

// read is the socket's reader: it hands each answer to the call waiting
// for its ID and drops any other datagram (a late answer to a call that
// gave up, or a spoof from the upstream's address). A datagram longer
// than the call's buffer size is cut to it, as the kernel would cut it.
func (s *muxSocket) read() {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			s.m.retire(s) // before the waiters hear of it: their next query goes elsewhere
			s.fail(err)
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			s.kill()
			return
		}
		s.deliver(buf[:n])
	}
}

// deliver hands the datagram p to the call waiting for its ID, if any.
func (s *muxSocket) deliver(p []byte) {
	if len(p) < 12 {
		return
	}
	id := binary.BigEndian.Uint16(p)
	s.mu.Lock()
	c := s.waiting[id]
	if c == nil || c == reserved {
		s.mu.Unlock()
		return // the ID stays reserved: more copies of a late answer may come
	}
	if !answers(p, c.question) {
		s.mu.Unlock()
		s.m.unmatched.Add(1) // forged, or garbage: the query waits for its own answer
		return
	}
	delete(s.waiting, id)
	s.mu.Unlock()
	p = p[:min(len(p), c.size)]
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, max(len(p), 1024))
	}
	c.n = copy(c.buf[:cap(c.buf)], p)
	c.ch <- nil
}

// fail hands err to every call waiting on s. Their IDs are free again,
// which is safe: s takes no new calls after an error.
func (s *muxSocket) fail(err error) {
	s.mu.Lock()
	var calls []*Call
	for id, c := range s.waiting {
		if c != reserved {
			delete(s.waiting, id)
			calls = append(calls, c)
		}
	}
	s.mu.Unlock()
	for _, c := range calls {
		c.ch <- err
	}
}

// kill closes s whatever is in flight on it: the calls waiting get the
// error of the closed socket from the reader.
func (s *muxSocket) kill() {
	s.mu.Lock()
	s.retired = true
	first := !s.dead
	s.dead = true
	s.mu.Unlock()
	if first {
		s.close()
	}
}

// Await waits for the answer until the deadline, and returns it in a
// buffer of the call's, valid until Done. A timeout leaves the call
// waiting: Await may be called again.
func (c *Call) Await(deadline time.Time) ([]byte, error) {
	return c.await(context.Background(), nil, deadline)
}

// AwaitCtx is Await that also ends when ctx is done, with ctx's error.
func (c *Call) AwaitCtx(ctx context.Context, deadline time.Time) ([]byte, error) {
	return c.await(ctx, ctx.Done(), deadline)
}

// await waits for the reader's word, the deadline, or done (ctx's).
func (c *Call) await(ctx context.Context, done <-chan struct{}, deadline time.Time) ([]byte, error) {
	if c.got {
		return nil, net.ErrClosed // the word was taken already
	}
	select {
	case err := <-c.ch:
		return c.word(err)
	default:
	}
	d := time.Until(deadline)
	if d <= 0 {
		return nil, os.ErrDeadlineExceeded
	}
	c.t.Reset(d)
	defer c.t.Stop()
	select {
	case err := <-c.ch:
		return c.word(err)
	case <-c.t.C:
		return nil, os.ErrDeadlineExceeded
	case <-done:
		return nil, ctx.Err()
	}
}

// word returns what the reader said.
func (c *Call) word(err error) ([]byte, error) {
	c.got = true
	if err != nil {
		return nil, err
	}
	return c.buf[:c.n], nil
}

// Done ends the call after its last Await. A call that gave up before its
// answer keeps its ID reserved on the socket until the socket is closed,
// so that the late answer is dropped.
func (c *Call) Done() {
	s := c.s
	s.mu.Lock()
	if !c.got {
		if s.waiting[c.id] == c {
			s.waiting[c.id] = reserved
		} else {
			s.mu.Unlock()
			<-c.ch // the reader took it and is handing it over
			s.mu.Lock()
		}
	}
	s.live--
	last := s.drained()
	s.mu.Unlock()
	if last {
		s.close()
	}
	s.m.inUse.Add(-1)
	c.s = nil
	if cap(c.buf) > 4096 {
		c.buf = nil
	}
	callPool.Put(c)
}

// Close closes the idle sockets and refuses new queries. The queries in
// flight get grace for their answers; then their sockets are closed too,
// which ends every wait.
func (m *Mux) Close(grace time.Duration) {
	m.mu.Lock()
	m.closed = true
	socks := m.socks
	m.socks = make([]*muxSocket, m.n)
	m.mu.Unlock()
	for _, s := range socks {
		if s != nil {
			s.retire()
		}
	}
	time.AfterFunc(grace, func() {
		m.mu.Lock()
		open := make([]*muxSocket, 0, len(m.open))
		for s := range m.open {
			open = append(open, s)
		}
		m.mu.Unlock()
		for _, s := range open {
			s.kill()
		}
	})
}
