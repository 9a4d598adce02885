package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// runMain is set in the environment of a copy of this test binary that is
// to run as coredns itself, with the arguments after "--".
const runMain = "UPSTREAMTIER_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMain) == "1" {
		i := slices.Index(os.Args, "--")
		os.Args = append([]string{"coredns"}, os.Args[i+1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// coredns runs this build's main with args, as the coredns binary would,
// and returns its standard output.
func coredns(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), runMain+"=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("coredns %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// `coredns -plugins` lists every plugin of the build, the ones a cluster
// and a site need among them: multisocket (parallel listeners) and view
// (answers by client).
func TestPluginsListed(t *testing.T) {
	out := coredns(t, "-plugins")
	listed := map[string]bool{}
	for line := range strings.SplitSeq(out, "\n") {
		listed[strings.TrimSpace(line)] = true
	}
	for _, name := range directives {
		if !listed[name] {
			t.Errorf("coredns -plugins does not list %s:\n%s", name, out)
		}
	}
	for _, name := range []string{"upstreamtier", "multisocket", "view", "forward", "kubernetes"} {
		if !slices.Contains(directives, name) {
			t.Errorf("%s is not in this build's directives", name)
		}
	}
}

// The build's directives are in CoreDNS's own order, the order of its
// plugin.cfg, with upstreamtier, which plugin.cfg does not know, right
// before forward.
func TestDirectivesInCoreDNSOrder(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/coredns/coredns").Output()
	if err != nil {
		t.Fatalf("finding CoreDNS's source: %v", err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(out)), "plugin.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var order []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, ":")
		if slices.Contains(directives, name) {
			order = append(order, name)
		}
		if name == "forward" {
			order = slices.Insert(order, len(order)-1, "upstreamtier")
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, directives) {
		t.Errorf("directives are not in plugin.cfg's order:\n got %q\nwant %q", directives, order)
	}
}
