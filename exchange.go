package upstreamtier

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// dnsAttempt is one query written to a plain-DNS upstream and not yet
// answered. The connection is the attempt's alone until done.
type dnsAttempt struct {
	pool    *connPool
	conn    *upConn
	pooled  bool
	spoiled bool // something may still touch the connection: never reuse it
	id      uint16
	pkt     packet
}

// send writes the packed query to the upstream under a fresh random ID; a
// dial ends at the deadline or when ctx is done. pkt's wire is modified:
// its first two bytes get the ID.
func (p *connPool) send(ctx context.Context, pkt packet, deadline time.Time) (dnsAttempt, error) {
	wire := pkt.wire
	for {
		c, pooled, err := p.get(ctx, deadline)
		if err != nil {
			return dnsAttempt{}, err
		}
		c.UDPSize = pkt.size
		id := queryID()
		binary.BigEndian.PutUint16(wire, id)
		c.SetWriteDeadline(deadline)
		if _, err := c.Write(wire); err != nil {
			p.discard(c)
			if pooled {
				continue // the upstream closed it while idle: dial afresh
			}
			return dnsAttempt{}, err
		}
		return dnsAttempt{pool: p, conn: c, pooled: pooled, id: id, pkt: pkt}, nil
	}
}

// queryID returns a random query ID from the system's CSPRNG, as dns.Id
// does, without its allocation.
func queryID() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}

// await reads the answer to the attempt until the deadline, or until the
// pool is closed. Over UDP a datagram with another ID is skipped: a late
// answer to an earlier query on this socket, or a spoof; the kernel
// already dropped datagrams from any address but the upstream's, as the
// socket is connected.
func (a *dnsAttempt) await(deadline time.Time) (*dns.Msg, error) {
	a.conn.SetReadDeadline(deadline)
	return a.read()
}

// awaitCtx is await that also ends when ctx is done, with ctx's error.
// The wake-up is a read deadline in the past, set from another goroutine,
// which is why the connection is not reused after that.
func (a *dnsAttempt) awaitCtx(ctx context.Context, deadline time.Time) (*dns.Msg, error) {
	a.conn.SetReadDeadline(deadline)
	conn := a.conn
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(aLongTimeAgo) })
	m, err := a.read()
	if !stop() {
		a.spoiled = true
		if err != nil {
			err = ctx.Err()
		}
	}
	return m, err
}

// aLongTimeAgo is a deadline that has passed: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// read reads until the attempt's answer, an error or the read deadline.
func (a *dnsAttempt) read() (*dns.Msg, error) {
	udp := a.pool.proto == "udp"
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for {
		p, err := a.readPacket(udp, *bp)
		if err != nil {
			if udp && errors.Is(err, dns.ErrShortRead) {
				continue
			}
			return nil, err
		}
		if binary.BigEndian.Uint16(p) != a.id {
			if udp {
				continue
			}
			return nil, errWrongID
		}
		m, err := unpackAnswer(p, &a.pkt)
		if err != nil {
			if udp && len(p) >= max(int(a.conn.UDPSize), dns.MinMsgSize) {
				// The answer was cut to the client's buffer size: hand the
				// client a truncated answer so it retries over TCP, as
				// forward does.
				m.Answer, m.Ns, m.Extra, m.Truncated = nil, nil, nil, true
				return m, nil
			}
			return nil, errMalformed
		}
		return m, nil
	}
}

// readPacket reads one message into buf, or into a buffer of its own if
// it may not fit: a datagram up to the client's buffer size, a TCP message
// up to the size its length says.
func (a *dnsAttempt) readPacket(udp bool, buf []byte) ([]byte, error) {
	nc := a.conn.Conn.Conn
	var n int
	var err error
	if udp {
		size := max(int(a.conn.UDPSize), dns.MinMsgSize)
		if size > len(buf) {
			buf = make([]byte, size)
		}
		n, err = nc.Read(buf[:size])
	} else {
		if _, err := io.ReadFull(nc, buf[:2]); err != nil {
			return nil, err
		}
		size := int(binary.BigEndian.Uint16(buf))
		if size > len(buf) {
			buf = make([]byte, size)
		}
		n, err = io.ReadFull(nc, buf[:size])
	}
	if err != nil {
		return nil, err
	}
	if n < 12 {
		return nil, dns.ErrShortRead
	}
	return buf[:n], nil
}

// done releases the attempt's connection: back to the pool after a clean
// exchange, or after a UDP timeout (a late answer that still comes has
// this attempt's ID, which the next attempt on the socket skips as it
// does any other); closed otherwise: a TCP stream may still carry the
// answer, and a connection woken from another goroutine may be woken again.
func (a *dnsAttempt) done(err error) {
	if (err == nil || a.pool.proto == "udp" && isTimeout(err)) && !a.spoiled {
		a.pool.put(a.conn)
		return
	}
	a.pool.discard(a.conn)
}

// stale reports whether err says that a pooled TCP connection had been
// closed by the upstream before we used it.
func (a *dnsAttempt) stale(err error) bool {
	return a.pooled && a.pool.proto == "tcp" &&
		(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}

// exchange sends the query and waits for its answer until the deadline or
// until ctx is done.
func (p *connPool) exchange(ctx context.Context, pkt packet, deadline time.Time) (*dns.Msg, error) {
	for retried := false; ; retried = true {
		a, err := p.send(ctx, pkt, deadline)
		if err != nil {
			return nil, err
		}
		m, err := a.awaitCtx(ctx, deadline)
		a.done(err)
		if err != nil && !retried && a.stale(err) {
			continue
		}
		return m, err
	}
}

var (
	errWrongID   = errors.New("answer with another ID over TCP")
	errMalformed = errors.New("malformed answer")
)
