// Package dnspool keeps the sockets and connections of plain DNS (RFC
// 1035 over UDP and TCP) or DNS over TLS (RFC 7858) to one upstream: a Mux
// multiplexes UDP queries on a few long-lived sockets, a Pool runs one
// query at a time on each TCP or TLS connection.
//
// These go through this pool and not through CoreDNS's pkg/proxy
// because the proxy reads until its fixed read timeout and rewrites the
// request's ID in place: an attempt could not stop at its own (adaptive)
// deadline, and a hedge could not run beside it without copying the
// request. Here a connection belongs to exactly one attempt until it is
// put back, and the attempt sets its own deadlines.
//
// The pool also knows the connections in use, so that closing it at
// shutdown ends every read still waiting on the upstream.
package dnspool

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options are the pool's connection settings; the zero value is the
// default of each.
type Options struct {
	Source  net.IP        // local address to send from; nil lets the kernel choose
	Expire  time.Duration // how long an idle connection is kept; 0 is DefaultExpire
	MaxAge  time.Duration // how long a connection is used at all; 0 is no limit
	MaxIdle int           // idle connections kept; 0 is every one put back, until it expires
	TLS     *tls.Config   // dial TCP through TLS with it (DNS over TLS); nil is plain DNS
}

// DefaultExpire is how long an idle connection is kept: below the usual
// TCP idle timeouts of resolvers, so we rarely write to a closed one.
const DefaultExpire = 5 * time.Second

// Pool keeps idle TCP (or TLS) connections to one upstream, so a query
// does not pay a dial and a handshake each time.
type Pool struct {
	addr string
	opts Options

	mu     sync.Mutex
	idle   []*Conn // most recently used last
	busy   []*Conn // in use by an attempt, in no order
	closed bool

	dials atomic.Int64
}

// ErrClosed is the error of an attempt started after the pool was closed.
var ErrClosed = errors.New("connection pool closed: shutting down")

// New returns a pool of TCP connections to addr, through TLS when
// opts.TLS is set.
func New(addr string, opts Options) *Pool {
	if opts.Expire <= 0 {
		opts.Expire = DefaultExpire
	}
	return &Pool{addr: addr, opts: opts}
}

// TLSConfig returns the configuration connections are dialled through TLS
// with, or nil for plain DNS.
func (p *Pool) TLSConfig() *tls.Config { return p.opts.TLS }

// Dials returns the number of connections dialled so far.
func (p *Pool) Dials() int64 { return p.dials.Load() }

// InUse returns the number of connections attempts hold now.
func (p *Pool) InUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.busy)
}

// get returns an idle connection, or nil if there is none.
func (p *Pool) get() (*Conn, error) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.idle) > 0 && !p.closed {
		c := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if p.fresh(c, now) {
			c.pooled = true
			p.hold(c)
			return c, nil
		}
		c.Close()
	}
	if p.closed {
		return nil, ErrClosed
	}
	return nil, nil
}

// fresh reports whether the idle connection c may still be used at now.
func (p *Pool) fresh(c *Conn, now time.Time) bool {
	if now.Sub(c.used) >= p.opts.Expire {
		return false
	}
	return p.opts.MaxAge <= 0 || now.Sub(c.created) < p.opts.MaxAge
}

// dial starts dialling the new connection c for the attempt whose query
// is wire, in a goroutine of its own that then writes the query on it;
// Await waits for that. A dial, and over TLS the handshake, takes as
// long as the upstream makes it (a hung server whose kernel still accepts
// never finishes a handshake): the attempt must stay free to stop waiting
// at its first checkpoint and hedge, as on a silent upstream, so it never
// dials in its own goroutine. The dial ends at the deadline or when ctx is
// done.
func (p *Pool) dial(ctx context.Context, c *Conn, wire []byte, deadline time.Time) {
	c.dialled = make(chan struct{})
	wire = slices.Clone(wire) // the attempt's buffer is reused once it ends
	go func() {
		c.dialErr = p.connect(ctx, c, wire, deadline)
		if !c.state.CompareAndSwap(dialling, connected) && c.dialErr == nil {
			p.discard(c) // the attempt ended meanwhile
		}
		close(c.dialled)
	}()
}

