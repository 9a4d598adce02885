package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// nameSuffix is the zone every load query is under; the index goes in front of it.
const nameSuffix = ".bench.example."

// record is what happened to one query; times are nanoseconds since the run started.
type record struct {
	sent  int64
	recv  atomic.Int64 // 0 while unanswered; written last by the reader
	rcode int8
	tier  int8 // 1, 2, ... from the answer's IP; 0 when the answer had no known IP
	wrong bool // a NOERROR answer to another question, or with an A record neither upstream gives
	// hasEDE and ede: the answer carried an Extended DNS Error (RFC 8914), and the first one's info code;
	// only answers to queries sent with EDNS0 (loadGen.edns) can.
	hasEDE bool
	ede    uint16
}

// latency returns the query's latency and whether it was answered within timeout.
func (r *record) latency(timeout time.Duration) (time.Duration, bool) {
	recv := r.recv.Load()
	if recv == 0 {
		return 0, false
	}
	d := time.Duration(recv - r.sent)
	return d, d <= timeout
}

// loadResult is one run of the generator: every query sent, in send order.
type loadResult struct {
	start   time.Time
	records []record
	elapsed time.Duration // from the first send to the last
	maxLag  time.Duration // worst delay of a batch behind its schedule
	sentN   atomic.Int64  // queries sent so far, so readers know which IDs are in use
}

// sendRate returns the achieved send rate, to show the generator kept up.
func (lr *loadResult) sendRate() float64 {
	if lr.elapsed <= 0 {
		return 0
	}
	return float64(len(lr.records)-1) / lr.elapsed.Seconds()
}

// loadGen sends unique A queries at a fixed rate over a few UDP sockets.
type loadGen struct {
	target  string
	rate    int
	sockets int
	timeout time.Duration
	tiers   map[string]int8 // answer IP -> tier number
	prefix  string          // keeps names unique across runs sharing a forwarder
	// nameOf, when set, names query i instead of name's default, e.g. to put a share of the load under another zone.
	nameOf func(i int) string
	// edns, when set, sends every query with an EDNS0 OPT record, so answers can carry an Extended DNS Error.
	edns bool
}

// batchEvery is the pacing tick; each tick sends what the schedule owes, so
// the rate holds without a goroutine or timer per query.
const batchEvery = 2 * time.Millisecond

// run sends queries for d, calls onStart with the start time once sending has begun,
// and returns after the last query has had its full timeout to be answered.
func (g *loadGen) run(d time.Duration, onStart func(time.Time)) (*loadResult, error) {
	n := int(d.Seconds() * float64(g.rate))
	if n < 2 {
		return nil, fmt.Errorf("a %v run at %d qps sends fewer than 2 queries", d, g.rate)
	}
	res := &loadResult{records: make([]record, n)}
	conns, err := g.dial()
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	res.start = time.Now()
	for k, c := range conns {
		wg.Go(func() { g.read(k, len(conns), c, res) })
	}
	if onStart != nil {
		onStart(res.start)
	}

	buf := make([]byte, 0, 512)
	tick := time.NewTicker(batchEvery)
	defer tick.Stop()
	next := 0
	for next < n {
		now := time.Since(res.start)
		due := min(n, int(now.Seconds()*float64(g.rate))+1)
		if lag := now - time.Duration(float64(next)/float64(g.rate)*float64(time.Second)); next < due && lag > res.maxLag {
			res.maxLag = lag
		}
		for ; next < due; next++ {
			buf = g.pack(buf[:0], next)
			res.records[next].sent = int64(time.Since(res.start))
			res.sentN.Store(int64(next + 1))
			// A failed write (e.g. ECONNREFUSED from an earlier ICMP) is just a lost query.
			conns[next%len(conns)].Write(buf)
		}
		if next < n {
			<-tick.C
		}
	}
	res.elapsed = time.Duration(res.records[n-1].sent - res.records[0].sent)

	// Answers later than the timeout count as lost, so there is no point waiting longer.
	time.Sleep(g.timeout + 100*time.Millisecond)
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return res, nil
}

