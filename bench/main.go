// Command bench measures upstreamtier against CoreDNS forward, dnsdist and
// dnsmasq on loopback: failover under injected upstream faults, and throughput.
//
// It is a module of its own, run from bench/ (it finds the repository root
// above it, to build ./cmd/coredns and run the plugin's Go benchmarks):
//
//	cd bench && go run . -out out
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

// bench holds the settings shared by every run.
type bench struct {
	out     string
	timing  timing
	rate    int
	sockets int
	timeout time.Duration
	coredns string // the coredns binary
}

// gen returns a load generator aimed at target with the bench's rate.
func (b *bench) gen(target string, tiers map[string]int8, prefix string) *loadGen {
	if prefix != "" {
		prefix += "."
	}
	return &loadGen{target: target, rate: b.rate, sockets: b.sockets, timeout: b.timeout, tiers: tiers, prefix: prefix}
}

func main() {
	b := &bench{}
	flag.StringVar(&b.out, "out", "out", "directory for results.md, the plots, logs and the coredns build")
	flag.DurationVar(&b.timing.before, "before", 6*time.Second, "healthy phase before the fault")
	flag.DurationVar(&b.timing.fault, "fault", 10*time.Second, "fault window")
	flag.DurationVar(&b.timing.after, "after", 8*time.Second, "phase after recovery")
	flag.IntVar(&b.rate, "rate", 2000, "offered queries per second (fault scenarios and CPU rounds)")
	flag.IntVar(&b.sockets, "sockets", 4, "client UDP sockets")
	flag.DurationVar(&b.timeout, "timeout", 2*time.Second, "client timeout: a later answer counts as lost")
	scenarios := flag.String("scenarios", strings.Join(scenarioNames(), ","), "comma-separated scenarios to run")
	which := flag.String("forwarders", "upstreamtier,forward,dnsdist,dnsmasq", "comma-separated forwarders to run")
	coredns := flag.String("coredns", "", "coredns binary with upstreamtier and forward (default: build the repository's ./cmd/coredns into OUT/coredns)")
	flag.Parse()
	if err := b.main(strings.Split(*scenarios, ","), strings.Split(*which, ","), *coredns); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (b *bench) main(scenarios, which []string, coredns string) error {
	picked, err := pickScenarios(scenarios)
	if err != nil {
		return err
	}
	// Forwarders run in their own directories, so every path handed to them must be absolute.
	if b.out, err = filepath.Abs(b.out); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(b.out, "logs"), 0o755); err != nil {
		return err
	}
	if b.coredns, err = b.corednsBinary(coredns); err != nil {
		return err
	}
	var fws []forwarder
	var skipped []string
	for _, f := range forwarders(b.coredns) {
		switch {
		case !slices.Contains(which, f.name):
		case !f.available():
			skipped = append(skipped, f.name)
			fmt.Printf("skipping %s: %s is not installed\n", f.name, f.bin)
		default:
			fws = append(fws, f)
		}
	}
	if len(fws) == 0 {
		return fmt.Errorf("no forwarder to run")
	}

	var sections []string
	started, load0 := time.Now(), loadAvg()
	for _, sc := range picked {
		table, err := sc.run(b, fws)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name(), err)
		}
		fmt.Println("\n" + table)
		sections = append(sections, table)
	}

	doc := "# upstreamtier benchmark results\n\n" + b.machineNotes(picked, fws, skipped, started, load0) + "\n" + strings.Join(sections, "\n")
	return os.WriteFile(filepath.Join(b.out, "results.md"), []byte(doc), 0o644) //nolint:gosec // G306: the report is for anyone to read, as the repository's files are
}

// corednsBinary returns the coredns binary to use, building the repository's ./cmd/coredns once when none is given.
func (b *bench) corednsBinary(path string) (string, error) {
	if path != "" {
		return filepath.Abs(path)
	}
	path, err := filepath.Abs(filepath.Join(b.out, "coredns"))
	if err != nil {
		return "", err
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("building coredns (or give -coredns): %w", err)
	}
	fmt.Println("building", path)
	cmd := exec.Command("go", "build", "-o", path, "./cmd/coredns")
	cmd.Dir = root // the plugin's module, not the bench's
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building coredns: %w", err)
	}
	return path, nil
}

// machineNotes describes where and how the numbers were taken.
func (b *bench) machineNotes(picked []scenario, fws []forwarder, skipped []string, started time.Time, load0 string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "Run %s, took %v. Machine: %s, %d CPUs, Linux %s, %s. Load average at the start %s, at the end %s.\n\n",
		started.UTC().Format("2006-01-02 15:04 MST"), time.Since(started).Round(time.Second), cpuModel(), runtime.NumCPU(), kernel(), runtime.Version(), load0, loadAvg())
	fmt.Fprintf(&s, "Load: %d qps of unique A names over %d UDP sockets, no retries, client timeout %v. "+
		"Upstreams: faultdns in the benchmark process, fresh per run (throughput and configsize: internal/responder); the forwarder is a subprocess; everything on 127.0.0.1 and on the same CPUs.\n\n",
		b.rate, b.sockets, b.timeout)
	s.WriteString("Versions:\n")
	for _, f := range fws {
		fmt.Fprintf(&s, "- %s: %s (%s)\n", f.name, version(f), f.bin)
	}
	for _, n := range skipped {
		fmt.Fprintf(&s, "- %s: not installed, skipped\n", n)
	}
	if !slices.ContainsFunc(picked, func(sc scenario) bool { _, ok := sc.(faultScenario); return ok }) {
		return s.String()
	}
	s.WriteString("\nFailover: time from the fault until, in every 100 ms window of send times from then to the end of the fault " +
		"(less its last 100 ms, whose queries may meet the recovered upstream), 99% of the queries sent got a NOERROR answer from tier 2 " +
		"within the client timeout; lost queries count against it. Failback: the same for tier 1 after recovery. " +
		"By send time, so a forwarder that waits for dead tier 1 on every query \"fails over\" at once and pays in latency (p50, p99).\n")
	return s.String()
}

// version returns the first line the forwarder prints about its version.
func version(f forwarder) string {
	flag := "--version"
	if f.coredns {
		flag = "-version"
	}
	out, _ := exec.Command(f.bin, flag).CombinedOutput() //nolint:gosec // G204: the forwarder binaries are the benchmark's own, named by its flags
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// cpuModel returns the CPU model name from /proc/cpuinfo.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// loadAvg returns the 1-minute load average, a hint of other work on a shared machine.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

// kernel returns the running kernel's release.
func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}
