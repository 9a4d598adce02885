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
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/caddy/caddyfile"
	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/upstream"
)

// setupTestFiles writes the files some stanzas refer to into a temporary
// directory and returns a replacer for their placeholders:
//
//	@RESOLV@  a resolv.conf with nameservers 10.0.0.1 and 10.0.0.2
//	@EMPTY@   a resolv.conf without any nameserver
//	@CERT@    a self-signed certificate (PEM), usable as a CA too
//	@KEY@     the certificate's private key (PEM)
//	@NAMES@   a resolv.conf with a host name among its nameservers
func setupTestFiles(t *testing.T) *strings.Replacer {
	t.Helper()
	dir := t.TempDir()

	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("# test\nsearch example.org\nnameserver 10.0.0.1\nnameserver 10.0.0.2\noptions ndots:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("# no nameserver here\nsearch example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "upstreamtier test"},
		DNSNames:              []string{"dns.example"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "cert.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}

	names := filepath.Join(dir, "names.conf")
	if err := os.WriteFile(names, []byte("nameserver 10.0.0.1\nnameserver ns.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	return strings.NewReplacer("@RESOLV@", resolv, "@EMPTY@", empty, "@CERT@", cert, "@KEY@", keyFile, "@NAMES@", names)
}

func TestSetupInvalid(t *testing.T) {
	files := setupTestFiles(t)
	tests := []struct {
		desc  string
		input string
		line  int    // line the error must name
		want  string // substring of the error
	}{
		// Top-level properties.
		{"unknown top-level property", "upstreamtier {\n tier a 1.1.1.1\n foo bar\n}", 3, `unknown property "foo"; expected one of tier, except, failover, timeout, attempt_timeout`},
		{"no tier at all", "upstreamtier {\n timeout 2s\n}", 1, "no tier defined"},
		{"empty block", "upstreamtier {\n}", 1, "no tier defined"},
		{"no block", "upstreamtier", 1, "no tier defined"},
		{"invalid FROM zone", "upstreamtier exa..mple {\n tier a 1.1.1.1\n}", 1, `FROM "exa..mple" is not a valid zone`},
		{"except without zones", "upstreamtier {\n tier a 1.1.1.1\n except\n}", 3, "except needs at least one ZONE"},
		{"except with an invalid zone", "upstreamtier {\n tier a 1.1.1.1\n except exa..mple\n}", 3, `ZONE "exa..mple" is not a valid zone`},
		{"policy at the top", "upstreamtier {\n tier a 1.1.1.1\n policy random\n}", 3, "policy belongs in a tier's block"},
		{"force_tcp at the top", "upstreamtier {\n tier a 1.1.1.1\n force_tcp\n}", 3, "force_tcp belongs in a tier's block"},
		{"tls_servername at the top", "upstreamtier {\n tier a tls://1.1.1.1%x.example\n tls_servername x.example\n}", 3, "tls_servername belongs in a tier's block"},
		{"timeout twice", "upstreamtier {\n tier a 1.1.1.1\n timeout 2s\n timeout 3s\n}", 4, "timeout given twice"},
		{"failover twice", "upstreamtier {\n tier a 1.1.1.1\n failover SERVFAIL\n failover REFUSED\n}", 4, "failover given twice"},
		{"except twice", "upstreamtier {\n tier a 1.1.1.1\n except a.example\n except b.example\n}", 4, "except given twice"},
		{"two stanzas in one server block", "upstreamtier {\n tier a 1.1.1.1\n}\nupstreamtier {\n tier b 1.1.1.1\n}", 4, "only one upstreamtier stanza per server block"},

		// Health options.
		{"standby_probe without a duration", "upstreamtier {\n tier a 1.1.1.1\n standby_probe\n}", 3, "standby_probe needs one DURATION"},
		{"standby_probe not a duration", "upstreamtier {\n tier a 1.1.1.1\n standby_probe often\n}", 3, `standby_probe: "often" is not a duration`},
		{"standby_probe in a tier", "upstreamtier {\n tier a 1.1.1.1 {\n  standby_probe 10s\n }\n}", 3, "standby_probe belongs at the top of the upstreamtier block"},
		{"failover_memory without a duration", "upstreamtier {\n tier a 1.1.1.1\n failover_memory\n}", 3, "failover_memory needs a DURATION"},
		{"failover_memory bad size", "upstreamtier {\n tier a 1.1.1.1\n failover_memory 5s many\n}", 3, `failover_memory: SIZE "many" is not a number`},
		{"failover_memory zero size", "upstreamtier {\n tier a 1.1.1.1\n failover_memory 5s 0\n}", 3, `failover_memory: SIZE "0" is not a number`},
		{"failover_memory negative", "upstreamtier {\n tier a 1.1.1.1\n failover_memory -5s\n}", 3, "failover_memory must be positive"},
		{"failover_memory twice", "upstreamtier {\n tier a 1.1.1.1\n failover_memory 5s\n failover_memory off\n}", 4, "failover_memory given twice"},
		{"failover_memory in a tier", "upstreamtier {\n tier a 1.1.1.1 {\n  failover_memory 5s\n }\n}", 3, "failover_memory belongs at the top of the upstreamtier block"},

		// Durations.
		{"timeout not a duration", "upstreamtier {\n tier a 1.1.1.1\n timeout abc\n}", 3, `timeout: "abc" is not a duration`},
		{"timeout negative", "upstreamtier {\n tier a 1.1.1.1\n timeout -1s\n}", 3, "timeout must be positive, got -1s"},
		{"attempt_timeout zero", "upstreamtier {\n tier a 1.1.1.1\n attempt_timeout 0s\n}", 3, "attempt_timeout must be positive, got 0s"},
		{"timeout missing duration", "upstreamtier {\n tier a 1.1.1.1\n timeout\n}", 3, "timeout needs one DURATION"},
		{"timeout two durations", "upstreamtier {\n tier a 1.1.1.1\n timeout 1s 2s\n}", 3, "timeout needs one DURATION"},
		{"attempt_timeout missing duration", "upstreamtier {\n tier a 1.1.1.1\n attempt_timeout\n}", 3, "attempt_timeout needs one DURATION"},
		// A check across properties: reported at the line of the property.
		{"attempt_timeout longer than timeout", "upstreamtier {\n tier a 1.1.1.1\n timeout 2s\n attempt_timeout 3s\n}", 4, "attempt_timeout 3s is longer than timeout 2s"},
		{"attempt_timeout longer than default timeout", "upstreamtier {\n tier a 1.1.1.1\n attempt_timeout 5s\n}", 3, "attempt_timeout 5s is longer than timeout 4s (the default)"},

		// Failover.
		{"failover unknown rcode", "upstreamtier {\n tier a 1.1.1.1\n failover SERVFAIL BOGUS\n}", 3, `failover: "BOGUS" is not an rcode`},
		{"failover NOERROR", "upstreamtier {\n tier a 1.1.1.1\n failover SERVFAIL NOERROR\n}", 3, "failover: NOERROR is an answer, not a failure"},
		{"failover noerror lower case", "upstreamtier {\n tier a 1.1.1.1\n failover noerror\n}", 3, "failover: NOERROR is an answer, not a failure"},
		{"failover without rcodes", "upstreamtier {\n tier a 1.1.1.1\n failover\n}", 3, "failover needs at least one RCODE"},

		// The tier line.
		{"tier with a name only", "upstreamtier {\n tier a\n}", 2, "tier needs a NAME and at least one upstream"},
		{"tier without arguments", "upstreamtier {\n tier\n}", 2, "tier needs a NAME and at least one upstream"},
		{"tier with a name and a block only", "upstreamtier {\n tier a {\n  policy random\n }\n}", 2, "tier needs a NAME and at least one upstream"},
		{"tier name is an IP", "upstreamtier {\n tier 1.1.1.1 8.8.8.8\n}", 2, `tier name "1.1.1.1" is not valid`},
		{"tier name starts with a digit", "upstreamtier {\n tier 1site 1.1.1.1\n}", 2, `tier name "1site" is not valid`},
		{"tier name with a dot", "upstreamtier {\n tier si.te 1.1.1.1\n}", 2, `tier name "si.te" is not valid`},
		{"tier name is a transport URL", "upstreamtier {\n tier tls://1.1.1.1 8.8.8.8\n}", 2, `tier name "tls://1.1.1.1" is not valid`},
		{"duplicate tier name", "upstreamtier {\n tier a 1.1.1.1\n tier b 8.8.8.8\n tier a 9.9.9.9\n}", 4, `tier "a" defined twice`},
		{"duplicate tier name after a block", "upstreamtier {\n tier a 1.1.1.1 {\n  policy sequential\n }\n tier a 9.9.9.9\n}", 5, `tier "a" defined twice`},

		// Upstreams.
		{"not an IP", "upstreamtier {\n tier a not-an-ip\n}", 2, `tier "a": not-an-ip: not an IP address or file "not-an-ip"`},
		{"not an IP, tier with a block", "upstreamtier {\n tier a not-an-ip {\n  policy random\n }\n}", 2, `not an IP address or file "not-an-ip"`},
		{"duplicate upstream, tier with a block", "upstreamtier {\n tier a 1.1.1.1 1.1.1.1:53 {\n  policy random\n }\n}", 2, `upstream 1.1.1.1:53 listed twice`},
		{"server name without tls://", "upstreamtier {\n tier a 1.1.1.1%cloudflare-dns.com\n}", 2, `a server name (%name) is only for tls://, https:// and quic:// upstreams`},
		{"server name with dns://", "upstreamtier {\n tier a dns://1.1.1.1%x:53\n}", 2, `only for tls://, https:// and quic:// upstreams`},
		{"IPv4 out of range", "upstreamtier {\n tier a 300.1.1.1\n}", 2, `not an IP address or file "300.1.1.1"`},
		{"garbage after the upstreams", "upstreamtier {\n tier a 1.1.1.1 8.8.8.8 garbage\n}", 2, `tier "a": garbage: not an IP address or file "garbage"`},
		{"port zero", "upstreamtier {\n tier a 1.1.1.1:0\n}", 2, `port "0" is not a number between 1 and 65535`},
		{"port too large", "upstreamtier {\n tier a 1.1.1.1:99999\n}", 2, `port "99999" is not a number between 1 and 65535`},
		{"port not a number", "upstreamtier {\n tier a 1.1.1.1:abc\n}", 2, `port "abc" is not a number between 1 and 65535`},
		{"tls port too large", "upstreamtier {\n tier a tls://1.1.1.1%one.one.one.one:70000\n}", 2, `port "70000" is not a number between 1 and 65535`},
		{"https without a server name", "upstreamtier {\n tier a https://1.1.1.1\n}", 2, "https://1.1.1.1 has no server name to verify its certificate against: write https://IP%NAME"},
		{"quic without a server name", "upstreamtier {\n tier a quic://1.1.1.1\n}", 2, "quic://1.1.1.1 has no server name"},
		{"https with a path", "upstreamtier {\n tier a https://1.1.1.1%dns.quad9.net/dns-query\n}", 2, "a path is not allowed: DNS over HTTPS is asked at /dns-query"},
		{"https link-local", "upstreamtier {\n tier a https://[fe80::1%lo]:443\n}", 2, "link-local address fe80::1 cannot be a https:// upstream"},
		{"doh_method without https", "upstreamtier {\n tier a tls://1.1.1.1%x.example {\n  doh_method GET\n }\n}", 3, `tier "a": doh_method is for https:// upstreams, and the tier has none`},
		{"doh_method unknown", "upstreamtier {\n tier a https://1.1.1.1%x.example {\n  doh_method PUT\n }\n}", 3, "doh_method needs GET or POST"},
		{"doh_method at the top", "upstreamtier {\n tier a https://1.1.1.1%x.example\n doh_method GET\n}", 3, "doh_method belongs in a tier's block"},
		{"tls_servername for quic twice", "upstreamtier {\n tier a quic://1.1.1.1%x.example {\n  tls_servername y.example\n }\n}", 3, "server name given twice"},
		{"force_tcp with only encrypted upstreams", "upstreamtier {\n tier a https://1.1.1.1%x.example quic://1.0.0.1%x.example {\n  force_tcp\n }\n}", 3, "every upstream of the tier is tls://, https:// and quic://"},
		{"same DoH server twice", "upstreamtier {\n tier a https://1.1.1.1%x.example\n tier b https://1.1.1.1:443%y.example\n}", 3, `already in tier "a"`},

		// Connection options.
		{"source_address without an address", "upstreamtier {\n tier a 1.1.1.1\n source_address\n}", 3, "source_address needs one IP address"},
		{"source_address a name", "upstreamtier {\n tier a 1.1.1.1\n source_address eth0\n}", 3, `source_address "eth0" is not an IP address`},
		{"source_address unspecified", "upstreamtier {\n tier a 1.1.1.1\n source_address 0.0.0.0\n}", 3, "0.0.0.0 is the unspecified address"},
		{"source_address of the other family", "upstreamtier {\n tier a 1.1.1.1\n tier b [2001:db8::1]:53\n source_address 10.0.0.1\n}", 4, `source_address 10.0.0.1 cannot reach upstream [2001:db8::1]:53 of tier "b": the IP families differ`},
		{"source_address in a tier", "upstreamtier {\n tier a 1.1.1.1 {\n  source_address 10.0.0.1\n }\n}", 3, "source_address belongs at the top"},
		{"expire not a duration", "upstreamtier {\n tier a 1.1.1.1\n expire soon\n}", 3, `expire: "soon" is not a duration`},
		{"expire out of bounds", "upstreamtier {\n tier a 1.1.1.1\n expire 10ms\n}", 3, "expire 10ms is out of bounds: expected between 100ms and 1h0m0s"},
		{"max_age out of bounds", "upstreamtier {\n tier a 1.1.1.1\n max_age 48h\n}", 3, "max_age 48h0m0s is out of bounds"},
		{"max_age below expire", "upstreamtier {\n tier a 1.1.1.1\n max_age 5s\n expire 10s\n}", 3, "max_age 5s is shorter than expire 10s"},
		{"max_idle_conns negative", "upstreamtier {\n tier a 1.1.1.1\n max_idle_conns -1\n}", 3, `max_idle_conns: "-1" is not a number between 0 and 65535`},
		{"max_idle_conns twice", "upstreamtier {\n tier a 1.1.1.1\n max_idle_conns 1\n max_idle_conns 2\n}", 4, "max_idle_conns given twice"},
		{"grpc transport", "upstreamtier {\n tier a grpc://1.1.1.1\n}", 2, "transport grpc:// is not supported"},
		{"unix transport", "upstreamtier {\n tier a unix:///run/dns.sock\n}", 2, "transport unix:// is not supported"},
		{"missing resolv.conf", "upstreamtier {\n tier a /nonexistent/resolv.conf\n}", 2, `failed to open file "/nonexistent/resolv.conf"`},
		{"resolv.conf without nameservers", "upstreamtier {\n tier a @EMPTY@\n}", 2, "no nameservers found"},
		{"empty server name", "upstreamtier {\n tier a tls://1.1.1.1%\n}", 2, "tls://1.1.1.1%: empty server name after %"},
		{"empty server name before a port", "upstreamtier {\n tier a tls://1.1.1.1%:853\n}", 2, "empty server name after %"},
		{"duplicate upstream", "upstreamtier {\n tier a 1.1.1.1 8.8.8.8 1.1.1.1:53\n}", 2, `tier "a": upstream 1.1.1.1:53 listed twice`},
		{"duplicate upstream with dns://", "upstreamtier {\n tier a 1.1.1.1 dns://1.1.1.1\n}", 2, "upstream dns://1.1.1.1 listed twice"},
		{"duplicate tls upstream", "upstreamtier {\n tier a tls://1.1.1.1%a.example tls://1.1.1.1:853\n}", 2, "upstream tls://1.1.1.1:853 listed twice"},
		{"duplicate upstream from resolv.conf", "upstreamtier {\n tier a 10.0.0.2 @RESOLV@\n}", 2, "listed twice"},

		// The tier block.
		{"unknown tier property", "upstreamtier {\n tier a 1.1.1.1 {\n  foo\n }\n}", 3, `tier "a": unknown property "foo"; expected one of policy, except, tls, tls_servername, doh_method, force_tcp, prefer_udp`},
		{"unknown policy", "upstreamtier {\n tier a 1.1.1.1 {\n  policy fastest\n }\n}", 3, `unknown policy "fastest"; expected random, round_robin or sequential`},
		{"policy without argument", "upstreamtier {\n tier a 1.1.1.1 {\n  policy\n }\n}", 3, "policy needs one of random, round_robin, sequential"},
		{"policy with two arguments", "upstreamtier {\n tier a 1.1.1.1 {\n  policy random sequential\n }\n}", 3, "policy needs one of random, round_robin, sequential"},
		{"policy twice", "upstreamtier {\n tier a 1.1.1.1 {\n  policy random\n  policy sequential\n }\n}", 4, `tier "a": policy given twice`},
		{"except without zones in a tier", "upstreamtier {\n tier a 1.1.1.1 {\n  except\n }\n}", 3, "except needs at least one ZONE"},
		{"timeout in a tier", "upstreamtier {\n tier a 1.1.1.1 {\n  timeout 2s\n }\n}", 3, `timeout belongs at the top of the upstreamtier block, not in tier "a"`},
		{"failover in a tier", "upstreamtier {\n tier a 1.1.1.1 {\n  failover SERVFAIL\n }\n}", 3, `failover belongs at the top of the upstreamtier block, not in tier "a"`},
		{"tier in a tier", "upstreamtier {\n tier a 1.1.1.1 {\n  tier b 8.8.8.8\n }\n}", 3, `tier belongs at the top of the upstreamtier block, not in tier "a"`},
		{"force_tcp with an argument", "upstreamtier {\n tier a 1.1.1.1 {\n  force_tcp yes\n }\n}", 3, "force_tcp takes no arguments"},
		{"prefer_udp with an argument", "upstreamtier {\n tier a 1.1.1.1 {\n  prefer_udp yes\n }\n}", 3, "prefer_udp takes no arguments"},
		{"force_tcp and prefer_udp", "upstreamtier {\n tier a 1.1.1.1 {\n  force_tcp\n  prefer_udp\n }\n}", 4, `tier "a": force_tcp and prefer_udp contradict each other`},
		{"tls with four arguments", "upstreamtier {\n tier a tls://1.1.1.1 {\n  tls a b c d\n }\n}", 3, "tls takes at most CERT KEY CA"},
		{"tls with a missing certificate", "upstreamtier {\n tier a tls://1.1.1.1 {\n  tls /nonexistent/cert.pem /nonexistent/key.pem\n }\n}", 3, "tls: could not load TLS cert"},
		{"tls with a missing CA", "upstreamtier {\n tier a tls://1.1.1.1 {\n  tls /nonexistent/ca.pem\n }\n}", 3, "tls: error reading /nonexistent/ca.pem"},
		{"tls_servername without a name", "upstreamtier {\n tier a tls://1.1.1.1 {\n  tls_servername\n }\n}", 3, "tls_servername needs one NAME"},
		{"tls_servername with two names", "upstreamtier {\n tier a tls://1.1.1.1 {\n  tls_servername a.example b.example\n }\n}", 3, "tls_servername needs one NAME"},
		{"unclosed tier block", "upstreamtier {\n tier a 1.1.1.1 {\n  policy random\n", 3, `tier "a": block is not closed with '}'`},
		{"unclosed empty tier block", "upstreamtier {\n tier a 1.1.1.1 {", 2, `tier "a": block is not closed with '}'`},
		// Checks across the tier line and its block: reported at the
		// option's line, the message names the tier.
		{"tls options on a tier without tls://", "upstreamtier {\n tier a 1.1.1.1 8.8.8.8 {\n  tls\n }\n}", 3, `tier "a": tls is for tls://, https:// and quic:// upstreams, and the tier has none`},
		{"tls_servername on a tier without tls://", "upstreamtier {\n tier a 1.1.1.1 {\n  tls_servername one.one.one.one\n }\n}", 3, `tier "a": tls_servername is for tls://, https:// and quic:// upstreams, and the tier has none`},
		// The same server in two tiers, however it is written.
		{"same upstream in two tiers", "upstreamtier {\n tier a 1.1.1.1\n tier b 1.1.1.1 8.8.8.8\n}", 3, `tier "b": upstream 1.1.1.1 (1.1.1.1:53) is already in tier "a" on line 2`},
		{"same upstream in two tiers, with dns:// and the port", "upstreamtier {\n tier a 1.1.1.1\n tier b dns://1.1.1.1:53\n}", 3, `is already in tier "a" on line 2`},
		{"same upstream in two tiers, through a resolv.conf", "upstreamtier {\n tier a @RESOLV@\n tier b 10.0.0.2\n}", 3, `upstream 10.0.0.2 (10.0.0.2:53) is already in tier "a"`},
		{"same upstream in two tiers, both through resolv.conf", "upstreamtier {\n tier a 192.0.2.1\n tier b @RESOLV@ {\n  policy sequential\n }\n tier c @RESOLV@\n}", 6, `is already in tier "b" on line 3`},
		{"same IPv6 upstream in two tiers", "upstreamtier {\n tier a [2001:db8::1]:53\n tier b 2001:db8::1\n}", 3, `is already in tier "a"`},
		{"same upstream in two tiers, IPv4-mapped", "upstreamtier {\n tier a 1.1.1.1\n tier b [::ffff:1.1.1.1]:53\n}", 3, `is already in tier "a"`},
		{"same DoT upstream in two tiers", "upstreamtier {\n tier a tls://1.1.1.1%a.example\n tier b tls://1.1.1.1%b.example:853\n}", 3, `is already in tier "a"`},

		// Configurations that can never answer.
		{"except covers FROM", "upstreamtier example.org {\n tier a 1.1.1.1\n except example.org\n}", 3, "except example.org. covers all of FROM (example.org.)"},
		{"except above FROM", "upstreamtier sub.example.org other.example {\n tier a 1.1.1.1\n except example.org other.example\n}", 3, "covers all of FROM"},
		{"except outside FROM", "upstreamtier example.org {\n tier a 1.1.1.1\n except corp.example\n}", 3, "except corp.example. is outside FROM (example.org.): it changes nothing"},
		{"a tier except covers FROM", "upstreamtier example.org {\n tier a 1.1.1.1 {\n  except example.org\n }\n tier b 8.8.8.8\n}", 3, `tier "a": except example.org. covers all of FROM (example.org.): the tier would never be asked`},
		{"a tier except covers the last FROM zone", "upstreamtier a.example b.example {\n tier a 1.1.1.1\n tier b 8.8.8.8 {\n  policy random\n  except a.example b.example\n }\n}", 5, `tier "b": except a.example. b.example. covers all of FROM`},
		{"a tier except outside FROM", "upstreamtier example.org {\n tier a 1.1.1.1 {\n  except corp.example\n }\n}", 3, `tier "a": except corp.example. is outside FROM`},
		{"an upstream address as FROM", "upstreamtier . 10.0.0.1 {\n tier a 1.1.1.1\n}", 1, `FROM "10.0.0.1" is an upstream address, not a zone`},
		{"an upstream address and port as FROM", "upstreamtier 10.0.0.1:53 {\n tier a 1.1.1.1\n}", 1, `FROM "10.0.0.1:53" is an upstream address`},
		{"an IPv6 upstream as FROM", "upstreamtier . [2001:db8::1]:53 {\n tier a 1.1.1.1\n}", 1, "is an upstream address"},
		{"a URL as FROM", "upstreamtier . tls://1.1.1.1 {\n tier a 1.1.1.1\n}", 1, "is an upstream address"},
		{"a resolv.conf as FROM", "upstreamtier . /etc/resolv.conf {\n tier a 1.1.1.1\n}", 1, "is an upstream address"},

		// Durations with bounds.
		{"health_check 1ns", "upstreamtier {\n tier a 1.1.1.1\n health_check 1ns\n}", 3, "health_check 1ns is out of bounds: expected between 10ms and 1m0s"},
		{"health_check an hour", "upstreamtier {\n tier a 1.1.1.1\n health_check 1h domain example.org\n}", 3, "health_check 1h0m0s is out of bounds"},
		{"hedge 1ns", "upstreamtier {\n tier a 1.1.1.1\n hedge 1ns\n}", 3, "hedge 1ns is out of bounds: expected between 5ms and 30s"},
		{"attempt_timeout 1h", "upstreamtier {\n tier a 1.1.1.1\n timeout 2s\n attempt_timeout 1h\n}", 4, "attempt_timeout 1h0m0s is out of bounds: expected between 10ms and 30s"},
		{"attempt_timeout 1ns", "upstreamtier {\n tier a 1.1.1.1\n attempt_timeout 1ns\n}", 3, "attempt_timeout 1ns is out of bounds"},
		{"timeout 1h", "upstreamtier {\n tier a 1.1.1.1\n timeout 1h\n}", 3, "timeout 1h0m0s is out of bounds: expected between 50ms and 30s"},
		{"timeout 1ms", "upstreamtier {\n tier a 1.1.1.1\n timeout 1ms\n}", 3, "timeout 1ms is out of bounds"},
		{"standby_probe 1ms", "upstreamtier {\n tier a 1.1.1.1\n standby_probe 1ms\n}", 3, "standby_probe 1ms is out of bounds: expected between 1s and 24h0m0s"},
		{"failover_memory 1ns", "upstreamtier {\n tier a 1.1.1.1\n failover_memory 1ns 10\n}", 3, "failover_memory 1ns is out of bounds"},
		{"hedge longer than the default attempt_timeout", "upstreamtier {\n tier a 1.1.1.1\n hedge 3s\n timeout 5s\n}", 3, "hedge 3s is not shorter than attempt_timeout 2s (the default)"},
		{"hedge longer than attempt_timeout", "upstreamtier {\n tier a 1.1.1.1\n attempt_timeout 500ms\n hedge 1s\n}", 4, "hedge 1s is not shorter than attempt_timeout 500ms:"},
		{"hedge longer than a short timeout", "upstreamtier {\n hedge 500ms\n tier a 1.1.1.1\n timeout 300ms\n}", 2, "hedge 500ms is not shorter than attempt_timeout 300ms (the default)"},

		// IPv6 forms.
		{"unclosed bracket", "upstreamtier {\n tier a [::1:53\n}", 2, "[::1:53: unbalanced brackets"},
		{"unopened bracket", "upstreamtier {\n tier a ::1]:53\n}", 2, "unbalanced brackets"},
		{"double brackets", "upstreamtier {\n tier a [[::1]]:53\n}", 2, "unbalanced brackets"},
		{"text after the bracket", "upstreamtier {\n tier a [::1]53\n}", 2, "unbalanced brackets"},
		{"unbracketed IPv6 with a server name and port", "upstreamtier {\n tier a tls://::1%dns.example:853\n}", 2, "an IPv6 address with a port needs brackets: write tls://[::1]%dns.example:853"},
		{"link-local zone taken for a server name", "upstreamtier {\n tier a tls://fe80::1%eth0\n}", 2, "link-local address fe80::1 cannot be a tls:// upstream"},
		{"link-local without its interface", "upstreamtier {\n tier a fe80::1\n}", 2, "link-local address fe80::1 needs its interface: write [fe80::1%eth0]:53"},
		{"link-local with a port, without its interface", "upstreamtier {\n tier a [fe80::1]:5353\n}", 2, "needs its interface"},
		{"a zone on a global IPv6 address", "upstreamtier {\n tier a 2001:db8::1%eth0\n}", 2, "a %zone only for link-local IPv6 addresses"},

		{"a zone that is no interface", "upstreamtier {\n tier a [fe80::1%nosuchif0]:53\n}", 2, "%nosuchif0: no such network interface"},
		{"IPv6 loopback and port without brackets", "upstreamtier {\n tier a ::1:5301\n}", 2, "::1:5301 is not a server's address; an IPv6 address with a port is written [IP]:port"},
		{"unspecified address", "upstreamtier {\n tier a 0.0.0.0\n}", 2, "0.0.0.0 is the unspecified address"},
		{"unspecified IPv6 address", "upstreamtier {\n tier a [::]:53\n}", 2, ":: is the unspecified address"},
		{"multicast address", "upstreamtier {\n tier a 224.0.0.251:5353\n}", 2, "224.0.0.251 is a multicast address"},

		// Host names and the resolver.
		{"resolver without a host name", "upstreamtier {\n tier a 1.1.1.1\n resolver 127.0.0.1\n}", 3, "resolver does nothing here: no upstream is a host name"},
		{"resolver without an address", "upstreamtier {\n tier a dns.example\n resolver\n}", 3, "resolver needs at least one IP[:port]"},
		{"resolver not an address", "upstreamtier {\n tier a dns.example\n resolver dns.google\n}", 3, `resolver: "dns.google" is not IP or IP:port`},
		{"same host name in two tiers", "upstreamtier {\n tier a dns.example\n tier b dns.example:53\n}", 3, `is already in tier "a"`},
		{"host name with a bad port", "upstreamtier {\n tier a dns.example:0\n}", 2, `port "0" is not a number between 1 and 65535`},
		{"host name in a resolv.conf", "upstreamtier {\n tier a @NAMES@\n}", 2, `nameserver "ns.example" is not an IP address; a resolv.conf file lists IP addresses; write a host name as a tier's TO, with resolver`},

		{"fall negative", "upstreamtier {\n tier a 1.1.1.1\n fall -1\n}", 3, `fall: "-1" is not a number between 0 and 100`},
		{"rise 0", "upstreamtier {\n tier a 1.1.1.1\n rise 0\n}", 3, `rise: "0" is not a number between 1 and 100`},

		// next and next_on_nodata.
		{"next without rcodes", "upstreamtier {\n tier a 1.1.1.1\n next\n}", 3, "next needs at least one RCODE, e.g. NXDOMAIN"},
		{"next NOERROR", "upstreamtier {\n tier a 1.1.1.1\n next NOERROR\n}", 3, "next: NOERROR is an answer"},
		{"next unknown rcode", "upstreamtier {\n tier a 1.1.1.1\n next NXDOMIAN\n}", 3, `next: "NXDOMIAN" is not an rcode`},
		{"next rcode twice", "upstreamtier {\n tier a 1.1.1.1\n next NXDOMAIN nxdomain\n}", 3, "next: nxdomain listed twice"},
		{"next_on_nodata with an argument", "upstreamtier {\n tier a 1.1.1.1\n next_on_nodata yes\n}", 3, "next_on_nodata takes no arguments"},
		{"next in a tier", "upstreamtier {\n tier a 1.1.1.1 {\n  next NXDOMAIN\n }\n}", 3, "next belongs at the top of the upstreamtier block"},

		// Options that do nothing where they are.
		{"except zone twice", "upstreamtier {\n tier a 1.1.1.1\n except corp.example corp.example\n}", 3, "except: corp.example. is listed twice, or inside another zone of the list"},
		{"except zone inside another", "upstreamtier {\n tier a 1.1.1.1 {\n  except a.corp.example corp.example\n }\n}", 3, "except: a.corp.example. is listed twice, or inside another"},
		{"tier except excluded at the top below", "upstreamtier {\n tier a 1.1.1.1 {\n  except corp.example\n }\n except corp.example\n}", 3, "the top-level except on line 5 already"},
		{"tier except already excluded at the top", "upstreamtier {\n except corp.example\n tier a 1.1.1.1 {\n  except a.corp.example\n }\n}", 4, `tier "a": except a.corp.example. changes nothing: the top-level except on line 2 already leaves it to the next plugin`},
		{"prefer_udp in a tier of tls:// only", "upstreamtier {\n tier a tls://1.1.1.1%a.example tls://1.0.0.1%a.example {\n  prefer_udp\n }\n}", 3, `tier "a": prefer_udp does nothing here: every upstream of the tier is tls://`},
		{"force_tcp in a tier of tls:// only", "upstreamtier {\n tier a tls://1.1.1.1 {\n  tls_servername a.example\n  force_tcp\n }\n}", 4, "force_tcp does nothing here"},
		{"DoT upstream without a server name", "upstreamtier {\n tier a tls://1.1.1.1\n}", 2, `tier "a": tls://1.1.1.1 has no server name to verify its certificate against`},
		{"DoT upstream without a server name, tier with a block", "upstreamtier {\n tier a 8.8.8.8 tls://1.1.1.1 {\n  policy sequential\n }\n}", 2, "tls://1.1.1.1 has no server name"},
		{"health_check domain twice", "upstreamtier {\n tier a 1.1.1.1\n health_check 1s domain a.example domain b.example\n}", 3, "health_check: domain given twice"},
		{"health_check no_rec twice", "upstreamtier {\n tier a 1.1.1.1\n health_check 1s no_rec no_rec\n}", 3, "health_check: no_rec given twice"},
		{"a CA file that is not PEM", "upstreamtier {\n tier a tls://1.1.1.1%a.example {\n  tls @RESOLV@\n }\n}", 3, "holds no PEM certificate"},
		{"udp:// transport", "upstreamtier {\n tier a udp://1.1.1.1\n}", 2, "udp://1.1.1.1: unknown transport udp://"},
		{"tcp:// transport", "upstreamtier {\n tier a 8.8.8.8 tcp://1.1.1.1:53\n}", 2, "unknown transport tcp://"},
		{"server name not a host name", "upstreamtier {\n tier a tls://1.1.1.1%a..b\n}", 2, `server name "a..b" is not a host name`},

		{"tls_servername and %name on one upstream", "upstreamtier {\n tier a tls://1.1.1.1%a.example {\n  tls_servername b.example\n }\n}", 3, "tls://1.1.1.1%a.example: server name given twice: %a.example and tls_servername b.example"},
	}

	for i, tc := range tests {
		t.Run(fmt.Sprintf("%02d %s", i, tc.desc), func(t *testing.T) {
			input := files.Replace(tc.input)
			c := caddy.NewTestController("dns", input)
			err := setup(c)
			if err == nil {
				t.Fatalf("expected an error, got none for input:\n%s", input)
			}
			msg := err.Error()
			if !strings.Contains(msg, "plugin/upstreamtier") {
				t.Errorf("error %q does not name the plugin", msg)
			}
			if marker := fmt.Sprintf("Testfile:%d - ", tc.line); !strings.Contains(msg, marker) {
				t.Errorf("error %q does not name line %d (%q)", msg, tc.line, marker)
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not contain %q", msg, tc.want)
			}
		})
	}
}

type setupTierWant struct {
	name      string
	addrs     []string          // u.Addr(), in order
	sn        map[string]string // TLS ServerName by u.Addr(); every tls:// upstream must be listed
	policy    string            // "" means the default, random
	except    []string
	forceTCP  bool
	preferUDP bool
	rootCAs   bool // the tier's tls option gave a CA
	certs     int  // client certificates in the tier's TLS config
}

func TestSetupValid(t *testing.T) {
	files := setupTestFiles(t)
	tests := []struct {
		desc     string
		input    string
		keys     []string // server block keys
		from     []string
		except   []string
		failover []int         // nil means the default, SERVFAIL REFUSED
		timeout  time.Duration // 0 means the default, 4s
		attempt  time.Duration // 0 means the default, 2s
		tiers    []setupTierWant
	}{
		{
			desc:  "minimal",
			input: "upstreamtier {\n tier a 1.1.1.1\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:  "three tiers keep their order",
			input: "upstreamtier {\n tier site 10.0.0.53 10.0.1.53:5353\n tier isp 192.0.2.1\n tier public 9.9.9.9 149.112.112.112\n}",
			tiers: []setupTierWant{
				{name: "site", addrs: []string{"10.0.0.53:53", "10.0.1.53:5353"}},
				{name: "isp", addrs: []string{"192.0.2.1:53"}},
				{name: "public", addrs: []string{"9.9.9.9:53", "149.112.112.112:53"}},
			},
		},
		{
			desc:  "four tiers with names using - and _",
			input: "upstreamtier {\n tier site-1 10.0.0.1\n tier Site_2 10.0.0.2\n tier isp 192.0.2.1\n tier z 192.0.2.2\n}",
			tiers: []setupTierWant{
				{name: "site-1", addrs: []string{"10.0.0.1:53"}},
				{name: "Site_2", addrs: []string{"10.0.0.2:53"}},
				{name: "isp", addrs: []string{"192.0.2.1:53"}},
				{name: "z", addrs: []string{"192.0.2.2:53"}},
			},
		},
		{
			desc:  "resolv.conf expands to its nameservers",
			input: "upstreamtier {\n tier site 192.0.2.1\n tier isp @RESOLV@\n}",
			tiers: []setupTierWant{
				{name: "site", addrs: []string{"192.0.2.1:53"}},
				{name: "isp", addrs: []string{"10.0.0.1:53", "10.0.0.2:53"}},
			},
		},
		{
			desc:  "resolv.conf mixed with addresses",
			input: "upstreamtier {\n tier a 192.0.2.1 @RESOLV@ 192.0.2.2:5300\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"192.0.2.1:53", "10.0.0.1:53", "10.0.0.2:53", "192.0.2.2:5300"}}},
		},
		{
			desc:  "DoH and DoQ with server names, and the DoH method",
			input: "upstreamtier {\n tier a https://9.9.9.9%dns.quad9.net quic://94.140.14.14:8853%dns.adguard-dns.com {\n  doh_method GET\n }\n tier b https://[2620:fe::fe] {\n  tls_servername dns.quad9.net\n }\n}",
			tiers: []setupTierWant{
				{name: "a", addrs: []string{"https://9.9.9.9:443", "quic://94.140.14.14:8853"}, sn: map[string]string{"https://9.9.9.9:443": "dns.quad9.net", "quic://94.140.14.14:8853": "dns.adguard-dns.com"}},
				{name: "b", addrs: []string{"https://[2620:fe::fe]:443"}, sn: map[string]string{"https://[2620:fe::fe]:443": "dns.quad9.net"}},
			},
		},
		{
			desc:  "dns:// prefix",
			input: "upstreamtier {\n tier a dns://1.1.1.1 dns://8.8.8.8:5353\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53", "8.8.8.8:5353"}}},
		},
		{
			desc:  "IPv6",
			input: "upstreamtier {\n tier a [::1]:53 [2001:db8::1] 2001:db8::2 dns://[2001:db8::3]:5353\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"[::1]:53", "[2001:db8::1]:53", "[2001:db8::2]:53", "[2001:db8::3]:5353"}}},
		},
		{
			desc:  "tls with server name, default port 853",
			input: "upstreamtier {\n tier public tls://1.1.1.1%cloudflare-dns.com tls://9.9.9.9%dns.quad9.net\n}",
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://1.1.1.1:853", "tls://9.9.9.9:853"},
				sn:    map[string]string{"tls://1.1.1.1:853": "cloudflare-dns.com", "tls://9.9.9.9:853": "dns.quad9.net"},
			}},
		},
		{
			desc:  "tls with server name and port",
			input: "upstreamtier {\n tier public tls://1.1.1.1%name.example:8853\n}",
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://1.1.1.1:8853"},
				sn:    map[string]string{"tls://1.1.1.1:8853": "name.example"},
			}},
		},
		{
			desc:  "tls with IPv6, server name and port",
			input: "upstreamtier {\n tier public tls://[2606:4700::1111]%cloudflare-dns.com:8853 tls://[2606:4700::1001]%cloudflare-dns.com\n}",
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://[2606:4700::1111]:8853", "tls://[2606:4700::1001]:853"},
				sn:    map[string]string{"tls://[2606:4700::1111]:8853": "cloudflare-dns.com", "tls://[2606:4700::1001]:853": "cloudflare-dns.com"},
			}},
		},
		{
			desc:  "tls with IPv6, server name inside the brackets",
			input: "upstreamtier {\n tier public tls://[2606:4700::1111%cloudflare-dns.com]:8853 tls://[2606:4700::1001%cloudflare-dns.com]\n}",
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://[2606:4700::1111]:8853", "tls://[2606:4700::1001]:853"},
				sn:    map[string]string{"tls://[2606:4700::1111]:8853": "cloudflare-dns.com", "tls://[2606:4700::1001]:853": "cloudflare-dns.com"},
			}},
		},
		{
			desc:  "tier-level tls_servername",
			input: "upstreamtier {\n tier public tls://1.1.1.1 tls://1.0.0.1:8853 {\n  tls_servername cloudflare-dns.com\n }\n}",
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://1.1.1.1:853", "tls://1.0.0.1:8853"},
				sn:    map[string]string{"tls://1.1.1.1:853": "cloudflare-dns.com", "tls://1.0.0.1:8853": "cloudflare-dns.com"},
			}},
		},
		{
			desc:  "tls mixed with plain DNS to the same IP",
			input: "upstreamtier {\n tier a 1.1.1.1 tls://1.1.1.1%one.one.one.one\n}",
			tiers: []setupTierWant{{
				name:  "a",
				addrs: []string{"1.1.1.1:53", "tls://1.1.1.1:853"},
				sn:    map[string]string{"tls://1.1.1.1:853": "one.one.one.one"},
			}},
		},
		{
			desc:  "tls with a CA, client certificate and key",
			input: "upstreamtier {\n tier a tls://192.0.2.1%dns.example {\n  tls @CERT@ @KEY@ @CERT@\n }\n tier b tls://192.0.2.2 {\n  tls @CERT@\n  tls_servername dns.example\n }\n tier c tls://192.0.2.3%dns.example {\n  tls\n }\n}",
			tiers: []setupTierWant{
				{name: "a", addrs: []string{"tls://192.0.2.1:853"}, sn: map[string]string{"tls://192.0.2.1:853": "dns.example"}, rootCAs: true, certs: 1},
				{name: "b", addrs: []string{"tls://192.0.2.2:853"}, sn: map[string]string{"tls://192.0.2.2:853": "dns.example"}, rootCAs: true},
				{name: "c", addrs: []string{"tls://192.0.2.3:853"}, sn: map[string]string{"tls://192.0.2.3:853": "dns.example"}},
			},
		},
		{
			desc:  "FROM zones given",
			input: "upstreamtier example.org example.net {\n tier a 1.1.1.1\n}",
			from:  []string{"example.org.", "example.net."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:  "FROM defaults to the server block keys",
			input: "upstreamtier {\n tier a 1.1.1.1\n}",
			keys:  []string{"example.com."},
			from:  []string{"example.com."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:  "FROM zones override the server block keys",
			input: "upstreamtier sub.example.com example.org {\n tier a 1.1.1.1\n}",
			keys:  []string{"example.com.:1053", "dns://example.org:53"},
			from:  []string{"sub.example.com.", "example.org."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:     "failover in lower case, top-level except",
			input:    "upstreamtier . {\n tier a 1.1.1.1\n failover nxdomain servfail\n except corp.example Internal.Example.\n}",
			from:     []string{"."},
			except:   []string{"corp.example.", "internal.example."},
			failover: []int{dns.RcodeNameError, dns.RcodeServerFailure},
			tiers:    []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:     "failover REFUSED only",
			input:    "upstreamtier {\n tier a 1.1.1.1\n failover REFUSED\n}",
			failover: []int{dns.RcodeRefused},
			tiers:    []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:  "policy random",
			input: "upstreamtier {\n tier a 1.1.1.1 8.8.8.8 {\n  policy random\n }\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53", "8.8.8.8:53"}, policy: "random"}},
		},
		{
			desc:  "policy round_robin",
			input: "upstreamtier {\n tier a 1.1.1.1 8.8.8.8 {\n  policy round_robin\n }\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53", "8.8.8.8:53"}, policy: "round_robin"}},
		},
		{
			desc:  "policy sequential",
			input: "upstreamtier {\n tier a 1.1.1.1 8.8.8.8 {\n  policy sequential\n }\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53", "8.8.8.8:53"}, policy: "sequential"}},
		},
		{
			desc:  "empty tier block",
			input: "upstreamtier {\n tier a 1.1.1.1 {\n }\n tier b 8.8.8.8\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}, {name: "b", addrs: []string{"8.8.8.8:53"}}},
		},
		{
			desc:  "force_tcp and prefer_udp in different tiers, tier except",
			input: "upstreamtier {\n tier a 1.1.1.1 {\n  force_tcp\n  except corp.example\n }\n tier b 8.8.8.8 {\n  prefer_udp\n  except corp.example other.example\n }\n}",
			tiers: []setupTierWant{
				{name: "a", addrs: []string{"1.1.1.1:53"}, forceTCP: true, except: []string{"corp.example."}},
				{name: "b", addrs: []string{"8.8.8.8:53"}, preferUDP: true, except: []string{"corp.example.", "other.example."}},
			},
		},
		{
			desc:    "timeouts",
			input:   "upstreamtier {\n tier a 1.1.1.1\n attempt_timeout 300ms\n timeout 2s\n}",
			timeout: 2 * time.Second,
			attempt: 300 * time.Millisecond,
			tiers:   []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:    "attempt_timeout equal to timeout",
			input:   "upstreamtier {\n timeout 1500ms\n attempt_timeout 1.5s\n tier a 1.1.1.1\n}",
			timeout: 1500 * time.Millisecond,
			attempt: 1500 * time.Millisecond,
			tiers:   []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:  "FROM wider than the server block",
			input: "upstreamtier . {\n tier a 1.1.1.1\n}",
			keys:  []string{"example.com."},
			from:  []string{"."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:  "FROM a reverse zone in CIDR notation",
			input: "upstreamtier 10.0.0.0/8 {\n tier a 1.1.1.1\n}",
			from:  []string{"10.in-addr.arpa."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc:  "one IP in two tiers, plain and DoT: two servers",
			input: "upstreamtier {\n tier a 1.1.1.1\n tier b tls://1.1.1.1%one.one.one.one\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}, {name: "b", addrs: []string{"tls://1.1.1.1:853"}, sn: map[string]string{"tls://1.1.1.1:853": "one.one.one.one"}}},
		},
		{
			desc:  "link-local IPv6 with its interface",
			input: "upstreamtier {\n tier a fe80::1%lo [fe80::2%lo]:5353\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"[fe80::1%lo]:53", "[fe80::2%lo]:5353"}}},
		},
		{
			desc:  "IPv4-mapped IPv6 is the IPv4 address",
			input: "upstreamtier {\n tier a [::ffff:192.0.2.1]:53\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"192.0.2.1:53"}}},
		},
		{
			desc:  "unbracketed IPv6 over tls with tls_servername",
			input: "upstreamtier {\n tier a tls://2001:db8::1 {\n  tls_servername dns.example\n }\n}",
			tiers: []setupTierWant{{name: "a", addrs: []string{"tls://[2001:db8::1]:853"}, sn: map[string]string{"tls://[2001:db8::1]:853": "dns.example"}}},
		},
		{
			desc:  "a tier except inside FROM",
			input: "upstreamtier example.org {\n tier a 1.1.1.1 {\n  except corp.example.org\n }\n}",
			from:  []string{"example.org."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}, except: []string{"corp.example.org."}}},
		},
		{
			desc: "everything",
			input: `upstreamtier example.org {
    except corp.example.org
    failover SERVFAIL REFUSED NXDOMAIN
    timeout 3s
    attempt_timeout 800ms
    tier site 10.0.0.53 10.0.1.53 {
        policy round_robin
    }
    tier isp @RESOLV@ {
        except secret.example.org
        force_tcp
    }
    tier public tls://1.1.1.1%cloudflare-dns.com tls://9.9.9.9%dns.quad9.net {
        policy sequential
        except secret.example.org
    }
}`,
			from:     []string{"example.org."},
			except:   []string{"corp.example.org."},
			failover: []int{dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeNameError},
			timeout:  3 * time.Second,
			attempt:  800 * time.Millisecond,
			tiers: []setupTierWant{
				{name: "site", addrs: []string{"10.0.0.53:53", "10.0.1.53:53"}, policy: "round_robin"},
				{name: "isp", addrs: []string{"10.0.0.1:53", "10.0.0.2:53"}, except: []string{"secret.example.org."}, forceTCP: true},
				{
					name:   "public",
					addrs:  []string{"tls://1.1.1.1:853", "tls://9.9.9.9:853"},
					sn:     map[string]string{"tls://1.1.1.1:853": "cloudflare-dns.com", "tls://9.9.9.9:853": "dns.quad9.net"},
					policy: "sequential",
					except: []string{"secret.example.org."},
				},
			},
		},
	}

	for i, tc := range tests {
		t.Run(fmt.Sprintf("%02d %s", i, tc.desc), func(t *testing.T) {
			input := files.Replace(tc.input)
			c := caddy.NewTestController("dns", input)
			c.ServerBlockKeys = tc.keys
			ut, err := parseUpstreamTier(c)
			if err != nil {
				t.Fatalf("unexpected error: %v\ninput:\n%s", err, input)
			}
			if ut == nil {
				t.Fatal("no error, but no UpstreamTier either")
			}
			defer func() {
				if err := ut.OnShutdown(); err != nil {
					t.Errorf("OnShutdown: %v", err)
				}
			}()
			if err := ut.OnStartup(); err != nil {
				t.Fatalf("OnStartup: %v", err)
			}

			if !slices.Equal(ut.from, tc.from) {
				t.Errorf("from = %q, want %q", ut.from, tc.from)
			}
			if !slices.Equal(ut.except, tc.except) {
				t.Errorf("except = %q, want %q", ut.except, tc.except)
			}
			wantFailover := tc.failover
			if wantFailover == nil {
				wantFailover = []int{dns.RcodeServerFailure, dns.RcodeRefused}
			}
			if got, want := setupRcodeNames(ut.failover), setupRcodeNames(rcodeSet(wantFailover)); got != want {
				t.Errorf("failover = %s, want %s", got, want)
			}
			wantTimeout, wantAttempt := tc.timeout, tc.attempt
			if wantTimeout == 0 {
				wantTimeout = 4 * time.Second
			}
			if wantAttempt == 0 {
				wantAttempt = 2 * time.Second
			}
			if ut.timeout != wantTimeout {
				t.Errorf("timeout = %s, want %s", ut.timeout, wantTimeout)
			}
			if ut.attemptTimeout != wantAttempt {
				t.Errorf("attempt_timeout = %s, want %s", ut.attemptTimeout, wantAttempt)
			}

			if len(ut.tiers) != len(tc.tiers) {
				t.Fatalf("got %d tiers %q, want %d", len(ut.tiers), setupTierNames(ut.tiers), len(tc.tiers))
			}
			for j, want := range tc.tiers {
				setupCheckTier(t, ut.tiers[j], want)
			}
		})
	}
}

