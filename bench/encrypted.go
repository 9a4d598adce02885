package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

func init() { register(benchScenario{"encrypted", (*bench).encryptedScenario}) }

// Settings of this file's scenarios, from the command line.
var (
	transportList = flag.String("transports", "dot,doh,doq", "encrypted scenarios: comma-separated transports to run")
	encserverBin  = flag.String("encserver", "", "encrypted scenarios: the encserver binary (default: build bench/encserver into OUT/encserver)")
)

// encTransport is one encrypted DNS transport of the encrypted scenarios.
type encTransport struct {
	id     string // what -transports takes: dot, doh, doq
	name   string // DoT, DoH, DoQ
	scheme string // the address scheme in Corefiles
	opt    string // an option both forwarders get for this transport, "" for none
}

// encTransports are the transports the encrypted scenarios can run, in run order.
var encTransports = []encTransport{
	{id: "dot", name: "DoT", scheme: "tls"},
	{id: "doh", name: "DoH", scheme: "https", opt: "doh_method POST"}, // forward's default, written out for both
	{id: "doq", name: "DoQ", scheme: "quic"},
}

// pickTransports returns the transports whose ids are listed, in run order; an unknown id is an error.
func pickTransports(ids []string) ([]encTransport, error) {
	var picked []encTransport
	for _, id := range ids {
		if !slices.ContainsFunc(encTransports, func(t encTransport) bool { return t.id == id }) {
			return nil, fmt.Errorf("no transport %q (there are dot, doh, doq)", id)
		}
	}
	for _, t := range encTransports {
		if slices.Contains(ids, t.id) {
			picked = append(picked, t)
		}
	}
	return picked, nil
}

// encForwarders are the forwarders the encrypted scenarios compare, both from the coredns binary.
var encForwarders = []string{"upstreamtier", "forward"}

// encAnswer is what the encrypted upstream answers: A queries with the IP %s, any other
// query an empty NOERROR, as a resolver answers the NS probes of health checks.
const encAnswer = `template IN A . {
        answer "{{ .Name }} 30 IN A %s"
    }
    template ANY ANY . {
        rcode NOERROR
    }`

// encTierStanza is upstreamtier with the encrypted upstream %[1]s as tier 1, trusting
// the CA file %[2]s; %[3]s is the tier's extra options, %[4]s the tiers after it.
const encTierStanza = `upstreamtier {
        tier t1 %[1]s {
            tls %[2]s
            tls_servername ` + upstreamName + `%[3]s
        }%[4]s
    }`

// encForwardStanza is forward as in forwardStanza with the encrypted upstream %[1]s
// first; %[2]s is the CA file, %[3]s extra options, %[4]s the upstreams after it.
const encForwardStanza = `forward . %[1]s%[4]s {
        tls %[2]s
        tls_servername ` + upstreamName + `%[3]s
        policy sequential
        health_check 0.5s
        max_fails 1
        failover SERVFAIL REFUSED
    }`

// encStanza returns fw's stanza with the encrypted upstream on port of 127.0.0.1 as tier 1,
// verified against the CA file ca, and the plain-DNS upstream t2 as tier 2 unless it is "".
func encStanza(fw string, t encTransport, port int, ca, t2 string) string {
	addr := fmt.Sprintf("%s://127.0.0.1:%d", t.scheme, port)
	if fw == "upstreamtier" {
		return fmt.Sprintf(encTierStanza, addr, ca, optLine(t.opt, 12), prefixed("\n        tier t2 ", t2))
	}
	return fmt.Sprintf(encForwardStanza, addr, ca, optLine(t.opt, 8), prefixed(" ", t2))
}

// optLine returns opt on a line of its own indented by indent spaces, or "" for no option.
func optLine(opt string, indent int) string { return prefixed("\n"+strings.Repeat(" ", indent), opt) }

