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
		{"unknown top-level property", `upstreamtier {
			tier a 1.1.1.1
			foo bar
		}`, 3, `unknown property "foo"; expected one of tier, except, failover, timeout, attempt_timeout`},
		{"no tier at all", `upstreamtier {
			timeout 2s
		}`, 1, "no tier defined"},
		{"empty block", `upstreamtier {
		}`, 1, "no tier defined"},
		{"no block", "upstreamtier", 1, "no tier defined"},
		{"invalid FROM zone", `upstreamtier exa..mple {
			tier a 1.1.1.1
		}`, 1, `FROM "exa..mple" is not a valid zone`},
		{"except without zones", `upstreamtier {
			tier a 1.1.1.1
			except
		}`, 3, "except needs at least one ZONE"},
		{"except with an invalid zone", `upstreamtier {
			tier a 1.1.1.1
			except exa..mple
		}`, 3, `ZONE "exa..mple" is not a valid zone`},
		{"policy at the top", `upstreamtier {
			tier a 1.1.1.1
			policy random
		}`, 3, "policy belongs in a tier's block"},
		{"force_tcp at the top", `upstreamtier {
			tier a 1.1.1.1
			force_tcp
		}`, 3, "force_tcp belongs in a tier's block"},
		{"tls_servername at the top", `upstreamtier {
			tier a tls://1.1.1.1%x.example
			tls_servername x.example
		}`, 3, "tls_servername belongs in a tier's block"},
		{"timeout twice", `upstreamtier {
			tier a 1.1.1.1
			timeout 2s
			timeout 3s
		}`, 4, "timeout given twice"},
		{"failover twice", `upstreamtier {
			tier a 1.1.1.1
			failover SERVFAIL
			failover REFUSED
		}`, 4, "failover given twice"},
		{"except twice", `upstreamtier {
			tier a 1.1.1.1
			except a.example
			except b.example
		}`, 4, "except given twice"},
		{"two stanzas in one server block", `upstreamtier {
			tier a 1.1.1.1
		}
		upstreamtier {
			tier b 1.1.1.1
		}`, 4, "only one upstreamtier stanza per server block"},

		// Health options.
		{"standby_probe without a duration", `upstreamtier {
			tier a 1.1.1.1
			standby_probe
		}`, 3, "standby_probe needs one DURATION"},
		{"standby_probe not a duration", `upstreamtier {
			tier a 1.1.1.1
			standby_probe often
		}`, 3, `standby_probe: "often" is not a duration`},
		{"standby_probe in a tier", `upstreamtier {
			tier a 1.1.1.1 {
				standby_probe 10s
			}
		}`, 3, "standby_probe belongs at the top of the upstreamtier block"},
		{"failover_memory without a duration", `upstreamtier {
			tier a 1.1.1.1
			failover_memory
		}`, 3, "failover_memory needs a DURATION"},
		{"failover_memory bad size", `upstreamtier {
			tier a 1.1.1.1
			failover_memory 5s many
		}`, 3, `failover_memory: SIZE "many" is not a number`},
		{"failover_memory zero size", `upstreamtier {
			tier a 1.1.1.1
			failover_memory 5s 0
		}`, 3, `failover_memory: SIZE "0" is not a number`},
		{"failover_memory negative", `upstreamtier {
			tier a 1.1.1.1
			failover_memory -5s
		}`, 3, "failover_memory must be positive"},
		{"failover_memory twice", `upstreamtier {
			tier a 1.1.1.1
			failover_memory 5s
			failover_memory off
		}`, 4, "failover_memory given twice"},
		{"failover_memory in a tier", `upstreamtier {
			tier a 1.1.1.1 {
				failover_memory 5s
			}
		}`, 3, "failover_memory belongs at the top of the upstreamtier block"},

		// Durations.
		{"timeout not a duration", `upstreamtier {
			tier a 1.1.1.1
			timeout abc
		}`, 3, `timeout: "abc" is not a duration`},
		{"timeout negative", `upstreamtier {
			tier a 1.1.1.1
			timeout -1s
		}`, 3, "timeout must be positive, got -1s"},
		{"attempt_timeout zero", `upstreamtier {
			tier a 1.1.1.1
			attempt_timeout 0s
		}`, 3, "attempt_timeout must be positive, got 0s"},
		{"timeout missing duration", `upstreamtier {
			tier a 1.1.1.1
			timeout
		}`, 3, "timeout needs one DURATION"},
		{"timeout two durations", `upstreamtier {
			tier a 1.1.1.1
			timeout 1s 2s
		}`, 3, "timeout needs one DURATION"},
		{"attempt_timeout missing duration", `upstreamtier {
			tier a 1.1.1.1
			attempt_timeout
		}`, 3, "attempt_timeout needs one DURATION"},
		// A check across properties: reported at the line of the property.
		{"attempt_timeout longer than timeout", `upstreamtier {
			tier a 1.1.1.1
			timeout 2s
			attempt_timeout 3s
		}`, 4, "attempt_timeout 3s is longer than timeout 2s"},
		{"attempt_timeout longer than default timeout", `upstreamtier {
			tier a 1.1.1.1
			attempt_timeout 5s
		}`, 3, "attempt_timeout 5s is longer than timeout 4s (the default)"},

		// Failover.
		{"failover unknown rcode", `upstreamtier {
			tier a 1.1.1.1
			failover SERVFAIL BOGUS
		}`, 3, `failover: "BOGUS" is not an rcode`},
		{"failover NOERROR", `upstreamtier {
			tier a 1.1.1.1
			failover SERVFAIL NOERROR
		}`, 3, "failover: NOERROR is an answer, not a failure"},
		{"failover noerror lower case", `upstreamtier {
			tier a 1.1.1.1
			failover noerror
		}`, 3, "failover: NOERROR is an answer, not a failure"},
		{"failover without rcodes", `upstreamtier {
			tier a 1.1.1.1
			failover
		}`, 3, "failover needs at least one RCODE"},

		// The tier line.
		{"tier with a name only", `upstreamtier {
			tier a
		}`, 2, "tier needs a NAME and at least one upstream"},
		{"tier without arguments", `upstreamtier {
			tier
		}`, 2, "tier needs a NAME and at least one upstream"},
		{"tier with a name and a block only", `upstreamtier {
			tier a {
				policy random
			}
		}`, 2, "tier needs a NAME and at least one upstream"},
		{"tier name is an IP", `upstreamtier {
			tier 1.1.1.1 8.8.8.8
		}`, 2, `tier name "1.1.1.1" is not valid`},
		{"tier name starts with a digit", `upstreamtier {
			tier 1site 1.1.1.1
		}`, 2, `tier name "1site" is not valid`},
		{"tier name with a dot", `upstreamtier {
			tier si.te 1.1.1.1
		}`, 2, `tier name "si.te" is not valid`},
		{"tier name is a transport URL", `upstreamtier {
			tier tls://1.1.1.1 8.8.8.8
		}`, 2, `tier name "tls://1.1.1.1" is not valid`},
		{"duplicate tier name", `upstreamtier {
			tier a 1.1.1.1
			tier b 8.8.8.8
			tier a 9.9.9.9
		}`, 4, `tier "a" defined twice`},
		{"duplicate tier name after a block", `upstreamtier {
			tier a 1.1.1.1 {
				policy sequential
			}
			tier a 9.9.9.9
		}`, 5, `tier "a" defined twice`},

		// Upstreams.
		{"not an IP", `upstreamtier {
			tier a not-an-ip
		}`, 2, `tier "a": not-an-ip: not an IP address or file "not-an-ip"`},
		{"not an IP, tier with a block", `upstreamtier {
			tier a not-an-ip {
				policy random
			}
		}`, 2, `not an IP address or file "not-an-ip"`},
		{"duplicate upstream, tier with a block", `upstreamtier {
			tier a 1.1.1.1 1.1.1.1:53 {
				policy random
			}
		}`, 2, `upstream 1.1.1.1:53 listed twice`},
		{"server name without tls://", `upstreamtier {
			tier a 1.1.1.1%cloudflare-dns.com
		}`, 2, `a server name (%name) is only for tls://, https:// and quic:// upstreams`},
		{"server name with dns://", `upstreamtier {
			tier a dns://1.1.1.1%x:53
		}`, 2, `only for tls://, https:// and quic:// upstreams`},
		{"IPv4 out of range", `upstreamtier {
			tier a 300.1.1.1
		}`, 2, `not an IP address or file "300.1.1.1"`},
		{"garbage after the upstreams", `upstreamtier {
			tier a 1.1.1.1 8.8.8.8 garbage
		}`, 2, `tier "a": garbage: not an IP address or file "garbage"`},
		{"port zero", `upstreamtier {
			tier a 1.1.1.1:0
		}`, 2, `port "0" is not a number between 1 and 65535`},
		{"port too large", `upstreamtier {
			tier a 1.1.1.1:99999
		}`, 2, `port "99999" is not a number between 1 and 65535`},
		{"port not a number", `upstreamtier {
			tier a 1.1.1.1:abc
		}`, 2, `port "abc" is not a number between 1 and 65535`},
		{"tls port too large", `upstreamtier {
			tier a tls://1.1.1.1%one.one.one.one:70000
		}`, 2, `port "70000" is not a number between 1 and 65535`},
		{"https without a server name", `upstreamtier {
			tier a https://1.1.1.1
		}`, 2, "https://1.1.1.1 has no server name to verify its certificate against: write https://IP%NAME"},
		{"quic without a server name", `upstreamtier {
			tier a quic://1.1.1.1
		}`, 2, "quic://1.1.1.1 has no server name"},
		{"https with a path", `upstreamtier {
			tier a https://1.1.1.1%dns.quad9.net/dns-query
		}`, 2, "a path is not allowed: DNS over HTTPS is asked at /dns-query"},
		{"https link-local", `upstreamtier {
			tier a https://[fe80::1%lo]:443
		}`, 2, "link-local address fe80::1 cannot be a https:// upstream"},
		{"doh_method without https", `upstreamtier {
			tier a tls://1.1.1.1%x.example {
				doh_method GET
			}
		}`, 3, `tier "a": doh_method is for https:// upstreams, and the tier has none`},
		{"doh_method unknown", `upstreamtier {
			tier a https://1.1.1.1%x.example {
				doh_method PUT
			}
		}`, 3, "doh_method needs GET or POST"},
		{"doh_method at the top", `upstreamtier {
			tier a https://1.1.1.1%x.example
			doh_method GET
		}`, 3, "doh_method belongs in a tier's block"},
		{"tls_servername for quic twice", `upstreamtier {
			tier a quic://1.1.1.1%x.example {
				tls_servername y.example
			}
		}`, 3, "server name given twice"},
		{"force_tcp with only encrypted upstreams", `upstreamtier {
			tier a https://1.1.1.1%x.example quic://1.0.0.1%x.example {
				force_tcp
			}
		}`, 3, "every upstream of the tier is tls://, https:// and quic://"},
		{"same DoH server twice", `upstreamtier {
			tier a https://1.1.1.1%x.example
			tier b https://1.1.1.1:443%y.example
		}`, 3, `already in tier "a"`},

		// Connection options.
		{"source_address without an address", `upstreamtier {
			tier a 1.1.1.1
			source_address
		}`, 3, "source_address needs one IP address"},
		{"source_address a name", `upstreamtier {
			tier a 1.1.1.1
			source_address eth0
		}`, 3, `source_address "eth0" is not an IP address`},
		{"source_address unspecified", `upstreamtier {
			tier a 1.1.1.1
			source_address 0.0.0.0
		}`, 3, "0.0.0.0 is the unspecified address"},
		{"source_address of the other family", `upstreamtier {
			tier a 1.1.1.1
			tier b [2001:db8::1]:53
			source_address 10.0.0.1
		}`, 4, `source_address 10.0.0.1 cannot reach upstream [2001:db8::1]:53 of tier "b": the IP families differ`},
		{"source_address in a tier", `upstreamtier {
			tier a 1.1.1.1 {
				source_address 10.0.0.1
			}
		}`, 3, "source_address belongs at the top"},
		{"expire not a duration", `upstreamtier {
			tier a 1.1.1.1
			expire soon
		}`, 3, `expire: "soon" is not a duration`},
		{"expire out of bounds", `upstreamtier {
			tier a 1.1.1.1
			expire 10ms
		}`, 3, "expire 10ms is out of bounds: expected between 100ms and 1h0m0s"},
		{"max_age out of bounds", `upstreamtier {
			tier a 1.1.1.1
			max_age 48h
		}`, 3, "max_age 48h0m0s is out of bounds"},
		{"max_age below expire", `upstreamtier {
			tier a 1.1.1.1
			max_age 5s
			expire 10s
		}`, 3, "max_age 5s is shorter than expire 10s"},
		{"max_idle_conns negative", `upstreamtier {
			tier a 1.1.1.1
			max_idle_conns -1
		}`, 3, `max_idle_conns: "-1" is not a number between 0 and 65535`},
		{"max_idle_conns twice", `upstreamtier {
			tier a 1.1.1.1
			max_idle_conns 1
			max_idle_conns 2
		}`, 4, "max_idle_conns given twice"},
		{"grpc transport", `upstreamtier {
			tier a grpc://1.1.1.1
		}`, 2, "transport grpc:// is not supported"},
		{"unix transport", `upstreamtier {
			tier a unix:///run/dns.sock
		}`, 2, "transport unix:// is not supported"},
		{"missing resolv.conf", `upstreamtier {
			tier a /nonexistent/resolv.conf
		}`, 2, `failed to open file "/nonexistent/resolv.conf"`},
		{"resolv.conf without nameservers", `upstreamtier {
			tier a @EMPTY@
		}`, 2, "no nameservers found"},
		{"empty server name", `upstreamtier {
			tier a tls://1.1.1.1%
		}`, 2, "tls://1.1.1.1%: empty server name after %"},
		{"empty server name before a port", `upstreamtier {
			tier a tls://1.1.1.1%:853
		}`, 2, "empty server name after %"},
		{"duplicate upstream", `upstreamtier {
			tier a 1.1.1.1 8.8.8.8 1.1.1.1:53
		}`, 2, `tier "a": upstream 1.1.1.1:53 listed twice`},
		{"duplicate upstream with dns://", `upstreamtier {
			tier a 1.1.1.1 dns://1.1.1.1
		}`, 2, "upstream dns://1.1.1.1 listed twice"},
		{"duplicate tls upstream", `upstreamtier {
			tier a tls://1.1.1.1%a.example tls://1.1.1.1:853
		}`, 2, "upstream tls://1.1.1.1:853 listed twice"},
		{"duplicate upstream from resolv.conf", `upstreamtier {
			tier a 10.0.0.2 @RESOLV@
		}`, 2, "listed twice"},

		// The tier block.
		{"unknown tier property", `upstreamtier {
			tier a 1.1.1.1 {
				foo
			}
		}`, 3, `tier "a": unknown property "foo"; expected one of policy, except, tls, tls_servername, doh_method, force_tcp, prefer_udp`},
		{"unknown policy", `upstreamtier {
			tier a 1.1.1.1 {
				policy fastest
			}
		}`, 3, `unknown policy "fastest"; expected random, round_robin or sequential`},
		{"policy without argument", `upstreamtier {
			tier a 1.1.1.1 {
				policy
			}
		}`, 3, "policy needs one of random, round_robin, sequential"},
		{"policy with two arguments", `upstreamtier {
			tier a 1.1.1.1 {
				policy random sequential
			}
		}`, 3, "policy needs one of random, round_robin, sequential"},
		{"policy twice", `upstreamtier {
			tier a 1.1.1.1 {
				policy random
				policy sequential
			}
		}`, 4, `tier "a": policy given twice`},
		{"except without zones in a tier", `upstreamtier {
			tier a 1.1.1.1 {
				except
			}
		}`, 3, "except needs at least one ZONE"},
		{"timeout in a tier", `upstreamtier {
			tier a 1.1.1.1 {
				timeout 2s
			}
		}`, 3, `timeout belongs at the top of the upstreamtier block, not in tier "a"`},
		{"failover in a tier", `upstreamtier {
			tier a 1.1.1.1 {
				failover SERVFAIL
			}
		}`, 3, `failover belongs at the top of the upstreamtier block, not in tier "a"`},
		{"tier in a tier", `upstreamtier {
			tier a 1.1.1.1 {
				tier b 8.8.8.8
			}
		}`, 3, `tier belongs at the top of the upstreamtier block, not in tier "a"`},
		{"force_tcp with an argument", `upstreamtier {
			tier a 1.1.1.1 {
				force_tcp yes
			}
		}`, 3, "force_tcp takes no arguments"},
		{"prefer_udp with an argument", `upstreamtier {
			tier a 1.1.1.1 {
				prefer_udp yes
			}
		}`, 3, "prefer_udp takes no arguments"},
		{"force_tcp and prefer_udp", `upstreamtier {
			tier a 1.1.1.1 {
				force_tcp
				prefer_udp
			}
		}`, 4, `tier "a": force_tcp and prefer_udp contradict each other`},
		{"tls with four arguments", `upstreamtier {
			tier a tls://1.1.1.1 {
				tls a b c d
			}
		}`, 3, "tls takes at most CERT KEY CA"},
		{"tls with a missing certificate", `upstreamtier {
			tier a tls://1.1.1.1 {
				tls /nonexistent/cert.pem /nonexistent/key.pem
			}
		}`, 3, "tls: could not load TLS cert"},
		{"tls with a missing CA", `upstreamtier {
			tier a tls://1.1.1.1 {
				tls /nonexistent/ca.pem
			}
		}`, 3, "tls: error reading /nonexistent/ca.pem"},
		{"tls_servername without a name", `upstreamtier {
			tier a tls://1.1.1.1 {
				tls_servername
			}
		}`, 3, "tls_servername needs one NAME"},
		{"tls_servername with two names", `upstreamtier {
			tier a tls://1.1.1.1 {
				tls_servername a.example b.example
			}
		}`, 3, "tls_servername needs one NAME"},
		{"unclosed tier block", "upstreamtier {\n tier a 1.1.1.1 {\n  policy random\n", 3, `tier "a": block is not closed with '}'`},
		{"unclosed empty tier block", "upstreamtier {\n tier a 1.1.1.1 {", 2, `tier "a": block is not closed with '}'`},
		// Checks across the tier line and its block: reported at the
		// option's line, the message names the tier.
		{"tls options on a tier without tls://", `upstreamtier {
			tier a 1.1.1.1 8.8.8.8 {
				tls
			}
		}`, 3, `tier "a": tls is for tls://, https:// and quic:// upstreams, and the tier has none`},
		{"tls_servername on a tier without tls://", `upstreamtier {
			tier a 1.1.1.1 {
				tls_servername one.one.one.one
			}
		}`, 3, `tier "a": tls_servername is for tls://, https:// and quic:// upstreams, and the tier has none`},
		// The same server in two tiers, however it is written.
		{"same upstream in two tiers", `upstreamtier {
			tier a 1.1.1.1
			tier b 1.1.1.1 8.8.8.8
		}`, 3, `tier "b": upstream 1.1.1.1 (1.1.1.1:53) is already in tier "a" on line 2`},
		{"same upstream in two tiers, with dns:// and the port", `upstreamtier {
			tier a 1.1.1.1
			tier b dns://1.1.1.1:53
		}`, 3, `is already in tier "a" on line 2`},
		{"same upstream in two tiers, through a resolv.conf", `upstreamtier {
			tier a @RESOLV@
			tier b 10.0.0.2
		}`, 3, `upstream 10.0.0.2 (10.0.0.2:53) is already in tier "a"`},
		{"same upstream in two tiers, both through resolv.conf", `upstreamtier {
			tier a 192.0.2.1
			tier b @RESOLV@ {
				policy sequential
			}
			tier c @RESOLV@
		}`, 6, `is already in tier "b" on line 3`},
		{"same IPv6 upstream in two tiers", `upstreamtier {
			tier a [2001:db8::1]:53
			tier b 2001:db8::1
		}`, 3, `is already in tier "a"`},
		{"same upstream in two tiers, IPv4-mapped", `upstreamtier {
			tier a 1.1.1.1
			tier b [::ffff:1.1.1.1]:53
		}`, 3, `is already in tier "a"`},
		{"same DoT upstream in two tiers", `upstreamtier {
			tier a tls://1.1.1.1%a.example
			tier b tls://1.1.1.1%b.example:853
		}`, 3, `is already in tier "a"`},

		// Configurations that can never answer.
		{"except covers FROM", `upstreamtier example.org {
			tier a 1.1.1.1
			except example.org
		}`, 3, "except example.org. covers all of FROM (example.org.)"},
		{"except above FROM", `upstreamtier sub.example.org other.example {
			tier a 1.1.1.1
			except example.org other.example
		}`, 3, "covers all of FROM"},
		{"except outside FROM", `upstreamtier example.org {
			tier a 1.1.1.1
			except corp.example
		}`, 3, "except corp.example. is outside FROM (example.org.): it changes nothing"},
		{"a tier except covers FROM", `upstreamtier example.org {
			tier a 1.1.1.1 {
				except example.org
			}
			tier b 8.8.8.8
		}`, 3, `tier "a": except example.org. covers all of FROM (example.org.): the tier would never be asked`},
		{"a tier except covers the last FROM zone", `upstreamtier a.example b.example {
			tier a 1.1.1.1
			tier b 8.8.8.8 {
				policy random
				except a.example b.example
			}
		}`, 5, `tier "b": except a.example. b.example. covers all of FROM`},
		{"a tier except outside FROM", `upstreamtier example.org {
			tier a 1.1.1.1 {
				except corp.example
			}
		}`, 3, `tier "a": except corp.example. is outside FROM`},
		{"an upstream address as FROM", `upstreamtier . 10.0.0.1 {
			tier a 1.1.1.1
		}`, 1, `FROM "10.0.0.1" is an upstream address, not a zone`},
		{"an upstream address and port as FROM", `upstreamtier 10.0.0.1:53 {
			tier a 1.1.1.1
		}`, 1, `FROM "10.0.0.1:53" is an upstream address`},
		{"an IPv6 upstream as FROM", `upstreamtier . [2001:db8::1]:53 {
			tier a 1.1.1.1
		}`, 1, "is an upstream address"},
		{"a URL as FROM", `upstreamtier . tls://1.1.1.1 {
			tier a 1.1.1.1
		}`, 1, "is an upstream address"},
		{"a resolv.conf as FROM", `upstreamtier . /etc/resolv.conf {
			tier a 1.1.1.1
		}`, 1, "is an upstream address"},

		// Durations with bounds.
		{"health_check 1ns", `upstreamtier {
			tier a 1.1.1.1
			health_check 1ns
		}`, 3, "health_check 1ns is out of bounds: expected between 10ms and 1m0s"},
		{"health_check an hour", `upstreamtier {
			tier a 1.1.1.1
			health_check 1h domain example.org
		}`, 3, "health_check 1h0m0s is out of bounds"},
		{"hedge 1ns", `upstreamtier {
			tier a 1.1.1.1
			hedge 1ns
		}`, 3, "hedge 1ns is out of bounds: expected between 5ms and 30s"},
		{"attempt_timeout 1h", `upstreamtier {
			tier a 1.1.1.1
			timeout 2s
			attempt_timeout 1h
		}`, 4, "attempt_timeout 1h0m0s is out of bounds: expected between 10ms and 30s"},
		{"attempt_timeout 1ns", `upstreamtier {
			tier a 1.1.1.1
			attempt_timeout 1ns
		}`, 3, "attempt_timeout 1ns is out of bounds"},
		{"timeout 1h", `upstreamtier {
			tier a 1.1.1.1
			timeout 1h
		}`, 3, "timeout 1h0m0s is out of bounds: expected between 50ms and 30s"},
		{"timeout 1ms", `upstreamtier {
			tier a 1.1.1.1
			timeout 1ms
		}`, 3, "timeout 1ms is out of bounds"},
		{"standby_probe 1ms", `upstreamtier {
			tier a 1.1.1.1
			standby_probe 1ms
		}`, 3, "standby_probe 1ms is out of bounds: expected between 1s and 24h0m0s"},
		{"failover_memory 1ns", `upstreamtier {
			tier a 1.1.1.1
			failover_memory 1ns 10
		}`, 3, "failover_memory 1ns is out of bounds"},
		{"hedge longer than the default attempt_timeout", `upstreamtier {
			tier a 1.1.1.1
			hedge 3s
			timeout 5s
		}`, 3, "hedge 3s is not shorter than attempt_timeout 2s (the default)"},
		{"hedge longer than attempt_timeout", `upstreamtier {
			tier a 1.1.1.1
			attempt_timeout 500ms
			hedge 1s
		}`, 4, "hedge 1s is not shorter than attempt_timeout 500ms:"},
		{"hedge longer than a short timeout", `upstreamtier {
			hedge 500ms
			tier a 1.1.1.1
			timeout 300ms
		}`, 2, "hedge 500ms is not shorter than attempt_timeout 300ms (the default)"},

		// IPv6 forms.
		{"unclosed bracket", `upstreamtier {
			tier a [::1:53
		}`, 2, "[::1:53: unbalanced brackets"},
		{"unopened bracket", `upstreamtier {
			tier a ::1]:53
		}`, 2, "unbalanced brackets"},
		{"double brackets", `upstreamtier {
			tier a [[::1]]:53
		}`, 2, "unbalanced brackets"},
		{"text after the bracket", `upstreamtier {
			tier a [::1]53
		}`, 2, "unbalanced brackets"},
		{"unbracketed IPv6 with a server name and port", `upstreamtier {
			tier a tls://::1%dns.example:853
		}`, 2, "an IPv6 address with a port needs brackets: write tls://[::1]%dns.example:853"},
		{"link-local zone taken for a server name", `upstreamtier {
			tier a tls://fe80::1%eth0
		}`, 2, "link-local address fe80::1 cannot be a tls:// upstream"},
		{"link-local without its interface", `upstreamtier {
			tier a fe80::1
		}`, 2, "link-local address fe80::1 needs its interface: write [fe80::1%eth0]:53"},
		{"link-local with a port, without its interface", `upstreamtier {
			tier a [fe80::1]:5353
		}`, 2, "needs its interface"},
		{"a zone on a global IPv6 address", `upstreamtier {
			tier a 2001:db8::1%eth0
		}`, 2, "a %zone only for link-local IPv6 addresses"},

		{"a zone that is no interface", `upstreamtier {
			tier a [fe80::1%nosuchif0]:53
		}`, 2, "%nosuchif0: no such network interface"},
		{"IPv6 loopback and port without brackets", `upstreamtier {
			tier a ::1:5301
		}`, 2, "::1:5301 is not a server's address; an IPv6 address with a port is written [IP]:port"},
		{"unspecified address", `upstreamtier {
			tier a 0.0.0.0
		}`, 2, "0.0.0.0 is the unspecified address"},
		{"unspecified IPv6 address", `upstreamtier {
			tier a [::]:53
		}`, 2, ":: is the unspecified address"},
		{"multicast address", `upstreamtier {
			tier a 224.0.0.251:5353
		}`, 2, "224.0.0.251 is a multicast address"},

		// Host names and the resolver.
		{"resolver without a host name", `upstreamtier {
			tier a 1.1.1.1
			resolver 127.0.0.1
		}`, 3, "resolver does nothing here: no upstream is a host name"},
		{"resolver without an address", `upstreamtier {
			tier a dns.example
			resolver
		}`, 3, "resolver needs at least one IP[:port]"},
		{"resolver not an address", `upstreamtier {
			tier a dns.example
			resolver dns.google
		}`, 3, `resolver: "dns.google" is not IP or IP:port`},
		{"same host name in two tiers", `upstreamtier {
			tier a dns.example
			tier b dns.example:53
		}`, 3, `is already in tier "a"`},
		{"host name with a bad port", `upstreamtier {
			tier a dns.example:0
		}`, 2, `port "0" is not a number between 1 and 65535`},
		{"host name in a resolv.conf", `upstreamtier {
			tier a @NAMES@
		}`, 2, `nameserver "ns.example" is not an IP address; a resolv.conf file lists IP addresses; write a host name as a tier's TO, with resolver`},

		{"fall negative", `upstreamtier {
			tier a 1.1.1.1
			fall -1
		}`, 3, `fall: "-1" is not a number between 0 and 100`},
		{"rise 0", `upstreamtier {
			tier a 1.1.1.1
			rise 0
		}`, 3, `rise: "0" is not a number between 1 and 100`},

		// next and next_on_nodata.
		{"next without rcodes", `upstreamtier {
			tier a 1.1.1.1
			next
		}`, 3, "next needs at least one RCODE, e.g. NXDOMAIN"},
		{"next NOERROR", `upstreamtier {
			tier a 1.1.1.1
			next NOERROR
		}`, 3, "next: NOERROR is an answer"},
		{"next unknown rcode", `upstreamtier {
			tier a 1.1.1.1
			next NXDOMIAN
		}`, 3, `next: "NXDOMIAN" is not an rcode`},
		{"next rcode twice", `upstreamtier {
			tier a 1.1.1.1
			next NXDOMAIN nxdomain
		}`, 3, "next: nxdomain listed twice"},
		{"next_on_nodata with an argument", `upstreamtier {
			tier a 1.1.1.1
			next_on_nodata yes
		}`, 3, "next_on_nodata takes no arguments"},
		{"next in a tier", `upstreamtier {
			tier a 1.1.1.1 {
				next NXDOMAIN
			}
		}`, 3, "next belongs at the top of the upstreamtier block"},

		// Options that do nothing where they are.
		{"except zone twice", `upstreamtier {
			tier a 1.1.1.1
			except corp.example corp.example
		}`, 3, "except: corp.example. is listed twice, or inside another zone of the list"},
		{"except zone inside another", `upstreamtier {
			tier a 1.1.1.1 {
				except a.corp.example corp.example
			}
		}`, 3, "except: a.corp.example. is listed twice, or inside another"},
		{"tier except excluded at the top below", `upstreamtier {
			tier a 1.1.1.1 {
				except corp.example
			}
			except corp.example
		}`, 3, "the top-level except on line 5 already"},
		{"tier except already excluded at the top", `upstreamtier {
			except corp.example
			tier a 1.1.1.1 {
				except a.corp.example
			}
		}`, 4, `tier "a": except a.corp.example. changes nothing: the top-level except on line 2 already leaves it to the next plugin`},
		{"prefer_udp in a tier of tls:// only", `upstreamtier {
			tier a tls://1.1.1.1%a.example tls://1.0.0.1%a.example {
				prefer_udp
			}
		}`, 3, `tier "a": prefer_udp does nothing here: every upstream of the tier is tls://`},
		{"force_tcp in a tier of tls:// only", `upstreamtier {
			tier a tls://1.1.1.1 {
				tls_servername a.example
				force_tcp
			}
		}`, 4, "force_tcp does nothing here"},
		{"DoT upstream without a server name", `upstreamtier {
			tier a tls://1.1.1.1
		}`, 2, `tier "a": tls://1.1.1.1 has no server name to verify its certificate against`},
		{"DoT upstream without a server name, tier with a block", `upstreamtier {
			tier a 8.8.8.8 tls://1.1.1.1 {
				policy sequential
			}
		}`, 2, "tls://1.1.1.1 has no server name"},
		{"health_check domain twice", `upstreamtier {
			tier a 1.1.1.1
			health_check 1s domain a.example domain b.example
		}`, 3, "health_check: domain given twice"},
		{"health_check no_rec twice", `upstreamtier {
			tier a 1.1.1.1
			health_check 1s no_rec no_rec
		}`, 3, "health_check: no_rec given twice"},
		{"a CA file that is not PEM", `upstreamtier {
			tier a tls://1.1.1.1%a.example {
				tls @RESOLV@
			}
		}`, 3, "holds no PEM certificate"},
		{"udp:// transport", `upstreamtier {
			tier a udp://1.1.1.1
		}`, 2, "udp://1.1.1.1: unknown transport udp://"},
		{"tcp:// transport", `upstreamtier {
			tier a 8.8.8.8 tcp://1.1.1.1:53
		}`, 2, "unknown transport tcp://"},
		{"server name not a host name", `upstreamtier {
			tier a tls://1.1.1.1%a..b
		}`, 2, `server name "a..b" is not a host name`},

		{"tls_servername and %name on one upstream", `upstreamtier {
			tier a tls://1.1.1.1%a.example {
				tls_servername b.example
			}
		}`, 3, "tls://1.1.1.1%a.example: server name given twice: %a.example and tls_servername b.example"},
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
			desc: "minimal",
			input: `upstreamtier {
				tier a 1.1.1.1
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "three tiers keep their order",
			input: `upstreamtier {
				tier site 10.0.0.53 10.0.1.53:5353
				tier isp 192.0.2.1
				tier public 9.9.9.9 149.112.112.112
			}`,
			tiers: []setupTierWant{
				{name: "site", addrs: []string{"10.0.0.53:53", "10.0.1.53:5353"}},
				{name: "isp", addrs: []string{"192.0.2.1:53"}},
				{name: "public", addrs: []string{"9.9.9.9:53", "149.112.112.112:53"}},
			},
		},
		{
			desc: "four tiers with names using - and _",
			input: `upstreamtier {
				tier site-1 10.0.0.1
				tier Site_2 10.0.0.2
				tier isp 192.0.2.1
				tier z 192.0.2.2
			}`,
			tiers: []setupTierWant{
				{name: "site-1", addrs: []string{"10.0.0.1:53"}},
				{name: "Site_2", addrs: []string{"10.0.0.2:53"}},
				{name: "isp", addrs: []string{"192.0.2.1:53"}},
				{name: "z", addrs: []string{"192.0.2.2:53"}},
			},
		},
		{
			desc: "resolv.conf expands to its nameservers",
			input: `upstreamtier {
				tier site 192.0.2.1
				tier isp @RESOLV@
			}`,
			tiers: []setupTierWant{
				{name: "site", addrs: []string{"192.0.2.1:53"}},
				{name: "isp", addrs: []string{"10.0.0.1:53", "10.0.0.2:53"}},
			},
		},
		{
			desc: "resolv.conf mixed with addresses",
			input: `upstreamtier {
				tier a 192.0.2.1 @RESOLV@ 192.0.2.2:5300
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"192.0.2.1:53", "10.0.0.1:53", "10.0.0.2:53", "192.0.2.2:5300"}}},
		},
		{
			desc: "DoH and DoQ with server names, and the DoH method",
			input: `upstreamtier {
				tier a https://9.9.9.9%dns.quad9.net quic://94.140.14.14:8853%dns.adguard-dns.com {
					doh_method GET
				}
				tier b https://[2620:fe::fe] {
					tls_servername dns.quad9.net
				}
			}`,
			tiers: []setupTierWant{
				{name: "a", addrs: []string{"https://9.9.9.9:443", "quic://94.140.14.14:8853"}, sn: map[string]string{"https://9.9.9.9:443": "dns.quad9.net", "quic://94.140.14.14:8853": "dns.adguard-dns.com"}},
				{name: "b", addrs: []string{"https://[2620:fe::fe]:443"}, sn: map[string]string{"https://[2620:fe::fe]:443": "dns.quad9.net"}},
			},
		},
		{
			desc: "dns:// prefix",
			input: `upstreamtier {
				tier a dns://1.1.1.1 dns://8.8.8.8:5353
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53", "8.8.8.8:5353"}}},
		},
		{
			desc: "IPv6",
			input: `upstreamtier {
				tier a [::1]:53 [2001:db8::1] 2001:db8::2 dns://[2001:db8::3]:5353
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"[::1]:53", "[2001:db8::1]:53", "[2001:db8::2]:53", "[2001:db8::3]:5353"}}},
		},
		{
			desc: "tls with server name, default port 853",
			input: `upstreamtier {
				tier public tls://1.1.1.1%cloudflare-dns.com tls://9.9.9.9%dns.quad9.net
			}`,
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://1.1.1.1:853", "tls://9.9.9.9:853"},
				sn:    map[string]string{"tls://1.1.1.1:853": "cloudflare-dns.com", "tls://9.9.9.9:853": "dns.quad9.net"},
			}},
		},
		{
			desc: "tls with server name and port",
			input: `upstreamtier {
				tier public tls://1.1.1.1%name.example:8853
			}`,
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://1.1.1.1:8853"},
				sn:    map[string]string{"tls://1.1.1.1:8853": "name.example"},
			}},
		},
		{
			desc: "tls with IPv6, server name and port",
			input: `upstreamtier {
				tier public tls://[2606:4700::1111]%cloudflare-dns.com:8853 tls://[2606:4700::1001]%cloudflare-dns.com
			}`,
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://[2606:4700::1111]:8853", "tls://[2606:4700::1001]:853"},
				sn:    map[string]string{"tls://[2606:4700::1111]:8853": "cloudflare-dns.com", "tls://[2606:4700::1001]:853": "cloudflare-dns.com"},
			}},
		},
		{
			desc: "tls with IPv6, server name inside the brackets",
			input: `upstreamtier {
				tier public tls://[2606:4700::1111%cloudflare-dns.com]:8853 tls://[2606:4700::1001%cloudflare-dns.com]
			}`,
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://[2606:4700::1111]:8853", "tls://[2606:4700::1001]:853"},
				sn:    map[string]string{"tls://[2606:4700::1111]:8853": "cloudflare-dns.com", "tls://[2606:4700::1001]:853": "cloudflare-dns.com"},
			}},
		},
		{
			desc: "tier-level tls_servername",
			input: `upstreamtier {
				tier public tls://1.1.1.1 tls://1.0.0.1:8853 {
					tls_servername cloudflare-dns.com
				}
			}`,
			tiers: []setupTierWant{{
				name:  "public",
				addrs: []string{"tls://1.1.1.1:853", "tls://1.0.0.1:8853"},
				sn:    map[string]string{"tls://1.1.1.1:853": "cloudflare-dns.com", "tls://1.0.0.1:8853": "cloudflare-dns.com"},
			}},
		},
		{
			desc: "tls mixed with plain DNS to the same IP",
			input: `upstreamtier {
				tier a 1.1.1.1 tls://1.1.1.1%one.one.one.one
			}`,
			tiers: []setupTierWant{{
				name:  "a",
				addrs: []string{"1.1.1.1:53", "tls://1.1.1.1:853"},
				sn:    map[string]string{"tls://1.1.1.1:853": "one.one.one.one"},
			}},
		},
		{
			desc: "tls with a CA, client certificate and key",
			input: `upstreamtier {
				tier a tls://192.0.2.1%dns.example {
					tls @CERT@ @KEY@ @CERT@
				}
				tier b tls://192.0.2.2 {
					tls @CERT@
					tls_servername dns.example
				}
				tier c tls://192.0.2.3%dns.example {
					tls
				}
			}`,
			tiers: []setupTierWant{
				{name: "a", addrs: []string{"tls://192.0.2.1:853"}, sn: map[string]string{"tls://192.0.2.1:853": "dns.example"}, rootCAs: true, certs: 1},
				{name: "b", addrs: []string{"tls://192.0.2.2:853"}, sn: map[string]string{"tls://192.0.2.2:853": "dns.example"}, rootCAs: true},
				{name: "c", addrs: []string{"tls://192.0.2.3:853"}, sn: map[string]string{"tls://192.0.2.3:853": "dns.example"}},
			},
		},
		{
			desc: "FROM zones given",
			input: `upstreamtier example.org example.net {
				tier a 1.1.1.1
			}`,
			from:  []string{"example.org.", "example.net."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "FROM defaults to the server block keys",
			input: `upstreamtier {
				tier a 1.1.1.1
			}`,
			keys:  []string{"example.com."},
			from:  []string{"example.com."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "FROM zones override the server block keys",
			input: `upstreamtier sub.example.com example.org {
				tier a 1.1.1.1
			}`,
			keys:  []string{"example.com.:1053", "dns://example.org:53"},
			from:  []string{"sub.example.com.", "example.org."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "failover in lower case, top-level except",
			input: `upstreamtier . {
				tier a 1.1.1.1
				failover nxdomain servfail
				except corp.example Internal.Example.
			}`,
			from:     []string{"."},
			except:   []string{"corp.example.", "internal.example."},
			failover: []int{dns.RcodeNameError, dns.RcodeServerFailure},
			tiers:    []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "failover REFUSED only",
			input: `upstreamtier {
				tier a 1.1.1.1
				failover REFUSED
			}`,
			failover: []int{dns.RcodeRefused},
			tiers:    []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "policy random",
			input: `upstreamtier {
				tier a 1.1.1.1 8.8.8.8 {
					policy random
				}
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53", "8.8.8.8:53"}, policy: "random"}},
		},
		{
			desc: "policy round_robin",
			input: `upstreamtier {
				tier a 1.1.1.1 8.8.8.8 {
					policy round_robin
				}
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53", "8.8.8.8:53"}, policy: "round_robin"}},
		},
		{
			desc: "policy sequential",
			input: `upstreamtier {
				tier a 1.1.1.1 8.8.8.8 {
					policy sequential
				}
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53", "8.8.8.8:53"}, policy: "sequential"}},
		},
		{
			desc: "empty tier block",
			input: `upstreamtier {
				tier a 1.1.1.1 {
				}
				tier b 8.8.8.8
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}, {name: "b", addrs: []string{"8.8.8.8:53"}}},
		},
		{
			desc: "force_tcp and prefer_udp in different tiers, tier except",
			input: `upstreamtier {
				tier a 1.1.1.1 {
					force_tcp
					except corp.example
				}
				tier b 8.8.8.8 {
					prefer_udp
					except corp.example other.example
				}
			}`,
			tiers: []setupTierWant{
				{name: "a", addrs: []string{"1.1.1.1:53"}, forceTCP: true, except: []string{"corp.example."}},
				{name: "b", addrs: []string{"8.8.8.8:53"}, preferUDP: true, except: []string{"corp.example.", "other.example."}},
			},
		},
		{
			desc: "timeouts",
			input: `upstreamtier {
				tier a 1.1.1.1
				attempt_timeout 300ms
				timeout 2s
			}`,
			timeout: 2 * time.Second,
			attempt: 300 * time.Millisecond,
			tiers:   []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "attempt_timeout equal to timeout",
			input: `upstreamtier {
				timeout 1500ms
				attempt_timeout 1.5s
				tier a 1.1.1.1
			}`,
			timeout: 1500 * time.Millisecond,
			attempt: 1500 * time.Millisecond,
			tiers:   []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "FROM wider than the server block",
			input: `upstreamtier . {
				tier a 1.1.1.1
			}`,
			keys:  []string{"example.com."},
			from:  []string{"."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "FROM a reverse zone in CIDR notation",
			input: `upstreamtier 10.0.0.0/8 {
				tier a 1.1.1.1
			}`,
			from:  []string{"10.in-addr.arpa."},
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}},
		},
		{
			desc: "one IP in two tiers, plain and DoT: two servers",
			input: `upstreamtier {
				tier a 1.1.1.1
				tier b tls://1.1.1.1%one.one.one.one
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"1.1.1.1:53"}}, {name: "b", addrs: []string{"tls://1.1.1.1:853"}, sn: map[string]string{"tls://1.1.1.1:853": "one.one.one.one"}}},
		},
		{
			desc: "link-local IPv6 with its interface",
			input: `upstreamtier {
				tier a fe80::1%lo [fe80::2%lo]:5353
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"[fe80::1%lo]:53", "[fe80::2%lo]:5353"}}},
		},
		{
			desc: "IPv4-mapped IPv6 is the IPv4 address",
			input: `upstreamtier {
				tier a [::ffff:192.0.2.1]:53
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"192.0.2.1:53"}}},
		},
		{
			desc: "unbracketed IPv6 over tls with tls_servername",
			input: `upstreamtier {
				tier a tls://2001:db8::1 {
					tls_servername dns.example
				}
			}`,
			tiers: []setupTierWant{{name: "a", addrs: []string{"tls://[2001:db8::1]:853"}, sn: map[string]string{"tls://[2001:db8::1]:853": "dns.example"}}},
		},
		{
			desc: "a tier except inside FROM",
			input: `upstreamtier example.org {
				tier a 1.1.1.1 {
					except corp.example.org
				}
			}`,
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
	input := `upstreamtier {
		tier site 10.0.0.53
		tier isp 192.0.2.1
		timeout abc
	}`
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
		{"defaults", `upstreamtier {
			tier a 1.1.1.1
		}`, 30 * time.Second, 5 * time.Second, 2 * time.Second, 250 * time.Millisecond},
		{"standby_probe and memory set", `upstreamtier {
			tier a 1.1.1.1
			standby_probe 1m
			failover_memory 2s 100
		}`, time.Minute, 2 * time.Second, 2 * time.Second, 250 * time.Millisecond},
		{"both off", `upstreamtier {
			tier a 1.1.1.1
			standby_probe off
			failover_memory off
		}`, 0, 0, 2 * time.Second, 250 * time.Millisecond},
		{"attempt_timeout follows a short timeout", `upstreamtier {
			tier a 1.1.1.1
			timeout 500ms
			health_check 1s
		}`, 30 * time.Second, 5 * time.Second, 500 * time.Millisecond, time.Second},
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
