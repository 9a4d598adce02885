package upstreamtier

import (
	"context"
	"net"
	"sync"
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
type connPool struct {
	addr  string
	proto string // "udp" or "tcp"

	mu     sync.Mutex
	idle   []idleConn // most recently used last
	closed bool
}

type idleConn struct {
	conn *dns.Conn
	used time.Time
}

const (
	// maxIdle bounds the idle connections kept per upstream and protocol.
	maxIdle = 64
	// idleExpire is how long an idle connection is kept: below the usual
	// TCP idle timeouts of resolvers, so we rarely write to a closed one.
	idleExpire = 5 * time.Second
)

// get returns an idle connection, or dials a new one; pooled says which.
func (p *connPool) get(ctx context.Context, deadline time.Time) (conn *dns.Conn, pooled bool, err error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		ic := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if time.Since(ic.used) < idleExpire {
			p.mu.Unlock()
			return ic.conn, true, nil
		}
		ic.conn.Close()
	}
	p.mu.Unlock()

	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, p.proto, p.addr)
	if err != nil {
		return nil, false, err
	}
	return &dns.Conn{Conn: c}, false, nil
}

// put gives a connection back after a clean exchange.
func (p *connPool) put(c *dns.Conn) {
	p.mu.Lock()
	if p.closed || len(p.idle) >= maxIdle {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, idleConn{conn: c, used: time.Now()})
	p.mu.Unlock()
}

// close closes the idle connections; connections in use are closed when
// their attempt puts them back.
func (p *connPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, ic := range idle {
		ic.conn.Close()
	}
}