// prefixed returns prefix+s, or "" when s is "".
func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// encBlock returns a server block for scheme on port of 127.0.0.1 with the key pair's certificate, answering A queries with ip.
func encBlock(scheme string, port int, kp keyPair, ip string) string {
	return fmt.Sprintf("%s://.:%d {\n    bind 127.0.0.1\n    tls %s %s\n    %s\n}\n", scheme, port, kp.Cert, kp.Key, fmt.Sprintf(encAnswer, ip))
}

// encUpstream is the encrypted upstream as a forwarder to start: encserver serving blocks,
// and plain DNS answering with ip on the port start picks, which start's readiness probe asks.
func encUpstream(bin string, blocks []string, ip string) forwarder {
	return forwarder{name: "encserver", bin: bin, args: func(dir string, c conf) ([]string, error) {
		path := filepath.Join(dir, "Corefile")
		body := fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n    %s\n}\n", c.port, fmt.Sprintf(encAnswer, ip)) + strings.Join(blocks, "")
		return []string{"-conf", path, "-quiet"}, os.WriteFile(path, []byte(body), 0o600)
	}}
}

// encSetup is what both encrypted scenarios need: the forwarders to compare, the transports, the upstream's binary and the certificates.
type encSetup struct {
	fws        []string
	transports []encTransport
	bin        string
	certs      *certSet
	notes      []string
}

// encPrepare picks the forwarders of fws the encrypted scenarios run, builds encserver and writes the certificates;
// a nil setup with no error means no forwarder to run.
func (b *bench) encPrepare(fws []forwarder) (*encSetup, error) {
	s := &encSetup{}
	var others []string
	for _, f := range fws {
		if slices.Contains(encForwarders, f.name) {
			s.fws = append(s.fws, f.name)
		} else {
			others = append(others, f.name)
		}
	}
	if len(others) > 0 {
		s.notes = append(s.notes, strings.Join(others, ", ")+": not run; the encrypted scenarios compare the coredns-based forwarders")
	}
	if len(s.fws) == 0 {
		return nil, nil
	}
	var err error
	if s.transports, err = pickTransports(encryptedTransports()); err != nil {
		return nil, err
	}
	if s.bin, err = b.encServerBinary(); err != nil {
		return nil, err
	}
	s.certs, err = writeCerts(filepath.Join(b.out, "tls"))
	return s, err
}

// encServerBinary returns the encserver binary, building bench/encserver into OUT/encserver once when none is given.
func (b *bench) encServerBinary() (string, error) {
	if (*encserverBin) != "" {
		return filepath.Abs((*encserverBin))
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("building encserver (or give -encserver): %w", err)
	}
	path := filepath.Join(b.out, "encserver")
	fmt.Println("building", path)
	cmd := exec.Command("go", "build", "-o", path, "./encserver")
	cmd.Dir = filepath.Join(root, "bench") // the bench's module
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building encserver: %w", err)
	}
	(*encserverBin) = path
	return path, nil
}

// startError returns why a config did not start: the first error line of its log, else err.
func startError(logPath string, err error) string {
	log, _ := os.ReadFile(logPath)
	for line := range strings.Lines(string(log)) {
		if strings.Contains(line, "Error") || strings.Contains(line, "error") {
			return strings.TrimSpace(line)
		}
	}
	return err.Error()
}

// encConfig is one forwarder over one transport in the encrypted scenario.
type encConfig struct {
	fw    string
	t     encTransport
	t2    bool // upstreamtier with a plain-DNS tier 2 behind the encrypted one
	p     *process
	sat   []satRound
	upCPU []time.Duration // the upstream's CPU per NOERROR answer, one per round
}