func setupCheckTier(t *testing.T, tr *Tier, want setupTierWant) {
	t.Helper()
	if tr.Name() != want.name {
		t.Errorf("tier name = %q, want %q", tr.Name(), want.name)
	}
	ups := tr.upstreams()
	addrs := make([]string, 0, len(ups))
	for _, u := range ups {
		addrs = append(addrs, u.Addr())
		if u.tier != tr {
			t.Errorf("tier %q: upstream %s does not point back to its tier", want.name, u.Addr())
		}
	}
	if !slices.Equal(addrs, want.addrs) {
		t.Errorf("tier %q: upstreams = %q, want %q", want.name, addrs, want.addrs)
	}
	wantPolicy := want.policy
	if wantPolicy == "" {
		wantPolicy = "random"
	}
	if tr.policy == nil || tr.policy.String() != wantPolicy {
		t.Errorf("tier %q: policy = %v, want %s", want.name, tr.policy, wantPolicy)
	}
	if !slices.Equal(tr.except, want.except) {
		t.Errorf("tier %q: except = %q, want %q", want.name, tr.except, want.except)
	}
	if tr.opts.ForceTCP != want.forceTCP {
		t.Errorf("tier %q: force_tcp = %t, want %t", want.name, tr.opts.ForceTCP, want.forceTCP)
	}
	if tr.opts.PreferUDP != want.preferUDP {
		t.Errorf("tier %q: prefer_udp = %t, want %t", want.name, tr.opts.PreferUDP, want.preferUDP)
	}

	for _, u := range tr.upstreams() {
		cfg := tlsConfigOf(u)
		sn, isTLS := want.sn[u.Addr()]
		if !strings.Contains(u.Addr(), "://") {
			if isTLS {
				t.Errorf("tier %q: %s has a server name in the test but is not tls://", want.name, u.Addr())
			}
			if cfg != nil {
				t.Errorf("tier %q: plain DNS upstream %s has a TLS config", want.name, u.Addr())
			}
			continue
		}
		if !isTLS {
			t.Errorf("tier %q: tls upstream %s is missing from the test's server names", want.name, u.Addr())
		}
		if cfg == nil {
			t.Errorf("tier %q: tls upstream %s has no TLS config", want.name, u.Addr())
			continue
		}
		if cfg.ServerName != sn {
			t.Errorf("tier %q: %s ServerName = %q, want %q", want.name, u.Addr(), cfg.ServerName, sn)
		}
		if cfg.InsecureSkipVerify {
			t.Errorf("tier %q: %s skips certificate verification", want.name, u.Addr())
		}
		if (cfg.RootCAs != nil) != want.rootCAs {
			t.Errorf("tier %q: %s has RootCAs %t, want %t", want.name, u.Addr(), cfg.RootCAs != nil, want.rootCAs)
		}
		if len(cfg.Certificates) != want.certs {
			t.Errorf("tier %q: %s has %d client certificates, want %d", want.name, u.Addr(), len(cfg.Certificates), want.certs)
		}
	}
}