// connect dials c's connection, holds it for the attempt and writes the
// query on it.
func (p *Pool) connect(ctx context.Context, c *Conn, wire []byte, deadline time.Time) error {
	p.dials.Add(1)
	nc, err := p.dialConn(ctx, deadline)
	if err != nil {
		return err
	}
	c.Conn.Conn, c.created = nc, time.Now()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		nc.Close()
		return ErrClosed
	}
	p.hold(c)
	p.mu.Unlock()
	c.SetWriteDeadline(deadline)
	if _, err := c.Write(wire); err != nil {
		p.discard(c)
		return err
	}
	return nil
}

// dialConn opens a connection to the upstream. Over TLS the handshake is
// part of it: it too ends at the deadline or when ctx is done.
func (p *Pool) dialConn(ctx context.Context, deadline time.Time) (net.Conn, error) {
	d := &net.Dialer{Deadline: deadline, LocalAddr: p.localAddr()}
	if p.opts.TLS != nil {
		return (&tls.Dialer{NetDialer: d, Config: p.opts.TLS}).DialContext(ctx, "tcp", p.addr)
	}
	return d.DialContext(ctx, "tcp", p.addr)
}

// localAddr is the address to dial from, or nil.
func (p *Pool) localAddr() net.Addr {
	if p.opts.Source == nil {
		return nil
	}
	return &net.TCPAddr{IP: p.opts.Source}
}

// hold records, with p.mu held, that c is in use.
func (p *Pool) hold(c *Conn) {
	c.slot = len(p.busy)
	p.busy = append(p.busy, c)
}

// release records, with p.mu held, that c is no longer in use; false if
// the pool had already let go of it (it was closed).
func (p *Pool) release(c *Conn) bool {
	i := c.slot
	if i < 0 || i >= len(p.busy) || p.busy[i] != c {
		return false
	}
	last := len(p.busy) - 1
	p.busy[i] = p.busy[last]
	p.busy[i].slot = i
	p.busy[last] = nil
	p.busy = p.busy[:last]
	c.slot = -1
	return true
}

// put gives a connection back after a clean exchange. Unless MaxIdle
// says otherwise, the pool keeps every connection put back, as many as
// were in use at once, so that a steady (or bursty) concurrency is served
// without dials: over TLS a dial is a handshake, which costs the upstream
// and us more than many queries. The connections idle for Expire are
// closed here, the least recently used first, so the pool shrinks back
// when the concurrency does.
func (p *Pool) put(c *Conn) {
	now := time.Now()
	p.mu.Lock()
	if !p.release(c) || p.closed || p.opts.MaxIdle > 0 && len(p.idle) >= p.opts.MaxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	c.used = now
	p.idle = append(p.idle, c)
	expired := p.expired(now)
	p.mu.Unlock()
	for _, c := range expired {
		c.Close()
	}
}

// expired takes out, with p.mu held, the idle connections unused for
// Expire at now: the first ones, as idle is in the order they were put
// back.
func (p *Pool) expired(now time.Time) []*Conn {
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].used) >= p.opts.Expire {
		n++
	}
	if n == 0 {
		return nil
	}
	expired := slices.Clone(p.idle[:n])
	kept := copy(p.idle, p.idle[n:])
	clear(p.idle[kept:])
	p.idle = p.idle[:kept]
	return expired
}

// discard closes a connection that may not be used again.
func (p *Pool) discard(c *Conn) {
	p.mu.Lock()
	p.release(c)
	p.mu.Unlock()
	c.Close()
}

// Close closes the idle connections and refuses new attempts. The
// attempts in flight get grace for their answers, so a reload does not
// fail the queries it catches; then their connections are closed too,
// which ends any read still waiting on the upstream.
func (p *Pool) Close(grace time.Duration) {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	time.AfterFunc(grace, p.closeBusy)
}

// closeBusy closes the connections still in use.
func (p *Pool) closeBusy() {
	p.mu.Lock()
	busy := p.busy
	for _, c := range busy {
		c.slot = -1
	}
	p.busy = nil
	p.mu.Unlock()
	for _, c := range busy {
		c.Close()
	}
}
