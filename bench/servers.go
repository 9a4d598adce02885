package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// The upstreamkinds scenario's servers: every kind of upstream people put
// behind a forwarder, each a real server process on a free loopback port,
// started by the bench (never as a system service) with its config in a
// temp directory under -out. Each serves or reaches kindZoneFile, a zone
// of loadZone without a wildcard, so some names have data and others do not.

// The data kindZoneFile holds, which the scenario's checks expect.
const (
	kindA   = "198.51.100.1" // a.bench.test. A
	kindB   = "198.51.100.2" // b.bench.test. A
	kindTXT = "kinds"        // t.bench.test. TXT
)

// kindZoneFile is loadZone with a few names and no wildcard: nx.bench.test. is NXDOMAIN.
const kindZoneFile = `$TTL 3600
@   IN SOA ns hostmaster 1 3600 600 86400 3600
@   IN NS  ns
ns  IN A   127.0.0.1
a   IN A   ` + kindA + `
b   IN A   ` + kindB + `
t   IN TXT "` + kindTXT + `"
`

// startKindNSD starts NSD authoritative for loadZone with kindZoneFile and, when
// root, for the root too (rootZone of nsd.go): the recursive resolvers' only
// authoritative server. Without the root it is an authoritative-only server
// that REFUSES every name outside loadZone, the probe's ". NS" among them.
func startKindNSD(workDir, logPath string, root bool) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "nsd-")
	if err != nil {
		return nil, err
	}
	zones := "zone:\n    name: \"" + loadZone + "\"\n    zonefile: \"kinds.zone\"\n"
	files := map[string]string{"kinds.zone": kindZoneFile}
	if root {
		zones += "zone:\n    name: \".\"\n    zonefile: \"root.zone\"\n"
		files["root.zone"] = rootZone
	}
	for file, body := range files {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	return startDaemon("nsd", dir, logPath, func(port int) ([]string, error) {
		path := filepath.Join(dir, "nsd.conf")
		return []string{"-d", "-c", path}, os.WriteFile(path, []byte(fmt.Sprintf(nsdServerConf, dir, port)+zones), 0o600)
	}, kindWaitData)
}

// kindWaitData waits until addr answers a.bench.test. A with its data: the kind serves the zone.
func kindWaitData(addr string) error {
	return kindWaitRcode(addr, "a."+loadZone, dns.TypeA, dns.RcodeSuccess, 10*time.Second)
}

// kindWaitRcode asks addr for name and qtype until an answer with rcode arrives (and,
// for NOERROR, with a record in its answer section), so a cell never starts
// before its server serves; a refuser is ready when it refuses.
func kindWaitRcode(addr, name string, qtype uint16, rcode int, wait time.Duration) error {
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	var last error
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		r, _, err := c.Exchange(m, addr)
		if err == nil && r.Rcode == rcode && (rcode != dns.RcodeSuccess || len(r.Answer) > 0) {
			return nil
		}
		last = err
		if err == nil {
			last = fmt.Errorf("answer %s with %d records", dns.RcodeToString[r.Rcode], len(r.Answer))
		}
	}
	return fmt.Errorf("%s not answering %s %s with %s after %v: %v", addr, name, dns.TypeToString[qtype], dns.RcodeToString[rcode], wait, last)
}

// kindWriteConf returns a start function's args: it writes body(port) to dir/name and returns argv(path).
func kindWriteConf(dir, name string, body func(port int) string, argv func(path string) []string) func(int) ([]string, error) {
	return func(port int) ([]string, error) {
		path := filepath.Join(dir, name)
		return argv(path), os.WriteFile(path, []byte(body(port)), 0o600)
	}
}

// kresdConf is Knot Resolver on loopback with no DNSSEC and no name it blocks
// itself (its special-use names include test.). Its root hints take no port,
// so every query goes to the NSD as a stub (policy.STUB: no recursion asked,
// the answers taken as authoritative), and the hints point at a loopback
// address too, so nothing could leave loopback even without the policy.
// %[1]d is the port, %[2]s the NSD's host@port.
const kresdConf = `net.ipv6 = false
net.listen('127.0.0.1', %[1]d, { kind = 'dns' })
modules = { 'hints > iterate' }
modules.unload('priming')
modules.unload('detect_time_skew')
modules.unload('detect_time_jump')
trust_anchors.remove('.')
policy.special_names = {}
hints.root({['a.root-servers.net.'] = '127.0.0.1'})
policy.add(policy.all(policy.STUB('%[2]s')))
cache.size = 10 * MB
`

