package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/miekg/dns"
)

// loadAnswer is the A record every load name gets: the wildcard of loadZone.
const loadAnswer = "192.0.2.1"

// nsdServerConf runs NSD unprivileged in its own directory, on loopback
// only, with rate limiting off (the resolvers all ask from 127.0.0.1), and
// no zones: each scenario adds its own. %[1]s is the directory, %[2]d the
// port.
const nsdServerConf = `server:
    ip-address: 127.0.0.1
    port: %[2]d
    do-ip4: yes
    do-ip6: no
    username: ""
    chroot: ""
    zonesdir: "%[1]s"
    zonelistfile: "%[1]s/zone.list"
    database: ""
    pidfile: "%[1]s/nsd.pid"
    xfrdfile: "%[1]s/xfrd.state"
    xfrdir: "%[1]s"
    server-count: 1
    verbosity: 1
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
`

// nsdConf is the resolvers scenario's NSD: the root and loadZone.
const nsdConf = nsdServerConf + `zone:
    name: "."
    zonefile: "root.zone"
zone:
    name: "` + loadZone + `"
    zonefile: "load.zone"
`

// rootZone is a tiny root: every name outside loadZone gets an answer or NXDOMAIN from
// here, on loopback, and the health checks of forward and upstreamtier (". NS") and of
// dnsdist (a.root-servers.net. A) resolve. Its NS address is never used: the resolvers
// reach it through their stub-zone, the delay proxy.
const rootZone = `$TTL 86400
.                   IN SOA ns.root. hostmaster.root. 1 3600 600 86400 3600
.                   IN NS  a.root-servers.net.
a.root-servers.net. IN A   127.0.0.1
`

// loadZoneFile answers every load name with loadAnswer for a day, so a name misses only once per resolver.
const loadZoneFile = `$TTL 86400
@   IN SOA ns hostmaster 1 3600 600 86400 3600
@   IN NS  ns
ns  IN A   127.0.0.1
*   IN A   ` + loadAnswer + `
`

// startNSD starts NSD on a free loopback port with the root and load zones, logging to logPath.
func startNSD(workDir, logPath string) (*process, error) {
	dir, err := os.MkdirTemp(workDir, "nsd-")
	if err != nil {
		return nil, err
	}
	for file, body := range map[string]string{"root.zone": rootZone, "load.zone": loadZoneFile} {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	return startDaemon("nsd", dir, logPath, func(port int) ([]string, error) {
		path := filepath.Join(dir, "nsd.conf")
		return []string{"-d", "-c", path}, os.WriteFile(path, []byte(fmt.Sprintf(nsdConf, dir, port)), 0o600)
	}, func(addr string) error { return askSOA(addr, loadZone, 10*time.Second) })
}

// askSOA asks addr for zone's SOA until an authoritative answer arrives.
func askSOA(addr, zone string, wait time.Duration) error {
	c := &dns.Client{Timeout: 300 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	var last error
	for deadline := time.Now().Add(wait); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		r, _, err := c.Exchange(m, addr)
		if err == nil && r.Authoritative && len(r.Answer) > 0 {
			return nil
		}
		last = err
	}
	return fmt.Errorf("%s not answering %s SOA after %v: %v", addr, zone, wait, last)
}
