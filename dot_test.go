package upstreamtier

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dotServerName is the name in the certificate of the test DoT upstream.
const dotServerName = "dot.upstreamtier.test"

// dotAnswer is what the DoT upstream answers to every A query.
var dotAnswer = net.IPv4(198, 51, 100, 53)

// startDoT starts a DNS-over-TLS upstream on 127.0.0.1 whose certificate,
// valid from notBefore to notAfter, is signed by a fresh CA. It returns the
// upstream's address and the path of the CA's PEM file.
func startDoT(tb testing.TB, notBefore, notAfter time.Time) (addr, caFile string) {
	tb.Helper()
	return startDoTServer(tb, notBefore, notAfter, func(*dns.Server) {})
}

// startDoTServer is startDoT with a server that configure may change
// before it starts.
func startDoTServer(tb testing.TB, notBefore, notAfter time.Time, configure func(*dns.Server)) (addr, caFile string) {
	tb.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "upstreamtier test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dotServerName},
		DNSNames:     []string{dotServerName},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}

	caFile = filepath.Join(tb.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		tb.Fatal(err)
	}

	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		tb.Fatal(err)
	}
	srv := &dns.Server{Listener: l, Net: "tcp-tls", Handler: dns.HandlerFunc(answerDoT)}
	configure(srv)
	go srv.ActivateAndServe()
	tb.Cleanup(func() { srv.Shutdown() })
	return l.Addr().String(), caFile
}

// answerDoT answers as the test DoT upstream does: dotAnswer to every
// query, truncated for names under tc.
func answerDoT(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	if strings.HasPrefix(r.Question[0].Name, "tc.") { // a truncated answer, which DoT never needs
		m.Truncated = true
		w.WriteMsg(m)
		return
	}
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: dotAnswer}}
	w.WriteMsg(m)
}

func TestDoT(t *testing.T) {
	valid := func() (time.Time, time.Time) { return time.Now().Add(-time.Hour), time.Now().Add(time.Hour) }
	expired := func() (time.Time, time.Time) { return time.Now().Add(-2 * time.Hour), time.Now().Add(-time.Hour) }
	tests := []struct {
		name     string
		validity func() (time.Time, time.Time)
		tier     string // the DoT tier; %[1]s is the upstream's address, %[2]s the CA file
		verified bool   // whether the DoT upstream's answer must be accepted
	}{
		{"verified with CA", valid, "tier dot tls://%[1]s {\n tls %[2]s\n tls_servername " + dotServerName + "\n }", true},
		{"server name in TO", valid, `tier dot tls://%[1]s {
			tls %[2]s
		}`, true},
		{"unknown CA", valid, "tier dot tls://%[1]s {\n tls_servername " + dotServerName + "\n }", false},
		{"wrong server name", valid, `tier dot tls://%[1]s {
			tls %[2]s
			tls_servername wrong.example
		}`, false},
		{"expired certificate", expired, "tier dot tls://%[1]s {\n tls %[2]s\n tls_servername " + dotServerName + "\n }", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			notBefore, notAfter := tc.validity()
			addr, caFile := startDoT(t, notBefore, notAfter)
			if tc.name == "server name in TO" {
				host, port, _ := net.SplitHostPort(addr)
				addr = host + "%%" + dotServerName + ":" + port // %% survives newPlugin's Sprintf
			}
			fallback := startUpstreams(t, 1)[0]
			stanza := "upstreamtier {\n" + fmt.Sprintf(tc.tier, addr, caFile) + "\n tier fallback %s\n attempt_timeout 1s\n}"
			ut := newPlugin(t, stanza, fallback)

			q := newClientQuery("www.example.org", dns.TypeA)
			m, err := serve(t, ut, q, false)
			if err != nil {
				t.Fatal(err)
			}
			if tc.verified {
				if got := answerIP(t, m); !got.Equal(dotAnswer) {
					t.Fatalf("answer %s, want %s from the DoT upstream", got, dotAnswer)
				}
				return
			}
			expectFrom(t, q, m, fallback)
		})
	}
}

// A truncated answer from a DoT upstream in a prefer_udp tier (prefer_udp
// is for its plain upstream) is passed on as it is: there is no plain TCP
// to retry over.
func TestDoTTruncatedPreferUDP(t *testing.T) {
	addr, caFile := startDoT(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	plain := startUpstreams(t, 1)[0]
	ut := newPlugin(t, fmt.Sprintf(`upstreamtier {
		tier dot tls://%s %%s {
			tls %s
			tls_servername %s
			prefer_udp
			policy sequential
		}
	}`, addr, caFile, dotServerName), plain)
	q := newClientQuery("tc.example.org", dns.TypeA)
	m, err := serve(t, ut, q, false)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || m.Id != q.Id {
		t.Fatalf("want the truncated answer, got\n%s", m)
	}
}

// A DoT tier whose server takes connections and never finishes the TLS
// handshake (hung, while its kernel still accepts) is hedged at the
// attempt's first checkpoint, as a silent plain upstream is: the dial and
// handshake do not hold the query until the attempt's deadline.
func TestDoTHungHandshakeHedges(t *testing.T) {
	addr, accepted := silentTCP(t)
	fallback := startUpstreams(t, 1)[0]
	ut := newPlugin(t, "upstreamtier {\n tier site tls://"+addr+"%%"+dotServerName+"\n tier fallback %s\n timeout 30s\n attempt_timeout 30s\n}", fallback)
	for i := range 3 {
		q := newClientQuery(fmt.Sprintf("www%d.example.org", i), dns.TypeA)
		var m *dns.Msg
		within(t, "a query to a hung DoT tier", func() { m, _ = serve(t, ut, q, false) })
		expectFrom(t, q, m, fallback)
	}
	select {
	case <-accepted:
	default:
		t.Fatal("the DoT tier was never dialled")
	}
}
