package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// loadZone is the zone the resolvers scenario's load names are under; every other name is a probe.
const loadZone = "bench.test."

// relayTimeout is how long a relay waits for its upstream's answer: longer than any
// client waits, so a relay never drops an answer a client would still take.
const relayTimeout = 5 * time.Second

// queryCounts counts the queries a relay received, load names apart from probes.
type queryCounts struct {
	load  atomic.Int64 // names under loadZone: the clients' queries
	probe atomic.Int64 // anything else: health checks (". NS", a.root-servers.net.) and readiness probes
}

// countSnapshot is queryCounts at one moment, so a run can take differences.
type countSnapshot struct{ load, probe int64 }

// add counts one query for name.
func (c *queryCounts) add(name string) {
	if isLoadName(name) {
		c.load.Add(1)
	} else {
		c.probe.Add(1)
	}
}

// snapshot returns the counts so far.
func (c *queryCounts) snapshot() countSnapshot {
	return countSnapshot{c.load.Load(), c.probe.Load()}
}

// sub returns the queries counted between earlier and s.
func (s countSnapshot) sub(earlier countSnapshot) countSnapshot {
	return countSnapshot{s.load - earlier.load, s.probe - earlier.probe}
}

// isLoadName reports whether name is under loadZone (case-insensitively, as DNS names compare).
func isLoadName(name string) bool {
	name = strings.ToLower(dns.Fqdn(name))
	return name == loadZone || strings.HasSuffix(name, "."+loadZone)
}

// qname returns the question name of a wire-format query, lowercased.
func qname(wire []byte) (string, bool) {
	var m dns.Msg
	if m.Unpack(wire) != nil || len(m.Question) != 1 {
		return "", false
	}
	return strings.ToLower(m.Question[0].Name), true
}

// relay passes DNS messages between its clients and one upstream over UDP and TCP,
// unchanged, counting the queries and holding each for delay(name) first.
// The resolvers scenario uses it as the counting front of each resolver and,
// with a delay, as the slow authoritative servers behind all of them.
type relay struct {
	upstream string
	delay    func(name string) time.Duration // nil forwards at once
	counts   queryCounts
	pc       net.PacketConn
	ln       net.Listener
	mu       sync.Mutex
	conns    map[net.Conn]struct{} // open TCP connections, closed with the relay
	closed   bool
	wg       sync.WaitGroup
}

// startRelay listens on addr (UDP and TCP) and relays to upstream.
func startRelay(addr, upstream string, delay func(string) time.Duration) (*relay, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, err
	}
	if u, ok := pc.(*net.UDPConn); ok {
		u.SetReadBuffer(4 << 20) // bursts of a few hundred queries must not be dropped here
	}
	r := &relay{upstream: upstream, delay: delay, pc: pc, ln: ln, conns: map[net.Conn]struct{}{}}
	r.wg.Go(r.serveUDP)
	r.wg.Go(r.serveTCP)
	return r, nil
}

// addr returns where the relay listens.
func (r *relay) addr() string { return r.pc.LocalAddr().String() }

// close stops the relay; queries still held are dropped.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.pc.Close()
	r.ln.Close()
	r.wg.Wait()
}

// hold counts the query and waits for its delay; it returns false for a message that is no query.
func (r *relay) hold(q []byte) bool {
	name, ok := qname(q)
	if !ok {
		return false
	}
	r.counts.add(name)
	if r.delay != nil {
		time.Sleep(r.delay(name))
	}
	return true
}

// serveUDP relays each datagram from its own goroutine, so a held query delays no other.
func (r *relay) serveUDP() {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, from, err := r.pc.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		q := slices.Clone(buf[:n])
		go func() {
			if !r.hold(q) {
				return
			}
			if ans, err := exchangeUDP(r.upstream, q); err == nil {
				r.pc.WriteTo(ans, from)
			}
		}()
	}
}

// exchangeUDP sends q to upstream from a socket of its own and returns the first answer.
func exchangeUDP(upstream string, q []byte) ([]byte, error) {
	c, err := net.Dial("udp", upstream)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(relayTimeout))
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, dns.MaxMsgSize)
	n, err := c.Read(buf)
	return buf[:n], err
}

// serveTCP accepts TCP clients, as a resolver falls back to TCP for a truncated answer.
func (r *relay) serveTCP() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.conns[c] = struct{}{}
		r.mu.Unlock()
		go r.serveConn(c)
	}
}

// serveConn relays every query on one TCP connection; answers go back as they come, as DNS over TCP allows.
func (r *relay) serveConn(c net.Conn) {
	defer func() {
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		c.Close()
	}()
	var wmu sync.Mutex
	for {
		q, err := readTCPMsg(c)
		if err != nil {
			return
		}
		go func() {
			if !r.hold(q) {
				return
			}
			ans, err := exchangeTCP(r.upstream, q)
			if err != nil {
				return
			}
			wmu.Lock()
			defer wmu.Unlock()
			writeTCPMsg(c, ans)
		}()
	}
}

// exchangeTCP sends q to upstream over a connection of its own and returns the answer.
func exchangeTCP(upstream string, q []byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", upstream, relayTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(relayTimeout))
	if err := writeTCPMsg(c, q); err != nil {
		return nil, err
	}
	return readTCPMsg(c)
}

// readTCPMsg reads one length-prefixed DNS message.
func readTCPMsg(c io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	m := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(c, m)
	return m, err
}

// writeTCPMsg writes m with its length prefix in one write.
func writeTCPMsg(c io.Writer, m []byte) error {
	out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(m)), uint16(len(m))) //nolint:gosec // G115: DNS messages fit 16 bits
	_, err := c.Write(append(out, m...))
	return err
}
