package upstreamtier

import (
	"context"
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
	pool   *connPool
	conn   *dns.Conn
	pooled bool
	id     uint16
}

// send writes the packed query to the upstream under a fresh random ID.
// wire is modified: its first two bytes get the ID.
func (p *connPool) send(ctx context.Context, wire []byte, udpSize uint16, deadline time.Time) (dnsAttempt, error) {
	for {
		c, pooled, err := p.get(ctx, deadline)
		if err != nil {
			return dnsAttempt{}, err
		}
		c.UDPSize = udpSize
		id := dns.Id()
		binary.BigEndian.PutUint16(wire, id)
		c.SetWriteDeadline(deadline)
		if _, err := c.Write(wire); err != nil {
			c.Close()
			if pooled {
				continue // the upstream closed it while idle: dial afresh
			}
			return dnsAttempt{}, err
		}
		return dnsAttempt{pool: p, conn: c, pooled: pooled, id: id}, nil
	}
}

// await reads the answer to the attempt until the deadline. Over UDP a
// datagram with another ID is skipped: a late answer to an earlier query on
// this socket, or a spoof; the kernel already dropped datagrams from any
// address but the upstream's, as the socket is connected.
func (a *dnsAttempt) await(deadline time.Time) (*dns.Msg, error) {
	a.conn.SetReadDeadline(deadline)
	udp := a.pool.proto == "udp"
	for {
		p, err := a.conn.ReadMsgHeader(nil)
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
		m := new(dns.Msg)
		if err := m.Unpack(p); err != nil {
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

// done releases the attempt's connection: back to the pool after a clean
// exchange; closed otherwise, since an answer may still be on its way.
func (a *dnsAttempt) done(err error) {
	if err == nil {
		a.pool.put(a.conn)
		return
	}
	a.conn.Close()
}

// stale reports whether err says that a pooled TCP connection had been
// closed by the upstream before we used it.
func (a *dnsAttempt) stale(err error) bool {
	return a.pooled && a.pool.proto == "tcp" &&
		(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
}

// exchangeDNS sends the query and waits for its answer until the deadline.
func (p *connPool) exchange(ctx context.Context, wire []byte, udpSize uint16, deadline time.Time) (*dns.Msg, error) {
	for retried := false; ; retried = true {
		a, err := p.send(ctx, wire, udpSize, deadline)
		if err != nil {
			return nil, err
		}
		m, err := a.await(deadline)
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