// dial opens the client sockets, with big receive buffers so bursts are not dropped by us.
func (g *loadGen) dial() ([]*net.UDPConn, error) {
	raddr, err := net.ResolveUDPAddr("udp", g.target)
	if err != nil {
		return nil, err
	}
	conns := make([]*net.UDPConn, 0, g.sockets)
	for range g.sockets {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return nil, err
		}
		c.SetReadBuffer(4 << 20)
		c.SetWriteBuffer(4 << 20)
		conns = append(conns, c)
	}
	return conns, nil
}

// pack appends the wire form of query i to buf: q<i>.<prefix>bench.example. A, RD set.
func (g *loadGen) pack(buf []byte, i int) []byte {
	m := dns.Msg{}
	m.SetQuestion(g.name(i), dns.TypeA)
	m.Id = uint16(i) // #nosec G115 -- IDs wrap; an answer is matched by socket and ID, then its question checked
	if g.edns {
		m.SetEdns0(1232, false)
	}
	out, _ := m.PackBuffer(buf)
	return out
}

// name returns query i's name, q<i>.<prefix>bench.example. unless nameOf says otherwise.
func (g *loadGen) name(i int) string {
	if g.nameOf != nil {
		return g.nameOf(i)
	}
	return "q" + strconv.Itoa(i) + "." + g.prefix + nameSuffix[1:]
}

// read records every answer on c, socket k of n, until c is closed.
func (g *loadGen) read(k, n int, c *net.UDPConn, res *loadResult) {
	buf := make([]byte, 65535)
	for {
		size, err := c.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue // ICMP errors surface here as ECONNREFUSED; keep reading
		}
		now := int64(time.Since(res.start))
		var m dns.Msg
		if m.Unpack(buf[:size]) != nil {
			continue
		}
		// As a stub resolver does: the socket and ID say which query this answers.
		i := query(k, n, m.Id, int(res.sentN.Load()))
		if i < 0 {
			continue
		}
		r := &res.records[i]
		if r.recv.Load() != 0 {
			continue // a duplicate answer
		}
		r.rcode = int8(m.Rcode) // #nosec G115 -- rcodes in the header fit
		r.tier = g.tierOf(&m)
		r.wrong = m.Rcode == dns.RcodeSuccess && !g.right(&m, i)
		r.ede, r.hasEDE = firstEDE(&m)
		r.recv.Store(now)
	}
}

// firstEDE returns the info code of m's first Extended DNS Error, if it has one.
func firstEDE(m *dns.Msg) (uint16, bool) {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				return e.InfoCode, true
			}
		}
	}
	return 0, false
}

// query returns the most recent of the first sent queries that went out on socket k of n with ID id, or -1.
// IDs repeat every 65536 queries, half a minute at 2000 qps, long after the client timeout.
func query(k, n int, id uint16, sent int) int {
	const ids = 1 << 16
	if sent <= int(id) {
		return -1
	}
	for i := int(id) + (sent-1-int(id))/ids*ids; i >= 0; i -= ids {
		if i%n == k {
			return i
		}
	}
	return -1
}

// right reports whether m answers query i's question and all its A records are the upstreams' IPs, at least one.
func (g *loadGen) right(m *dns.Msg, i int) bool {
	if len(m.Question) != 1 {
		return false
	}
	q := m.Question[0]
	if !strings.EqualFold(q.Name, g.name(i)) || q.Qtype != dns.TypeA || q.Qclass != dns.ClassINET {
		return false
	}
	as := 0
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			if _, known := g.tiers[a.A.String()]; !known {
				return false
			}
			as++
		}
	}
	return as > 0
}

// tierOf returns the tier whose upstream put its IP in the answer, 0 if none did.
func (g *loadGen) tierOf(m *dns.Msg) int8 {
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return g.tiers[a.A.String()]
		}
	}
	return 0
}

// probe asks target for name until a NOERROR answer arrives, so a run never starts before the forwarder can answer.
func probe(target string, wait time.Duration) error {
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	deadline := time.Now().Add(wait)
	var last error
	for i := 0; time.Now().Before(deadline); i++ {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("probe%d.ready.example.", i), dns.TypeA)
		r, _, err := c.Exchange(m, target)
		if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("answer %s", dns.RcodeToString[r.Rcode])
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering after %v: %v", target, wait, last)
}
