// Package responder is a DNS upstream for benchmarks: it answers every query
// on any number of UDP ports of 127.0.0.1, in place and without allocating,
// so that what a benchmark counts (CPU, allocations) is the forwarder's.
//
// An A query of class IN gets one A record with the responder's IP, TTL 30,
// any other query an empty NOERROR answer (NODATA), as a resolver answers
// the NS probes of health checks; a query with an additional record gets an
// EDNS0 OPT record back (payload 1232). Anything that is not a query with
// one question gets FORMERR, a response is dropped.
package responder

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Responder answers on its UDP ports until it is closed.
type Responder struct {
	ip      [4]byte
	conns   []*net.UDPConn
	wg      sync.WaitGroup
	queries atomic.Int64
}

// Start listens on n UDP ports of 127.0.0.1 picked by the kernel and answers A queries with ip.
func Start(n int, ip netip.Addr) (*Responder, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("responder: answer IP %v is not IPv4", ip)
	}
	r := &Responder{ip: ip.As4()}
	for range n {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 0)))
		if err != nil {
			r.Close()
			return nil, err
		}
		c.SetReadBuffer(4 << 20)
		c.SetWriteBuffer(4 << 20)
		r.conns = append(r.conns, c)
		r.wg.Go(func() { r.serve(c) })
	}
	return r, nil
}

// Addrs returns the responder's addresses, host:port, in the order they were opened.
func (r *Responder) Addrs() []string {
	addrs := make([]string, len(r.conns))
	for i, c := range r.conns {
		addrs[i] = c.LocalAddr().String()
	}
	return addrs
}

// Queries returns how many queries the responder has answered.
func (r *Responder) Queries() int64 { return r.queries.Load() }

// Close stops answering and waits until every port is closed.
func (r *Responder) Close() error {
	errs := make([]error, 0, len(r.conns))
	for _, c := range r.conns {
		errs = append(errs, c.Close())
	}
	r.wg.Wait()
	return errors.Join(errs...)
}

// maxQuery is the longest query read; an answer adds answerLen and optLen to it.
const maxQuery = 512

// serve answers the queries on c until it is closed.
func (r *Responder) serve(c *net.UDPConn) {
	buf := make([]byte, maxQuery+answerLen+optLen)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf[:maxQuery])
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		if out := Answer(buf, n, r.ip); out != nil {
			r.queries.Add(1)
			c.WriteToUDPAddrPort(out, from)
		}
	}
}

// DNS wire constants for Answer.
const (
	headerLen = 12
	answerLen = 16 // a compressed name pointing at the question, type, class, TTL, RDLENGTH, 4 bytes of address
	optLen    = 11 // the root name, type OPT, payload size, extended rcode and flags, RDLENGTH 0
	typeA     = 1
	typeOPT   = 41
	classIN   = 1
	rcodeForm = 1
	ednsSize  = 1232
	ttl       = 30
)

// Answer turns the query in buf[:n] into its answer in place and returns it; buf must have
// room for answerLen+optLen bytes beyond the query's question. It returns nil for a response
// or a message too short to answer.
func Answer(buf []byte, n int, ip [4]byte) []byte {
	if n < headerLen || buf[2]&0x80 != 0 || len(buf) < n+answerLen+optLen {
		return nil
	}
	// QR set, opcode and RD kept; RA set; AA, TC and the rcode cleared.
	buf[2] = buf[2]&0x79 | 0x80
	buf[3] = 0x80
	qdcount := binary.BigEndian.Uint16(buf[4:])
	edns := binary.BigEndian.Uint16(buf[10:]) > 0
	clear(buf[6:headerLen])
	end, ok := questionEnd(buf[:n])
	if qdcount != 1 || buf[2]&0x78 != 0 || !ok {
		buf[3] |= rcodeForm
		binary.BigEndian.PutUint16(buf[4:], 0)
		return buf[:headerLen]
	}
	out := buf[:end]
	qtype, qclass := binary.BigEndian.Uint16(buf[end-4:]), binary.BigEndian.Uint16(buf[end-2:])
	if qtype == typeA && qclass == classIN {
		binary.BigEndian.PutUint16(buf[6:], 1)
		out = binary.BigEndian.AppendUint16(out, 0xc000|headerLen)
		out = binary.BigEndian.AppendUint16(out, typeA)
		out = binary.BigEndian.AppendUint16(out, classIN)
		out = binary.BigEndian.AppendUint32(out, ttl)
		out = binary.BigEndian.AppendUint16(out, 4)
		out = append(out, ip[:]...)
	}
	if edns {
		binary.BigEndian.PutUint16(buf[10:], 1)
		out = append(out, 0)
		out = binary.BigEndian.AppendUint16(out, typeOPT)
		out = binary.BigEndian.AppendUint16(out, ednsSize)
		out = binary.BigEndian.AppendUint32(out, 0)
		out = binary.BigEndian.AppendUint16(out, 0)
	}
	return out
}

// questionEnd returns the offset just past the first question of msg: an
// uncompressed name, type and class.
func questionEnd(msg []byte) (int, bool) {
	i := headerLen
	for {
		if i >= len(msg) {
			return 0, false
		}
		l := int(msg[i])
		i++
		if l == 0 {
			break
		}
		if l&0xc0 != 0 || i+l > len(msg) || i-headerLen > 255 {
			return 0, false
		}
		i += l
	}
	if i+4 > len(msg) {
		return 0, false
	}
	return i + 4, true
}
