package upstreamtier

import (
	"context"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// A UDP socket whose attempt timed out goes back to the pool: the late
// answer that then arrives is skipped by the next attempt on it, for its
// ID, and that attempt gets its own answer without a dial.
func TestTimedOutUDPSocketKept(t *testing.T) {
	up := startUpstreams(t, 1)
	pool := &connPool{addr: up[0].Addr(), proto: "udp"}
	defer pool.close()
	q := newClientQuery("www.example.org", dns.TypeA)
	wire, _ := q.Pack()
	pkt := newPacket(wire, 1232, q.Question[0])

	up[0].SetMode(faultdns.Slow)
	up[0].SetDelay(200 * time.Millisecond)
	ctx := context.Background()
	a, err := pool.send(ctx, pkt, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	waitQueries(t, up[0], 1)
	_, err = a.await(time.Now()) // gives up before the answer
	if !isTimeout(err) {
		t.Fatalf("want a timeout, got %v", err)
	}
	a.done(err)

	// The late answer arrives while the next attempt waits for its own.
	up[0].SetDelay(400 * time.Millisecond)
	m, err := pool.exchange(ctx, pkt, time.Now().Add(time.Minute))
	if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Fatalf("second exchange: %v %v", m, err)
	}
	if n := pool.dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1: the timed-out socket was not kept", n)
	}
}