// TestSetupErrorNamesLine checks that a configuration error points at the
// offending line, both through a test controller and the way the coredns
// binary reads a Corefile: the caddyfile parser splits the file into server
// blocks and hands the directive's tokens, with their line in the file, to
// setup.
func TestSetupErrorNamesLine(t *testing.T) {
	input := "upstreamtier {\n tier site 10.0.0.53\n tier isp 192.0.2.1\n timeout abc\n}"
	err := setup(caddy.NewTestController("dns", input))
	if err == nil {
		t.Fatal("expected an error")
	}
	if want := `plugin/upstreamtier: Testfile:4 - Error during parsing: timeout: "abc" is not a duration`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want it to start with %q", err, want)
	}

	tests := []struct {
		corefile string
		want     string
	}{
		{
			corefile: ". {\n    errors\n    upstreamtier {\n        tier site 10.0.0.53\n        tier isp 192.0.2.1 {\n            policy fastest\n        }\n    }\n}\n",
			want:     `plugin/upstreamtier: Corefile:6 - Error during parsing: unknown policy "fastest"`,
		},
		{
			corefile: "# comment\n\nexample.org {\n    upstreamtier {\n        tier site 10.0.0.53\n    }\n}\n\n. {\n    upstreamtier {\n        tier site 10.0.0.53\n        tier isp 192.0.2.1:99999\n    }\n}\n",
			want:     `plugin/upstreamtier: Corefile:12 - Error during parsing: tier "isp": 192.0.2.1:99999: port "99999"`,
		},
		{
			corefile: ". {\n    upstreamtier {\n        tier site 10.0.0.53\n    }\n    errors\n    upstreamtier {\n        tier isp 192.0.2.1\n    }\n}\n",
			want:     "plugin/upstreamtier: Corefile:6 - Error during parsing: only one upstreamtier stanza per server block",
		},
		{
			corefile: "example.org:1053 {\n    upstreamtier corp.example {\n        tier site 10.0.0.53\n    }\n}\n",
			want:     "plugin/upstreamtier: Corefile:2 - Error during parsing: FROM corp.example. is outside the server block's zones (example.org.)",
		},
		{
			// FROM defaults to the server block's zones, which the tier's
			// except then covers.
			corefile: "example.org {\n    upstreamtier {\n        tier site 10.0.0.53 {\n            except example.org\n        }\n    }\n}\n",
			want:     `plugin/upstreamtier: Corefile:4 - Error during parsing: tier "site": except example.org. covers all of FROM (example.org.)`,
		},
		{
			// The tier block is not closed: the caddyfile parser takes the
			// tier's brace for the stanza's and the server block's for its
			// own, so the next directive becomes a property of the stanza,
			// which names it.
			corefile: ". {\n    upstreamtier {\n        tier site 10.0.0.53 {\n            policy random\n    }\n    errors\n}\n",
			want:     `plugin/upstreamtier: Corefile:6 - Error during parsing: unknown property "errors"`,
		},
	}
	for i, tc := range tests {
		blocks, err := caddyfile.Parse("Corefile", strings.NewReader(tc.corefile), []string{"errors", "upstreamtier"})
		if err != nil {
			t.Fatalf("Test %d: caddyfile.Parse: %v", i, err)
		}
		var got []string
		for _, b := range blocks {
			c := caddy.NewTestController("dns", "")
			c.Dispenser = caddyfile.NewDispenserTokens("Corefile", b.Tokens["upstreamtier"])
			c.ServerBlockKeys = b.Keys
			if err := setup(c); err != nil {
				got = append(got, err.Error())
			}
		}
		if len(got) != 1 || !strings.HasPrefix(got[0], tc.want) {
			t.Errorf("Test %d: errors = %q, want one starting with %q", i, got, tc.want)
		}
	}
}