// startKindKresd starts Knot Resolver resolving through the NSD at auth.
func startKindKresd(workDir, logPath, auth string) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "kresd-")
	if err != nil {
		return nil, err
	}
	return startDaemon("kresd", dir, logPath, kindWriteConf(dir, "kresd.conf",
		func(port int) string { return fmt.Sprintf(kresdConf, port, hostAtPort(auth)) },
		func(path string) []string { return []string{"-n", "-c", path, dir} }), kindWaitData)
}

// pdnsRecursorConf is PowerDNS Recursor on loopback: loadZone and the root are
// forward-zones at the NSD (sent without recursion desired, as to an
// authoritative server), the root hints a loopback address, no DNSSEC and no
// security polling (a query for a name of the vendor's). %[1]s is the
// directory, %[2]d the port, %[3]s the NSD's address.
const pdnsRecursorConf = `local-address=127.0.0.1
local-port=%[2]d
allow-from=127.0.0.0/8
daemon=no
write-pid=no
socket-dir=%[1]s
hint-file=%[1]s/root.hints
forward-zones=` + loadZone + `=%[3]s, .=%[3]s
query-local-address=127.0.0.1
dnssec=off
security-poll-suffix=
threads=1
disable-syslog=yes
`

// startKindPdns starts PowerDNS Recursor resolving through the NSD at auth.
func startKindPdns(workDir, logPath, auth string) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "pdns-")
	if err != nil {
		return nil, err
	}
	hints := ". 3600000 IN NS a.root-servers.net.\na.root-servers.net. 3600000 IN A 127.0.0.1\n"
	if err := os.WriteFile(filepath.Join(dir, "root.hints"), []byte(hints), 0o600); err != nil {
		return nil, err
	}
	return startDaemon("pdns_recursor", dir, logPath, kindWriteConf(dir, "recursor.conf",
		func(port int) string { return fmt.Sprintf(pdnsRecursorConf, dir, port, auth) },
		func(string) []string { return []string{"--config-dir=" + dir} }), kindWaitData)
}

// namedConf is BIND authoritative-only: recursion no, loadZone as a primary, no
// control channel, no DNSSEC validation, no NOTIFY. %[1]s is the directory, %[2]d the port.
const namedConf = `options {
    directory "%[1]s";
    pid-file "%[1]s/named.pid";
    session-keyfile "%[1]s/session.key";
    managed-keys-directory "%[1]s";
    listen-on port %[2]d { 127.0.0.1; };
    listen-on-v6 { none; };
    recursion no;
    allow-query { any; };
    dnssec-validation no;
    notify no;
};
controls { };
zone "` + loadZone + `" { type primary; file "%[1]s/kinds.zone"; };
`

// startKindNamed starts BIND 9 authoritative for loadZone only; with refuse, it
// refuses every query (allow-query none: an ACL that does not admit us).
func startKindNamed(workDir, logPath string, refuse bool) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "named-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "kinds.zone"), []byte(kindZoneFile), 0o600); err != nil {
		return nil, err
	}
	ready := kindWaitData
	if refuse {
		ready = kindWaitRefused
	}
	return startDaemon("named", dir, logPath, kindWriteConf(dir, "named.conf",
		func(port int) string {
			conf := fmt.Sprintf(namedConf, dir, port)
			if refuse {
				conf = strings.Replace(conf, "allow-query { any; }", "allow-query { none; }", 1)
			}
			return conf
		},
		func(path string) []string { return []string{"-g", "-n", "1", "-u", "root", "-c", path} }), ready)
}

// kindDnsmasqBase is every dnsmasq's start: in the foreground, no system config, hosts or resolv.conf, loopback only.
func kindDnsmasqBase(port int) []string {
	return []string{"--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--listen-address=127.0.0.1", fmt.Sprintf("--port=%d", port), "--bind-interfaces", "--pid-file="}
}

// dnsmasqStubArgs is dnsmasq with local records only: loadZone is local (a name
// it has no record for is NXDOMAIN), and with no upstream server it REFUSES
// every other name, ". NS" included.
func dnsmasqStubArgs(port int) []string {
	return append(kindDnsmasqBase(port), "--local=/"+strings.TrimSuffix(loadZone, ".")+"/",
		"--host-record=a."+strings.TrimSuffix(loadZone, ".")+","+kindA,
		"--host-record=b."+strings.TrimSuffix(loadZone, ".")+","+kindB,
		"--txt-record=t."+strings.TrimSuffix(loadZone, ".")+","+kindTXT)
}

