package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// unboundConf is one cold recursive resolver that never leaves loopback: no DNSSEC
// (iterator only, no trust anchor), both the root and loadZone are stub zones at the
// delay proxy, so no root hints are ever used, and no remote control. %[1]s is the
// directory, %[2]d the port, %[3]s the delay proxy's host@port.
//
// infra-cache-min-rtt keeps Unbound's retransmit timeout above the proxy's longest
// delay: with one authoritative address for everything, its adaptive timeout would
// otherwise fall below the slow names' 250 ms and resend them, doubling their load.
// qname minimisation is off so each miss is one authoritative query, the unit counted.
// "test." is one of Unbound's built-in NXDOMAIN zones (RFC 6761); nodefault lets loadZone through.
const unboundConf = `server:
    interface: 127.0.0.1
    port: %[2]d
    outgoing-interface: 127.0.0.1
    do-ip4: yes
    do-ip6: no
    do-udp: yes
    do-tcp: yes
    access-control: 127.0.0.0/8 allow
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "%[1]s"
    pidfile: "%[1]s/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    num-threads: 1
    module-config: "iterator"
    do-not-query-localhost: no
    qname-minimisation: no
    prefetch: no
    infra-cache-min-rtt: 1000
    statistics-interval: 0
    local-zone: "test." nodefault
    local-zone: "ready.example." redirect
    local-data: "ready.example. 60 IN A 192.0.2.2"
remote-control:
    control-enable: no
stub-zone:
    name: "."
    stub-addr: %[3]s
stub-zone:
    name: "` + loadZone + `"
    stub-addr: %[3]s
`

// startUnbound starts a fresh, cold Unbound on a free loopback port resolving through
// the delay proxy at auth. Readiness probes (probe*.ready.example., as forwarder.start
// sends) are answered from its local-data, so they reach no authoritative server.
func startUnbound(workDir, logPath, auth string) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "unbound-")
	if err != nil {
		return nil, err
	}
	return startDaemon("unbound", dir, logPath, func(port int) ([]string, error) {
		path := filepath.Join(dir, "unbound.conf")
		body := fmt.Sprintf(unboundConf, dir, port, hostAtPort(auth))
		return []string{"-d", "-c", path}, os.WriteFile(path, []byte(body), 0o600)
	}, func(addr string) error { return probe(addr, 10*time.Second) })
}

// hostAtPort turns host:port into Unbound's host@port.
func hostAtPort(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return host + "@" + port
}

// startDaemon runs bin in dir on a free loopback port: args writes its config for the port
// and returns its command line, ready waits until it serves. A port taken between
// freePort and the daemon's bind makes it fail; it is then tried again on another.
// The returned process removes dir when stopped.
func startDaemon(bin, dir, logPath string, args func(port int) ([]string, error), ready func(addr string) error) (*process, error) {
	if _, err := exec.LookPath(bin); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var err error
	for range 3 {
		var p *process
		if p, err = startOnce(bin, dir, logPath, args, ready); err == nil {
			return p, nil
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

// startOnce is one try of startDaemon; on failure it kills what it started and leaves dir.
func startOnce(bin, dir, logPath string, args func(port int) ([]string, error), ready func(addr string) error) (*process, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	argv, err := args(port)
	if err != nil {
		return nil, err
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, argv...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &process{name: bin, addr: loopback(port), dir: dir, cmd: cmd, log: log}
	if err := ready(p.addr); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		return nil, fmt.Errorf("%s: %w (log: %s)", bin, err, logPath)
	}
	return p, nil
}

// loopback returns 127.0.0.1:port.
func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