func setupRcodeNames(set map[int]bool) string {
	var names []string
	for rc, on := range set {
		if on {
			names = append(names, dns.RcodeToString[rc])
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

func setupTierNames(tiers []*Tier) []string {
	names := make([]string, 0, len(tiers))
	for _, t := range tiers {
		names = append(names, t.Name())
	}
	return names
}

// The health options and their defaults.
func TestSetupHealthOptions(t *testing.T) {
	tests := []struct {
		desc      string
		input     string
		standby   time.Duration
		memoryTTL time.Duration // 0: memory off
		attempt   time.Duration
		interval  time.Duration
	}{
		{"defaults", "upstreamtier {\n tier a 1.1.1.1\n}", 30 * time.Second, 5 * time.Second, 2 * time.Second, 250 * time.Millisecond},
		{"standby_probe and memory set", "upstreamtier {\n tier a 1.1.1.1\n standby_probe 1m\n failover_memory 2s 100\n}", time.Minute, 2 * time.Second, 2 * time.Second, 250 * time.Millisecond},
		{"both off", "upstreamtier {\n tier a 1.1.1.1\n standby_probe off\n failover_memory off\n}", 0, 0, 2 * time.Second, 250 * time.Millisecond},
		{"attempt_timeout follows a short timeout", "upstreamtier {\n tier a 1.1.1.1\n timeout 500ms\n health_check 1s\n}", 30 * time.Second, 5 * time.Second, 500 * time.Millisecond, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ut, err := parseUpstreamTier(caddy.NewTestController("dns", tc.input))
			if err != nil {
				t.Fatal(err)
			}
			if ut.hc.standby != tc.standby || ut.attemptTimeout != tc.attempt || ut.hc.interval != tc.interval {
				t.Errorf("standby %s, attempt_timeout %s, interval %s; want %s, %s, %s", ut.hc.standby, ut.attemptTimeout, ut.hc.interval, tc.standby, tc.attempt, tc.interval)
			}
			switch {
			case tc.memoryTTL == 0 && ut.memory != nil:
				t.Error("failover memory on, want off")
			case tc.memoryTTL != 0 && (ut.memory == nil || ut.memory.ttl != tc.memoryTTL):
				t.Errorf("failover memory %+v, want a TTL of %s", ut.memory, tc.memoryTTL)
			}
		})
	}
}

// tlsConfigOf makes u's link, as startup does, and returns its TLS
// configuration; nil for plain DNS.
func tlsConfigOf(u *Upstream) *tls.Config {
	l := upstream.New(linkConfig(u, dialing{readTimeout: time.Second}))
	defer l.Stop(0)
	if tl, ok := l.(interface{ TLSConfig() *tls.Config }); ok {
		return tl.TLSConfig()
	}
	return nil
}
