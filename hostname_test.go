package upstreamtier

import (
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/coredns/caddy"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// testAuth is a local authoritative server for the host names of
// upstreams: A records with a TTL of 1 s, the address switchable.
type testAuth struct {
	addr  string
	a     atomic.Pointer[net.IP]
	rcode atomic.Int32 // answer this rcode instead, when not NOERROR
}

func startAuth(t *testing.T, ip net.IP) *testAuth {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &testAuth{addr: pc.LocalAddr().String()}
	a.a.Store(&ip)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		switch {
		case a.rcode.Load() != dns.RcodeSuccess:
			m.Rcode = int(a.rcode.Load())
		case q.Name != "dns.test.":
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: *a.a.Load()}}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return a
}

// startUpstreamsOnePort starts an upstream on each of the addresses, all
// on one port, as the addresses of one host name are.
func startUpstreamsOnePort(t *testing.T, ips ...string) ([]*faultdns.Server, int) {
	t.Helper()
	for range 20 {
		first, err := faultdns.Start(ips[0] + ":0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(first.Addr())
		servers := []*faultdns.Server{first}
		for _, ip := range ips[1:] {
			s, err := faultdns.Start(net.JoinHostPort(ip, port))
			if err != nil {
				break
			}
			servers = append(servers, s)
		}
		if len(servers) == len(ips) {
			for _, s := range servers {
				t.Cleanup(func() { s.Close() })
			}
			var p int
			fmt.Sscan(port, &p)
			return servers, p
		}
		for _, s := range servers {
			s.Close()
		}
	}
	t.Fatal("no port free on every address")
	return nil, 0
}

// A host-name upstream follows its address: when the A record changes,
// queries move to the new address once the old record expires, and none is
// lost on the way.
func TestHostNameFollowsAddressChange(t *testing.T) {
	up, port := startUpstreamsOnePort(t, "127.0.0.2", "127.0.0.3")
	auth := startAuth(t, net.ParseIP("127.0.0.2"))
	ut := newPlugin(t, fmt.Sprintf(`upstreamtier {
		tier site dns.test:%d
		resolver %s
	}`, port, auth.addr))
	ut.startProbing()

	q := newClientQuery("www.example.org", dns.TypeA)
	m, err := serve(t, ut, q, false)
	if err != nil {
		t.Fatal(err)
	}
	expectFrom(t, q, m, up[0])

	auth.a.Store(&[]net.IP{net.ParseIP("127.0.0.3")}[0])
	for i := 0; up[1].Queries() == 0; i++ { // until the new address gets the queries
		q := newClientQuery(fmt.Sprintf("q%d.example.org", i), dns.TypeA)
		m, err := serve(t, ut, q, false)
		if err != nil || m.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d lost while the address changed: %v %v", i, err, m)
		}
		if i > 1e6 {
			t.Fatal("the new address was never used") // a hang detector, not a timing assertion
		}
	}
	before := up[0].Queries()
	for i := range 20 {
		q := newClientQuery(fmt.Sprintf("after%d.example.org", i), dns.TypeA)
		m, err := serve(t, ut, q, false)
		if err != nil {
			t.Fatal(err)
		}
		expectFrom(t, q, m, up[1])
	}
	if n := up[0].Queries() - before; n != 0 {
		t.Errorf("the old address still got %d queries", n)
	}
	if got := ut.tiers[0].upstreams(); len(got) != 1 || got[0].addr != net.JoinHostPort("127.0.0.3", fmt.Sprint(port)) {
		t.Errorf("tier upstreams %v, want only 127.0.0.3", got)
	}
}

// A lookup that fails after startup keeps the last good addresses, and
// says so in a metric.
func TestHostNameKeepsAddressesWhenLookupFails(t *testing.T) {
	up, port := startUpstreamsOnePort(t, "127.0.0.4")
	auth := startAuth(t, net.ParseIP("127.0.0.4"))
	ut := newPlugin(t, fmt.Sprintf(`upstreamtier {
		tier site dns.test:%d
		resolver %s
	}`, port, auth.addr))
	ut.state.server = "dns://hostname-test"
	auth.rcode.Store(dns.RcodeServerFailure)
	ut.startProbing()
	failures := resolveFailures.WithLabelValues(ut.state.server, "site", "dns.test.")
	for i := 0; testutil.ToFloat64(failures) == 0; i++ {
		q := newClientQuery(fmt.Sprintf("q%d.example.org", i), dns.TypeA)
		m, err := serve(t, ut, q, false)
		if err != nil {
			t.Fatal(err)
		}
		expectFrom(t, q, m, up[0])
	}
	q := newClientQuery("www.example.org", dns.TypeA)
	m, err := serve(t, ut, q, false)
	if err != nil {
		t.Fatal(err)
	}
	expectFrom(t, q, m, up[0])
}

// A host name that does not resolve at startup is an error naming its
// line; so is one that resolves to an upstream of another tier.
func TestHostNameStartupErrors(t *testing.T) {
	auth := startAuth(t, net.ParseIP("127.0.0.5"))
	tests := []struct {
		stanza, want string
	}{
		{`upstreamtier {
			tier site 127.0.0.1:1
			tier isp nowhere.test
			resolver %s
		}`, "Testfile:3 - Error during parsing: tier \"isp\": host name nowhere.test. does not resolve: NXDOMAIN"},
		{`upstreamtier {
			tier site 127.0.0.5
			tier isp dns.test
			resolver %s
		}`, "Testfile:3 - Error during parsing: tier \"isp\": host name dns.test. resolves to 127.0.0.5, already an upstream of tier \"site\""},
	}
	for _, tc := range tests {
		c := caddy.NewTestController("dns", fmt.Sprintf(tc.stanza, auth.addr))
		ut, err := parseUpstreamTier(c)
		if err != nil {
			t.Fatal(err)
		}
		err = ut.OnStartup()
		ut.OnShutdown()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("startup error %v, want %q", err, tc.want)
		}
	}
}