// dnsmasqForwarderArgs is dnsmasq forwarding everything to auth, without a cache.
func dnsmasqForwarderArgs(port int, auth string) []string {
	return append(kindDnsmasqBase(port), "--cache-size=0", "--server="+dnsmasqAddr(auth))
}

// startKindDnsmasq starts dnsmasq with the arguments argv gives for its port.
func startKindDnsmasq(workDir, logPath string, argv func(port int) []string) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "dnsmasq-")
	if err != nil {
		return nil, err
	}
	return startDaemon("dnsmasq", dir, logPath, func(port int) ([]string, error) { return argv(port), nil }, kindWaitData)
}

// dnsdistKindConf is dnsdist forwarding everything to one backend with its
// default health check (a.root-servers.net. A, which an authoritative-only
// backend REFUSES: dnsdist counts any rcode but SERVFAIL as up). No security polling.
const dnsdistKindConf = `setLocal("127.0.0.1:%d")
setSecurityPollSuffix("")
newServer({address="%s"})
`

// startKindDnsdist starts dnsdist forwarding to auth.
func startKindDnsdist(workDir, logPath, auth string) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "dnsdist-")
	if err != nil {
		return nil, err
	}
	return startDaemon("dnsdist", dir, logPath, kindWriteConf(dir, "dnsdist.conf",
		func(port int) string { return fmt.Sprintf(dnsdistKindConf, port, auth) },
		func(path string) []string { return []string{"--supervised", "--disable-syslog", "-C", path} }), kindWaitData)
}

// CoreDNS server blocks for the kinds that are a second coredns process; %[1]d
// is the port. The file server's block is for loadZone only, so CoreDNS
// REFUSES other names; the template stub's is for the root, so a name or type
// it has no template for (". NS") falls off the end of the chain: SERVFAIL.
const (
	coreFileKind = loadZone + `:%[1]d {
    bind 127.0.0.1
    file %[2]s
}
`
	coreTemplateKind = `.:%[1]d {
    bind 127.0.0.1
    template IN A ` + loadZone + ` {
        match ^(?P<h>[ab])\.bench\.test\.$
        answer "{{ .Name }} 60 IN A {{ if eq .Group.h \"a\" }}` + kindA + `{{ else }}` + kindB + `{{ end }}"
    }
}
`
	coreForwardKind = `.:%[1]d {
    bind 127.0.0.1
    forward . %[2]s
}
`
	coreServfailKind = `.:%[1]d {
    bind 127.0.0.1
    template ANY ANY . {
        rcode SERVFAIL
    }
}
`
)

// startCoreKind starts coredns serving block, one of the constants above, with
// %[1]d its port and %[2]s arg (the forward's target), or without an arg the
// path of kindZoneFile written into its directory; ready waits until it serves.
func startCoreKind(coredns, workDir, logPath, block, arg string, ready func(string) error) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "corekind-")
	if err != nil {
		return nil, err
	}
	if arg == "" {
		arg = filepath.Join(dir, "kinds.zone")
		if err := os.WriteFile(arg, []byte(kindZoneFile), 0o600); err != nil {
			return nil, err
		}
	}
	// With explicit argument indexes fmt does not flag an unused arg.
	return startDaemon(coredns, dir, logPath, kindWriteConf(dir, "Corefile",
		func(port int) string { return fmt.Sprintf(block, port, arg) },
		func(path string) []string { return []string{"-conf", path, "-quiet"} }), ready)
}

// startKindRefuser starts an Unbound that REFUSES every query from loopback (its
// access control, as a resolver that does not serve us): the resolvers
// scenario's config with refuse for allow. auth is never reached.
func startKindRefuser(workDir, logPath, auth string) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "refuser-")
	if err != nil {
		return nil, err
	}
	return startDaemon("unbound", dir, logPath, kindWriteConf(dir, "unbound.conf",
		func(port int) string {
			return strings.Replace(fmt.Sprintf(unboundConf, dir, port, hostAtPort(auth)), "127.0.0.0/8 allow", "127.0.0.0/8 refuse", 1)
		},
		func(path string) []string { return []string{"-d", "-c", path} }), kindWaitRefused)
}

// kindWaitRefused waits until addr refuses a.bench.test. A: a refuser is ready.
func kindWaitRefused(addr string) error {
	return kindWaitRcode(addr, "a."+loadZone, dns.TypeA, dns.RcodeRefused, 10*time.Second)
}
