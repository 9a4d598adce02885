package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestLogUniformBounds(t *testing.T) {
	if got := logUniform(0, authDelayMin, authDelayMax); got != authDelayMin {
		t.Errorf("logUniform(0) = %v, want %v", got, authDelayMin)
	}
	// The median of a log-uniform distribution is the geometric mean of its bounds.
	want := time.Duration(math.Sqrt(float64(authDelayMin) * float64(authDelayMax)))
	if got := logUniform(0.5, authDelayMin, authDelayMax); (got - want).Abs() > time.Microsecond {
		t.Errorf("logUniform(0.5) = %v, want %v", got, want)
	}
	if got := logUniform(math.Nextafter(1, 0), authDelayMin, authDelayMax); got > authDelayMax || got < authDelayMax-time.Microsecond {
		t.Errorf("logUniform(1-) = %v, want just below %v", got, authDelayMax)
	}
}

func TestAuthDelayDeterministicAndSpread(t *testing.T) {
	if authDelay("n1.bench.test.") != authDelay("N1.Bench.Test.") {
		t.Error("the delay depends on the name's case")
	}
	names := loadNames(20000)
	var ds []time.Duration
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		d := authDelay(n)
		if d != authDelay(n) {
			t.Fatalf("authDelay(%s) differs between calls", n)
		}
		if d < authDelayMin || d > authDelayMax {
			t.Fatalf("authDelay(%s) = %v, outside [%v, %v]", n, d, authDelayMin, authDelayMax)
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	// Log-uniform over [20, 250] ms: the median near 71 ms, a quarter below ~38 ms, a quarter above ~133 ms.
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.25, logUniform(0.25, authDelayMin, authDelayMax)}, {0.5, logUniform(0.5, authDelayMin, authDelayMax)}, {0.75, logUniform(0.75, authDelayMin, authDelayMax)}} {
		got := ds[int(c.q*float64(len(ds)))]
		if r := float64(got) / float64(c.want); r < 0.9 || r > 1.1 {
			t.Errorf("quantile %.2f of the delays = %v, want about %v", c.q, got, c.want)
		}
	}
}

func TestLoadNamesFixedAndMissRatio(t *testing.T) {
	a, b := loadNames(20000), loadNames(20000)
	if !slices.Equal(a, b) {
		t.Fatal("loadNames is not the same sequence on every call")
	}
	for _, n := range a[:100] {
		if !isLoadName(n) {
			t.Fatalf("%s is not under %s", n, loadZone)
		}
	}
	// The default run (1000 qps for 20 s) is meant to miss about 17 % at a cold tier 1.
	if r := float64(firstSeen(a)) / float64(len(a)); r < 0.15 || r > 0.19 {
		t.Errorf("first asks are %.3f of 20000 queries, want about 0.17", r)
	}
}

func TestIsLoadName(t *testing.T) {
	for name, want := range map[string]bool{
		"n1.bench.test.":        true,
		"N1.BENCH.TEST.":        true,
		"bench.test.":           true,
		"a.b.bench.test":        true,
		".":                     false,
		"a.root-servers.net.":   false,
		"probe1.ready.example.": false,
		"xbench.test.":          false,
	} {
		if got := isLoadName(name); got != want {
			t.Errorf("isLoadName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestQueryCounts(t *testing.T) {
	var c queryCounts
	for _, n := range []string{"n1.bench.test.", ".", "n2.bench.test.", "a.root-servers.net.", "n1.bench.test."} {
		c.add(n)
	}
	s0 := c.snapshot()
	if s0 != (countSnapshot{load: 3, probe: 2}) {
		t.Errorf("counts = %+v, want 3 load, 2 probe", s0)
	}
	c.add(".")
	if d := c.snapshot().sub(s0); d != (countSnapshot{probe: 1}) {
		t.Errorf("difference = %+v, want 1 probe", d)
	}
}

func TestQname(t *testing.T) {
	m := new(dns.Msg)
	m.SetQuestion("N7.Bench.Test.", dns.TypeA)
	wire, _ := m.Pack()
	if got, ok := qname(wire); !ok || got != "n7.bench.test." {
		t.Errorf("qname = %q, %v; want n7.bench.test., true", got, ok)
	}
	if _, ok := qname(wire[:5]); ok {
		t.Error("qname accepted a truncated message")
	}
}

func TestTCPFraming(t *testing.T) {
	var buf bytes.Buffer
	msg := []byte{1, 2, 3, 4, 5}
	if err := writeTCPMsg(&buf, msg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes()[:2], []byte{0, 5}) {
		t.Errorf("length prefix = %v, want [0 5]", buf.Bytes()[:2])
	}
	got, err := readTCPMsg(&buf)
	if err != nil || !bytes.Equal(got, msg) {
		t.Errorf("readTCPMsg = %v, %v; want %v", got, err, msg)
	}
}

func TestHostAtPort(t *testing.T) {
	if got := hostAtPort("127.0.0.1:5353"); got != "127.0.0.1@5353" {
		t.Errorf("hostAtPort = %q", got)
	}
}

func TestThirdTierConfig(t *testing.T) {
	c := conf{port: 1053, metricsPort: 9153, t1: "127.0.0.1:1", t2: "127.0.0.1:2", t3: "127.0.0.1:3"}
	want := map[string][]string{
		"upstreamtier": {"tier t1 127.0.0.1:1\n", "tier t2 127.0.0.1:2\n", "tier t3 127.0.0.1:3\n"},
		"forward":      {"forward . 127.0.0.1:1 127.0.0.1:2 127.0.0.1:3 {"},
		"dnsdist":      {`address="127.0.0.1:3", order=3`},
		"dnsmasq":      {"--server=127.0.0.1#3"},
	}
	for _, f := range forwarders("coredns") {
		dir := t.TempDir()
		args, err := f.args(dir, c)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(args, " ")
		for _, file := range []string{"Corefile", "dnsdist.conf"} {
			if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
				text = string(b)
			}
		}
		for _, w := range want[f.name] {
			if !strings.Contains(text, w) {
				t.Errorf("%s: config lacks %q:\n%s", f.name, w, text)
			}
		}
		first, second, third := strings.Index(text, "#1"), strings.Index(text, "#2"), strings.Index(text, "#3")
		if inOrder := first < second && second < third; f.name == "dnsmasq" && !inOrder {
			t.Errorf("dnsmasq: --strict-order needs the servers in tier order: %s", text)
		}
		// Without t3 the config is the two-tier one every other scenario uses.
		c2 := c
		c2.t3 = ""
		args, _ = f.args(dir, c2)
		text = strings.Join(args, " ")
		for _, file := range []string{"Corefile", "dnsdist.conf"} {
			if b, err := os.ReadFile(filepath.Join(dir, file)); err == nil {
				text = string(b)
			}
		}
		if strings.Contains(text, "127.0.0.1:3") || strings.Contains(text, "127.0.0.1#3") {
			t.Errorf("%s: two-tier config names tier 3:\n%s", f.name, text)
		}
	}
}
