package systemd_test

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	unitFile = "coredns-upstreamtier.service"
	binary   = "/usr/local/bin/coredns"
	corefile = "/etc/coredns/Corefile"
)

// unit is a unit file: each section's keys, with every value given (a key
// may be set more than once).
type unit map[string]map[string][]string

func readUnit(t *testing.T) unit {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
			if u[section] != nil {
				t.Errorf("%s:%d: section [%s] twice", unitFile, n, section)
			}
			u[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok || section == "" || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: not KEY=VALUE in a section: %q", unitFile, n, line)
			}
			u[section][key] = append(u[section][key], value)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

// one returns the only value of a key.
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Errorf("[%s] %s is set %d times, want once", section, key, len(v))
		return ""
	}
	return v[0]
}

// The unit runs the build as a name server without root: a dynamic user
// with only CAP_NET_BIND_SERVICE (for port 53), a read-only system, the
// site Corefile, reload by SIGUSR1.
func TestUnit(t *testing.T) {
	u := readUnit(t)
	want := map[string]string{
		"Type":                    "simple",
		"ExecStart":               binary + " -conf " + corefile,
		"ExecReload":              "/bin/kill -USR1 $MAINPID",
		"DynamicUser":             "yes",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"ProtectHome":             "yes",
		"PrivateTmp":              "yes",
		"PrivateDevices":          "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
		"WorkingDirectory":        filepath.Dir(corefile),
	}
	for key, value := range want {
		if got := u.one(t, "Service", key); got != value {
			t.Errorf("[Service] %s=%s, want %s", key, got, value)
		}
	}
	for _, key := range []string{"User", "Group", "ReadWritePaths", "SupplementaryGroups"} {
		if v, ok := u["Service"][key]; ok {
			t.Errorf("[Service] %s=%v: the dynamic user needs none, and writes nowhere", key, v)
		}
	}
	if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
		t.Errorf("[Service] SystemCallFilter %v: want @system-service", u["Service"]["SystemCallFilter"])
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("[Install] WantedBy=%s, want multi-user.target", got)
	}
	if got := u.one(t, "Unit", "Before"); got != "nss-lookup.target" {
		t.Errorf("[Unit] Before=%s, want nss-lookup.target (a name server)", got)
	}
	if _, err := os.Stat("Corefile"); err != nil {
		t.Errorf("the site Corefile that %s reads as %s: %v", unitFile, corefile, err)
	}
}

// systemd-analyze verify accepts the unit, with no warning, where it runs.
// It requires ExecStart's binary to exist: the copy it checks runs this
// test binary instead of /usr/local/bin/coredns, the one change.
func TestSystemdAnalyzeVerify(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian package systemd): unit checked by TestUnit only")
	}
	src, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(src), "ExecStart="+binary+" ", "ExecStart="+self+" ", 1)
	if text == string(src) {
		t.Fatalf("%s: no ExecStart=%s", unitFile, binary)
	}
	path := filepath.Join(t.TempDir(), unitFile)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}
