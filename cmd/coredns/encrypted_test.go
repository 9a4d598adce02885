package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"
	"github.com/upstreamtier/upstreamtier/internal/testcert"

	"github.com/miekg/dns"
)

// upstreamName is the name in the certificate of the encrypted upstreams.
const upstreamName = "upstream.upstreamtier.test"

// encryptedAnswer is what the encrypted upstreams answer to every A query.
var encryptedAnswer = net.IPv4(192, 0, 2, 53)

// testCerts writes a fresh CA and a server certificate for name, signed
// by it, into dir; it returns the paths of the CA, the certificate and its
// key.
func testCerts(t *testing.T, dir, name string) (ca, cert, key string) {
	t.Helper()
	issuer, err := testcert.NewIssuer("upstreamtier test CA")
	if err != nil {
		t.Fatal(err)
	}
	ca = filepath.Join(dir, "ca.pem")
	if err := issuer.WriteCA(ca); err != nil {
		t.Fatal(err)
	}
	p, err := issuer.WritePair(dir, "server", name)
	if err != nil {
		t.Fatal(err)
	}
	return ca, p.Cert, p.Key
}

// encryptedUpstreams returns server blocks of CoreDNS's own DoT, DoH and
// DoQ servers on free ports of 127.0.0.1, each answering A queries with
// encryptedAnswer and the health check's ". NS"; and their addresses by
// scheme.
func encryptedUpstreams(t *testing.T, cert, key string) (corefile string, addrs map[string]string) {
	t.Helper()
	addrs = map[string]string{}
	var b strings.Builder
	for _, scheme := range []string{"tls", "https", "quic"} {
		addr := freeAddr(t)
		addrs[scheme] = addr
		_, port, _ := net.SplitHostPort(addr)
		fmt.Fprintf(&b, `%s://.:%s {
    bind 127.0.0.1
    tls %s %s
    template IN A . {
        answer "{{ .Name }} 60 IN A %s"
    }
    template IN NS . {
        answer ". 60 IN NS ns.upstreamtier.test."
    }
}
`, scheme, port, cert, key, encryptedAnswer)
	}
	return b.String(), addrs
}

// expectAnswers sends 20 queries to addr and wants each answered with ip.
func expectAnswers(t *testing.T, addr string, ip net.IP) {
	t.Helper()
	for i := range 20 {
		m := exchange(t, addr, fmt.Sprintf("q%d.example.org", i), dns.TypeA)
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || !m.Answer[0].(*dns.A).A.Equal(ip) {
			t.Fatalf("query %d: want %s, got %v", i, ip, m)
		}
	}
}

// DoT, DoH (POST and GET) and DoQ upstreams, served by CoreDNS itself over
// real sockets, answer through upstreamtier with certificates verified
// against the upstream's server name, given either way.
func TestEncryptedUpstreams(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testCerts(t, dir, upstreamName)
	upstreams, addrs := encryptedUpstreams(t, cert, key)
	cases := []struct{ name, tier string }{
		{"tls", fmt.Sprintf("tier enc tls://%s { tls %s\n tls_servername %s\n }", addrs["tls"], ca, upstreamName)},
		{"https POST", fmt.Sprintf("tier enc https://%s { tls %s\n tls_servername %s\n }", addrs["https"], ca, upstreamName)},
		{"https GET", fmt.Sprintf("tier enc https://%s { tls %s\n tls_servername %s\n doh_method GET\n }", addrs["https"], ca, upstreamName)},
		{"https %name", fmt.Sprintf("tier enc https://%s { tls %s\n }", strings.Replace(addrs["https"], ":", "%"+upstreamName+":", 1), ca)},
		{"quic", fmt.Sprintf("tier enc quic://%s { tls %s\n tls_servername %s\n }", addrs["quic"], ca, upstreamName)},
		{"quic %name", fmt.Sprintf("tier enc quic://%s { tls %s\n }", strings.Replace(addrs["quic"], ":", "%"+upstreamName+":", 1), ca)},
	}
	corefile := upstreams
	clients := map[string]string{}
	for _, c := range cases {
		block, addr := serverBlock(t, "    upstreamtier {\n        "+c.tier+"\n    }")
		corefile += block
		clients[c.name] = addr
	}
	startCoreDNS(t, corefile)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectAnswers(t, clients[c.name], encryptedAnswer)
		})
	}
}

// An encrypted tier whose certificate does not verify, or that takes
// queries and never answers, fails over to the next tier with no query
// lost; the certificate is never skipped.
func TestEncryptedTierFailsOver(t *testing.T) {
	dir := t.TempDir()
	ca, cert, key := testCerts(t, dir, upstreamName)
	upstreams, addrs := encryptedUpstreams(t, cert, key)
	tier2 := startUpstream(t, faultdns.OK)
	silentTCP, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silentTCP.Close()
	go func() {
		for {
			c, err := silentTCP.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	silentUDP, err := net.ListenPacket("udp", "127.0.0.1:0") // reads, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silentUDP.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := silentUDP.ReadFrom(buf); err != nil {
				return
			}
		}
	}()

	cases := []struct{ name, tier1 string }{
		{"https wrong name", fmt.Sprintf("https://%s { tls %s\n tls_servername other.upstreamtier.test\n }", addrs["https"], ca)},
		{"quic wrong name", fmt.Sprintf("quic://%s { tls %s\n tls_servername other.upstreamtier.test\n }", addrs["quic"], ca)},
		{"tls wrong name", fmt.Sprintf("tls://%s { tls %s\n tls_servername other.upstreamtier.test\n }", addrs["tls"], ca)},
		{"https untrusted CA", fmt.Sprintf("https://%s%%%s", addrs["https"], upstreamName)},
		{"https blackholed", fmt.Sprintf("https://%s { tls %s\n tls_servername %s\n }", silentTCP.Addr(), ca, upstreamName)},
		{"dns blackholed", silentUDP.LocalAddr().String()},
		{"quic blackholed", fmt.Sprintf("quic://%s { tls %s\n tls_servername %s\n }", silentUDP.LocalAddr(), ca, upstreamName)},
	}
	corefile := upstreams
	clients := map[string]string{}
	for _, c := range cases {
		block, addr := serverBlock(t, fmt.Sprintf("    upstreamtier {\n        tier enc %s\n        tier plain %s\n    }", c.tier1, tier2.Addr()))
		corefile += block
		clients[c.name] = addr
	}
	startCoreDNS(t, corefile)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expectAnswers(t, clients[c.name], tier2.AnswerIP())
		})
	}
}
