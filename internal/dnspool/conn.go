package dnspool

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Conn is a connection of a pool. While an attempt holds it, it carries
// that attempt's query: the connection is the attempt's alone until Done.
type Conn struct {
	dns.Conn
	pool    *Pool
	created time.Time // when it was dialled, for MaxAge
	used    time.Time // when it was last put back
	slot    int       // its index in the pool's busy list while in use

	// Its dial: dialled is closed once the dial is over, with dialErr
	// its error; state says whether the attempt it was dialled for let
	// go of it first.
	dialled chan struct{}
	dialErr error
	state   atomic.Int32

	// The attempt holding it.
	pooled  bool   // it was idle in the pool, not dialled for the attempt
	spoiled bool   // something may still touch it: never reuse it
	id      uint16 // the query's ID
}

// ErrWrongID is the error of an answer with another ID over TCP, where no
// late answer to an earlier query can arrive.
var ErrWrongID = errors.New("answer with another ID over TCP")

// Send writes the packed query wire to the upstream under a fresh random
// ID and returns the connection the answer will come on: a pooled one, or
// a new one that is dialled, until the deadline or until ctx is done, and
// written on in the background (see dial). wire is the query with its
// TCP length prefix left out, and its first two bytes get the ID. A pooled
// connection the upstream closed while idle is replaced by a fresh one.
func (p *Pool) Send(ctx context.Context, wire []byte, deadline time.Time) (*Conn, error) {
	id := queryID()
	binary.BigEndian.PutUint16(wire, id)
	for {
		c, err := p.get()
		if err != nil {
			return nil, err
		}
		if c == nil {
			c = &Conn{pool: p, slot: -1}
			c.prepare(id)
			p.dial(ctx, c, wire, deadline)
			return c, nil
		}
		c.prepare(id)
		c.SetWriteDeadline(deadline)
		if _, err := c.Write(wire); err != nil {
			p.discard(c)
			continue // the upstream closed it while idle
		}
		return c, nil
	}
}

// The states of a connection dialled for an attempt.
const (
	dialling  int32 = iota
	connected       // the dial is over, the attempt still holds it
	abandoned       // the attempt let go of it before the dial was over
)

// prepare sets the connection up for the attempt with query ID id.
func (c *Conn) prepare(id uint16) {
	c.id, c.spoiled = id, false
}

// waitDial waits for the connection's dial, at once over for a pooled
// one, until the deadline or until ctx (if not nil) is done, and returns
// its error.
func (c *Conn) waitDial(ctx context.Context, deadline time.Time) error {
	select {
	case <-c.dialled:
		return c.dialErr
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.dialled:
		return c.dialErr
	case <-t.C:
		return os.ErrDeadlineExceeded
	case <-ctx.Done(): // never, for context.Background
		return ctx.Err()
	}
}

// queryID returns a random query ID from the system's CSPRNG, as dns.Id
// does, without its allocation.
func queryID() uint16 {
	var b [2]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint16(b[:])
}

// Await reads the answer into buf, or into a buffer of its own if it may
// not fit, until the deadline or until the pool is closed. An answer
// with another ID is ErrWrongID: over TCP no late answer to an earlier
// query can arrive. A timeout leaves the attempt waiting: Await may be
// called again.
func (c *Conn) Await(buf []byte, deadline time.Time) ([]byte, error) {
	if err := c.waitDial(context.Background(), deadline); err != nil {
		return nil, err
	}
	c.SetReadDeadline(deadline)
	return c.read(buf)
}

// AwaitCtx is Await that also ends when ctx is done, with ctx's error.
// The wake-up is a read deadline in the past, set from another goroutine,
// which is why the connection is not reused after that.
func (c *Conn) AwaitCtx(ctx context.Context, buf []byte, deadline time.Time) ([]byte, error) {
	if err := c.waitDial(ctx, deadline); err != nil {
		return nil, err
	}
	c.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(aLongTimeAgo) })
	p, err := c.read(buf)
	if !stop() {
		c.spoiled = true
		if err != nil {
			err = ctx.Err()
		}
	}
	return p, err
}

// aLongTimeAgo is a deadline that has passed: it wakes a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// read reads until the attempt's answer, an error or the read deadline.
func (c *Conn) read(buf []byte) ([]byte, error) {
	p, err := c.readMessage(buf)
	if err != nil {
		return nil, err
	}
	if binary.BigEndian.Uint16(p) != c.id {
		return nil, ErrWrongID
	}
	return p, nil
}

// readMessage reads one message into buf, or into a buffer of its own if
// it may not fit: up to the size its length prefix says.
func (c *Conn) readMessage(buf []byte) ([]byte, error) {
	nc := c.Conn.Conn
	if len(buf) < 2 {
		buf = make([]byte, 2)
	}
	if _, err := io.ReadFull(nc, buf[:2]); err != nil {
		return nil, err
	}
	size := int(binary.BigEndian.Uint16(buf))
	if size > len(buf) {
		buf = make([]byte, size)
	}
	n, err := io.ReadFull(nc, buf[:size])
	if err != nil {
		return nil, err
	}
	if n < 12 {
		return nil, dns.ErrShortRead
	}
	return buf[:n], nil
}

// Done releases the connection after the attempt's last Await: back to
// the pool after a clean exchange; closed otherwise: the stream may still
// carry the answer, and a connection woken from another goroutine may be
// woken again. It reports whether err says that a pooled TCP
// connection had been closed by the upstream before we used it: then the
// query deserves another try, on the next connection.
func (c *Conn) Done(err error) (stale bool) {
	if c.state.CompareAndSwap(dialling, abandoned) || c.dialErr != nil {
		return false // the dial's goroutine lets go of it, or there is nothing to let go of
	}
	stale = c.pooled &&
		(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE))
	if err == nil && !c.spoiled {
		c.pool.put(c)
		return stale
	}
	c.pool.discard(c)
	return stale
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}
