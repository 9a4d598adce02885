package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// upstreamtierStanza is the plugin's configuration under test; edit it here
// when the plugin grows options. %[1]s is tier 1's address, %[2]s tier 2's,
// %[3]s the options one scenario adds, each on a line of its own
// (max_concurrent for overload).
const upstreamtierStanza = `upstreamtier {
        tier t1 %[1]s
        tier t2 %[2]s%[3]s
    }`

// upstreamtierTier3 and forwardTier3 add a third tier's upstream after tier 2's
// address in their stanzas (the resolvers scenario); %s is its address.
const (
	upstreamtierTier3 = "\n        tier t3 %s"
	forwardTier3      = " %s"
)

// forwardStanza is CoreDNS forward at its best for failover: the primary
// first, fast health checks, one failure marks an upstream down, and a
// SERVFAIL or REFUSED answer tries the next upstream as upstreamtier does.
// %[3]s is as in upstreamtierStanza.
const forwardStanza = `forward . %[1]s %[2]s {
        policy sequential
        health_check 0.5s
        max_fails 1
        failover SERVFAIL REFUSED%[3]s
    }`

// templateStanza answers every A query itself with no upstream: CoreDNS's own
// cost of a query (reading, the plugin chain, writing the answer) plus the
// template plugin's, the floor under any plugin that forwards.
const templateStanza = `template IN A . {
        answer "{{ .Name }} 30 IN A ` + answerIP + `"
    }`

// erraticStanza answers every query itself too, with erratic's fixed A record
// (192.0.2.53) and no text template: the floor without template's own work.
const erraticStanza = `erratic {
        drop 0
    }`

// answerIP is the address in the template's answers and the responder's, so
// the throughput scenario's configs all answer alike.
const answerIP = "192.0.2.53"

// corefile wraps a plugin stanza in a server block bound to loopback, with
// metrics (the Go runtime's go_goroutines among them) on a port of their own.
const corefile = `.:%d {
    bind 127.0.0.1
    prometheus 127.0.0.1:%d
    %s
}
`

// dnsdistConf keeps T1 first with firstAvailable and checks both every second.
// Security polling is off because it would query the internet.
const dnsdistConf = `setLocal("127.0.0.1:%d")
setSecurityPollSuffix("")
setServerPolicy(firstAvailable)
newServer({address="%s", order=1, healthCheckMode="auto", checkInterval=1})
newServer({address="%s", order=2, healthCheckMode="auto", checkInterval=1})
`

// dnsdistTier3 is a third tier's server for dnsdistConf, after T2.
const dnsdistTier3 = `newServer({address="%s", order=3, healthCheckMode="auto", checkInterval=1})
`

// conf is what one start of a forwarder is configured with.
type conf struct {
	port        int    // where it serves DNS
	metricsPort int    // where a coredns-based forwarder serves /metrics
	t1, t2      string // the upstreams' addresses
	t3          string // a third tier's upstream, "" for two tiers
	limit       int    // queries in flight at most (max_concurrent); 0 for no limit
}

// forwarder is one DNS forwarder the benchmark can start in front of two upstreams.
type forwarder struct {
	name    string
	bin     string // program to run; looked up on PATH unless absolute
	coredns bool   // the coredns binary: serves Go metrics and takes max_concurrent
	// limit, set on a copy for one scenario, caps the queries in flight; coredns-based forwarders only.
	limit int
	// t3, set on a copy for one scenario, is a third tier's upstream, tried after t2.
	t3 string
	// args writes any config file into dir and returns the command line.
	args func(dir string, c conf) ([]string, error)
}

// forwarders returns every forwarder known to the benchmark, coredns being the binary for the first two.
func forwarders(coredns string) []forwarder {
	coreArgs := func(stanza, tier3 string) func(string, conf) ([]string, error) {
		return func(dir string, c conf) ([]string, error) {
			opts := ""
			if c.limit > 0 {
				opts = fmt.Sprintf("\n        max_concurrent %d", c.limit)
			}
			t2 := c.t2
			if c.t3 != "" {
				t2 += fmt.Sprintf(tier3, c.t3)
			}
			return writeCorefile(dir, c, fmt.Sprintf(stanza, c.t1, t2, opts))
		}
	}
	return []forwarder{
		{name: "upstreamtier", bin: coredns, coredns: true, args: coreArgs(upstreamtierStanza, upstreamtierTier3)},
		{name: "forward", bin: coredns, coredns: true, args: coreArgs(forwardStanza, forwardTier3)},
		{name: "dnsdist", bin: "dnsdist", args: func(dir string, c conf) ([]string, error) {
			path := filepath.Join(dir, "dnsdist.conf")
			body := fmt.Sprintf(dnsdistConf, c.port, c.t1, c.t2)
			if c.t3 != "" {
				body += fmt.Sprintf(dnsdistTier3, c.t3)
			}
			return []string{"--supervised", "--disable-syslog", "-C", path}, os.WriteFile(path, []byte(body), 0o600)
		}},
		{name: "dnsmasq", bin: "dnsmasq", args: func(_ string, c conf) ([]string, error) {
			args := []string{
				"--no-daemon", "--conf-file=/dev/null", // no system config sneaking in
				"--no-resolv", "--no-hosts", "--strict-order",
				"--server=" + dnsmasqAddr(c.t1), "--server=" + dnsmasqAddr(c.t2),
				"--listen-address=127.0.0.1", fmt.Sprintf("--port=%d", c.port), "--bind-interfaces",
				"--cache-size=0", "--pid-file=",
			}
			if c.t3 != "" {
				args = append(args, "--server="+dnsmasqAddr(c.t3)) // --strict-order keeps the command line's order
			}
			return args, nil
		}},
	}
}