// encryptedScenario runs upstreamtier and forward over each encrypted transport to one encserver,
// flat out in alternated rounds, and returns the table with the ratio per transport.
func (b *bench) encryptedScenario(fws []forwarder) (string, error) {
	const title = "### encrypted: one DoT, DoH or DoQ upstream, healthy, flat out\n\n"
	s, err := b.encPrepare(fws)
	if err != nil || s == nil {
		return title + "Not run: neither upstreamtier nor forward is among the forwarders.\n", err
	}
	ports := map[string]int{}
	var blocks []string
	for _, t := range s.transports {
		if ports[t.id], err = freePort(); err != nil {
			return "", err
		}
		blocks = append(blocks, encBlock(t.scheme, ports[t.id], s.certs.good, answerIP))
	}
	up, err := encUpstream(s.bin, blocks, answerIP).start(b.out, filepath.Join(b.out, "logs", "encrypted-upstream.log"), "", "")
	if err != nil {
		return "", err
	}
	defer up.stop()
	var cs []*encConfig
	defer func() {
		for _, c := range cs {
			c.p.stop()
		}
	}()
	for _, t := range s.transports {
		for _, c := range encConfigs(s.fws, t) {
			name := c.fw + "-" + t.id
			t2 := ""
			if c.t2 {
				name, t2 = name+"-t2", up.addr
			}
			logPath := filepath.Join(b.out, "logs", "encrypted-"+name+".log")
			if c.p, err = fixedCoreDNS(name, b.coredns, encStanza(c.fw, t, ports[t.id], s.certs.ca, t2)).start(b.out, logPath, "", ""); err != nil {
				s.notes = append(s.notes, fmt.Sprintf("%s: not run, it did not start: %s", c.label(), startError(logPath, err)))
				continue
			}
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return title + "Not run: no config started.\n" + strings.Join(s.notes, "\n") + "\n", nil
	}
	if err := b.encRounds(cs, up); err != nil {
		return "", err
	}
	return b.encTable(title, cs, s.notes), nil
}

// encConfigs are the configs of transport t for the forwarders fws: each
// forwarder with the one encrypted upstream and, for upstreamtier, also
// with a plain-DNS tier 2 behind it, where an attempt may be handed over.
func encConfigs(fws []string, t encTransport) []*encConfig {
	var cs []*encConfig
	for _, fw := range fws {
		cs = append(cs, &encConfig{fw: fw, t: t})
		if fw == "upstreamtier" {
			cs = append(cs, &encConfig{fw: fw, t: t, t2: true})
		}
	}
	return cs
}

// label names the config in tables and notes.
func (c *encConfig) label() string {
	if c.t2 {
		return c.fw + " " + c.t.name + " with a tier 2"
	}
	return c.fw + " " + c.t.name
}

// encRounds runs every config flat out in each of the bench's rounds, in roundOrder, and
// records the upstream's CPU beside the forwarder's; the upstream's is not other processes' load.
func (b *bench) encRounds(cs []*encConfig, up *process) error {
	for k := range *tputRounds {
		for _, i := range roundOrder(k, len(cs)) {
			c := cs[i]
			fmt.Printf("  encrypted: %s flat out for %v, round %d of %d\n", c.p.name, (*tputDur), k+1, (*tputRounds))
			up0, err := up.cpuTime()
			if err != nil {
				return err
			}
			r, err := b.saturate(c.p)
			if err != nil {
				return err
			}
			up1, err := up.cpuTime()
			if err != nil {
				return err
			}
			r.other = max(0, r.other-(up1-up0).Seconds()/r.elapsed.Seconds())
			c.sat = append(c.sat, r)
			c.upCPU = append(c.upCPU, (up1-up0)/time.Duration(r.answered))
		}
	}
	return nil
}

// encCPUTarget is the most CPU per query upstreamtier may cost over forward on the same transport.
const encCPUTarget = 1.1

// encTable renders the encrypted scenario: a row per transport and forwarder, then upstreamtier / forward per transport.
func (b *bench) encTable(title string, cs []*encConfig, notes []string) string {
	var s strings.Builder
	s.WriteString(title)
	fmt.Fprintf(&s, "%s CPU / query counts the forwarder's process only. Its one upstream is one `bench/encserver` process "+
		"(CoreDNS with a tls directive, answering from template) serving DoT, DoH and DoQ on 127.0.0.1, verified against a throwaway CA; "+
		"it runs on the same %s, so it competes with the forwarder for them: upstream CPU / query is its CPU over the same answers. "+
		"Both forwarders verify the certificate (`tls CA`, `tls_servername %s`); DoH with `doh_method POST` (forward's default). "+
		"upstreamtier also runs with a plain-DNS tier 2 behind the encrypted tier 1 (the upstream's plain-DNS port, healthy, so it gets only probes): "+
		"with a single upstream nothing can take over from an attempt, so DoH and DoQ exchanges run in the query's goroutine, as forward's do; "+
		"with a tier 2 each runs in a goroutine of its own, so that it can be hedged. DoT runs on the plugin's own connections either way, in the query's goroutine.\n\n",
		b.satHeader(), cpuCount(), upstreamName)
	s.WriteString("| transport | forwarder | QPS | CPU µs / query | upstream CPU µs / query |\n")
	s.WriteString("|---|---|--:|--:|--:|\n")
	for _, c := range cs {
		fw := c.fw
		if c.t2 {
			fw += ", tier 2 behind"
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", c.t.name, fw,
			spread(perRound(c.sat, satRound.qps), func(v float64) string { return fmt.Sprintf("%.0f", v) }),
			spread(perRound(c.sat, satRound.cpuPerQuery), µs), spread(c.upCPU, µs))
		notes = appendNotes(notes, lossNote(c.label(), c.sat), otherNote(c.label(), c.sat))
	}
	s.WriteString("\n")
	for _, t := range encTransports {
		if line := encRatio(t, cs); line != "" {
			s.WriteString(line + "\n")
		}
	}
	writeNotes(&s, notes)
	return s.String()
}

// encRatio returns the headline for transport t: upstreamtier's CPU per query and QPS over forward's,
// then with a tier 2 behind, which has no target; "" unless both ran.
func encRatio(t encTransport, cs []*encConfig) string {
	var ut, ut2, fw *encConfig
	for _, c := range cs {
		switch {
		case c.t.id != t.id:
		case c.fw == "upstreamtier" && c.t2:
			ut2 = c
		case c.fw == "upstreamtier":
			ut = c
		case c.fw == "forward":
			fw = c
		}
	}
	if ut == nil || fw == nil {
		return ""
	}
	ratio, line := encVersus(ut, fw)
	line = fmt.Sprintf("- **%s upstreamtier / forward**: %s; target ≤ %.2f: %s", t.name, line, encCPUTarget, verdict(ratio <= encCPUTarget))
	if ut2 != nil {
		_, l2 := encVersus(ut2, fw)
		line += fmt.Sprintf("\n- %s upstreamtier with a tier 2 / forward: %s (no target; forward has no tiers)", t.name, l2)
	}
	return line
}

// encVersus returns a's CPU per query over b's (ratio of the medians), and that with the QPS ratio as text.
func encVersus(a, b *encConfig) (float64, string) {
	aC, bC := perRound(a.sat, satRound.cpuPerQuery), perRound(b.sat, satRound.cpuPerQuery)
	aQ, bQ := perRound(a.sat, satRound.qps), perRound(b.sat, satRound.qps)
	ratio := float64(median(aC)) / float64(median(bC))
	return ratio, fmt.Sprintf("CPU per query **%.2f** (ratio of the medians; round by round %s), QPS **%.2f** (round by round %s)",
		ratio, spread(ratios(aC, bC), twoDecimals), median(aQ)/median(bQ), spread(ratios(aQ, bQ), twoDecimals))
}

// verdict renders whether a target was met.
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**missed**"
}

// cpuCount says how many CPUs the machine has, in words for a note.
func cpuCount() string { return fmt.Sprintf("%d CPUs", runtime.NumCPU()) }

// encryptedTransports returns the transports the encrypted scenarios run.
func encryptedTransports() []string { return strings.Split(*transportList, ",") }
