package upstreamtier

import (
	"maps"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// sourceRecorder is an upstream on 127.0.0.1 that answers every query and
// records the address each came from.
type sourceRecorder struct {
	mu   sync.Mutex
	from map[string]int // "udp 127.0.0.2" → queries
	addr string
}

func startSourceRecorder(t *testing.T) *sourceRecorder {
	t.Helper()
	r := &sourceRecorder{from: map[string]int{}}
	pc, l := listenUDPTCP(t)
	r.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		ap, _ := netip.ParseAddrPort(w.RemoteAddr().String())
		r.mu.Lock()
		r.from[w.RemoteAddr().Network()+" "+ap.Addr().String()]++
		r.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Qtype == dns.TypeA {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 7)}}
		}
		w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: l, Handler: h}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return r
}

// listenUDPTCP listens on one port of 127.0.0.1 over UDP and TCP. The
// kernel picks a free UDP port, which another process may hold over TCP:
// then another.
func listenUDPTCP(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
	}
	t.Fatal("no port of 127.0.0.1 free over both UDP and TCP in 20 tries")
	return nil, nil
}

func (r *sourceRecorder) sources() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	maps.Copy(m, r.from)
	return m
}

// With source_address, client queries over UDP and TCP and the probes
// all leave from that address.
func TestSourceAddress(t *testing.T) {
	up := startSourceRecorder(t)
	ut := newPlugin(t, "upstreamtier {\n tier site "+up.addr+"\n source_address 127.0.0.2\n}")
	for _, tcp := range []bool{false, true} {
		q := newClientQuery("www.example.org", dns.TypeA)
		if m, err := serve(t, ut, q, tcp); err != nil || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("tcp=%t: %v %v", tcp, m, err)
		}
	}
	if cause := ut.tiers[0].upstreams()[0].reachProbe(probeStandby); cause != nil {
		t.Fatal(cause)
	}
	got := up.sources()
	for k := range got {
		if k != "udp 127.0.0.2" && k != "tcp 127.0.0.2" {
			t.Errorf("queries from %s: want every query from 127.0.0.2 (%v)", k, got)
		}
	}
	if got["udp 127.0.0.2"] < 2 || got["tcp 127.0.0.2"] != 1 {
		t.Errorf("from 127.0.0.2: %v, want the UDP query and the probe over UDP, the TCP query over TCP", got)
	}
}

// A source address this machine does not have is refused at startup: no
// query could be sent. Checking binds a socket and sends nothing.
func TestSourceAddressNotLocal(t *testing.T) {
	if err := checkSource(net.ParseIP("127.0.0.2")); err != nil {
		t.Fatalf("127.0.0.2: %v", err)
	}
	if err := checkSource(net.ParseIP("192.0.2.1")); err == nil {
		t.Fatal("192.0.2.1 accepted as a source address of this machine")
	}
}