// writeCorefile writes a Corefile serving stanza on c's ports into dir and returns coredns's arguments.
func writeCorefile(dir string, c conf, stanza string) ([]string, error) {
	path := filepath.Join(dir, "Corefile")
	body := fmt.Sprintf(corefile, c.port, c.metricsPort, stanza)
	return []string{"-conf", path, "-quiet"}, os.WriteFile(path, []byte(body), 0o600)
}

// fixedCoreDNS is the coredns binary serving a stanza that names its own upstreams, if any:
// the addresses start is given are not used.
func fixedCoreDNS(name, coredns, stanza string) forwarder {
	return forwarder{name: name, bin: coredns, coredns: true, args: func(dir string, c conf) ([]string, error) {
		return writeCorefile(dir, c, stanza)
	}}
}

// dnsmasqAddr turns host:port into dnsmasq's host#port.
func dnsmasqAddr(addr string) string { return strings.Replace(addr, ":", "#", 1) }

// available reports whether the forwarder's program can be run here.
func (f forwarder) available() bool {
	_, err := exec.LookPath(f.bin)
	return err == nil
}

// process is a running forwarder.
type process struct {
	name string
	addr string
	dir  string // the forwarder's config directory, removed on stop
	cmd  *exec.Cmd
	log  *os.File
	// metrics is the URL of its Prometheus metrics, "" for a forwarder that serves none.
	metrics string
}

// start runs f on a free loopback port in front of t1 and t2, logging to logPath, and waits until it answers.
func (f forwarder) start(workDir, logPath, t1, t2 string) (*process, error) {
	c := conf{t1: t1, t2: t2, t3: f.t3, limit: f.limit}
	var err error
	if c.port, err = freePort(); err != nil {
		return nil, err
	}
	if f.coredns {
		if c.metricsPort, err = freePort(); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(workDir, f.name+"-")
	if err != nil {
		return nil, err
	}
	args, err := f.args(dir, c)
	if err != nil {
		return nil, err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(f.bin, args...) //nolint:gosec // G204: the forwarder binaries are the benchmark's own, named by its flags
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	if err := cmd.Start(); err != nil {
		log.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	p := &process{name: f.name, addr: fmt.Sprintf("127.0.0.1:%d", c.port), dir: dir, cmd: cmd, log: log}
	if f.coredns {
		p.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", c.metricsPort)
	}
	if err := probe(p.addr, 10*time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w (log: %s)", f.name, err, logPath)
	}
	return p, nil
}

// stop asks the forwarder to exit and kills it if it does not within 3 s.
func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
	p.log.Close()
	os.RemoveAll(p.dir)
}

// cpuTime returns the user+system CPU time the process has used so far.
func (p *process) cpuTime() (time.Duration, error) {
	return procCPU(strconv.Itoa(p.cmd.Process.Pid))
}

// procCPU returns the user+system CPU time of /proc/PID, all its threads included.
func procCPU(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after its closing ')' do not.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc stat: %q", s)
	}
	var utime, stime int64
	fmt.Sscan(fields[11], &utime) // field 14 of stat(5); fields[0] is field 3
	fmt.Sscan(fields[12], &stime)
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// freePort returns a loopback port that is free for UDP and TCP right now, picked
// below the kernel's ephemeral range: an upstream whose port is Closed must be able
// to bind it again, and at thousands of queries per second a forwarder's own
// outgoing sockets would otherwise soon take it.
func freePort() (int, error) {
	lo := ephemeralLow()
	for range 50 {
		port := 10000 + rand.IntN(lo-10000) //nolint:gosec // G404: a port to try, no secret
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		t, err := net.Listen("tcp", u.LocalAddr().String())
		u.Close()
		if err == nil {
			t.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free loopback port")
}

// ephemeralLow returns the first port of the kernel's ephemeral range.
func ephemeralLow() int {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		fmt.Sscan(string(b), &lo)
	}
	return max(lo, 10001)
}
