package upstreamtier

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// connPool keeps idle connections to one upstream over one protocol, so a
// query does not pay a dial (or, over TCP, a handshake) each time.
//
// Plain DNS goes through this pool and not through pkg/proxy because the
// proxy reads until its fixed read timeout and rewrites the request's ID
// in place: an attempt could not stop at its own deadline, and a
// hedge could not run beside it without copying the request. Here a
// connection belongs to exactly one attempt until it is put back, and the
// attempt sets its own deadlines. (DoT stays on pkg/proxy, see dot.go.)
//
// The pool also knows the connections in use, so that closing it at
// shutdown ends every read still waiting on the upstream.
type connPool struct {
	addr  string
	proto string // "udp" or "tcp"

	mu     sync.Mutex
	idle   []*upConn // most recently used last
	busy   []*upConn // in use by an attempt, in no order
	closed bool

	dials atomic.Int64 // connections dialled, for benchmarks
}

// upConn is a connection of a pool.
type upConn struct {
	dns.Conn
	used time.Time // when it was last put back
	slot int       // its index in the pool's busy list while in use
}

const (
	// maxIdle bounds the idle connections kept per upstream and protocol
	// while fewer are in use.
	maxIdle = 64
	// idleExpire is how long an idle connection is kept: below the usual
	// TCP idle timeouts of resolvers, so we rarely write to a closed one.
	idleExpire = 5 * time.Second
	// shutdownGrace is how long the client attempts in flight at shutdown
	// may still wait for their answers; probes end at once.
	shutdownGrace = 500 * time.Millisecond
)

// errPoolClosed is the error of an attempt started after shutdown.
var errPoolClosed = errors.New("connection pool closed: shutting down")

// get returns an idle connection, or dials a new one until deadline or
// until ctx is done; pooled says which.
func (p *connPool) get(ctx context.Context, deadline time.Time) (conn *upConn, pooled bool, err error) {
	p.mu.Lock()
	for len(p.idle) > 0 && !p.closed {
		c := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(c.used) < idleExpire {
			p.hold(c)
			p.mu.Unlock()
			return c, true, nil
		}
		c.Close()
	}
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return nil, false, errPoolClosed
	}

	p.dials.Add(1)
	d := net.Dialer{Deadline: deadline}
	nc, err := d.DialContext(ctx, p.proto, p.addr)
	if err != nil {
		return nil, false, err
	}
	c := &upConn{Conn: dns.Conn{Conn: nc}}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		nc.Close()
		return nil, false, errPoolClosed
	}
	p.hold(c)
	p.mu.Unlock()
	return c, false, nil
}

// hold records, with p.mu held, that c is in use.
func (p *connPool) hold(c *upConn) {
	c.slot = len(p.busy)
	p.busy = append(p.busy, c)
}

// release records, with p.mu held, that c is no longer in use; false if
// the pool had already let go of it (it was closed).
func (p *connPool) release(c *upConn) bool {
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

// put gives a connection back after a clean exchange. The pool keeps as
// many idle connections as are in use, at least maxIdle, so that a steady
// concurrency is served without dials.
func (p *connPool) put(c *upConn) {
	p.mu.Lock()
	if !p.release(c) || p.closed || len(p.idle) >= max(maxIdle, len(p.busy)) {
		p.mu.Unlock()
		c.Close()
		return
	}
	c.used = time.Now()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// discard closes a connection that may not be used again.
func (p *connPool) discard(c *upConn) {
	p.mu.Lock()
	p.release(c)
	p.mu.Unlock()
	c.Close()
}

// close closes the idle connections and refuses new attempts. The
// attempts in flight get shutdownGrace for their answers, so a reload does
// not fail the queries it catches; then their connections are closed too,
// which ends any read still waiting on the upstream.
func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	time.AfterFunc(shutdownGrace, p.closeBusy)
}

// closeBusy closes the connections still in use.
func (p *connPool) closeBusy() {
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

// inUse returns the number of connections attempts hold now.
func (p *connPool) inUse() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.busy)
}
