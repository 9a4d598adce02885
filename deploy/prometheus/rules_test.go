package prometheus_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

const (
	rulesFile          = "upstreamtier-rules.yaml"
	prometheusRuleFile = "prometheusrule.yaml"
	unitTestFile       = "tests/upstreamtier-rules.test.yaml"
	metricsFile        = "../../metrics.go"
	runbookFile        = "../../docs/operations.md"
	runbookBase        = "https://github.com/upstreamtier/upstreamtier/blob/main/docs/operations.md#"
)

var update = flag.Bool("update", false, "write "+prometheusRuleFile+" from "+rulesFile)

// prometheusRuleHeader is prometheusRule's text before the rules.
const prometheusRuleHeader = `# Generated from upstreamtier-rules.yaml by
#   go test ./deploy/prometheus -run TestPrometheusRule -update
# Edit that file, not this one. The same alert rules, for the Prometheus
# operator: kubectl apply -f deploy/prometheus/prometheusrule.yaml. The
# operator's Prometheus loads the rules its ruleSelector and
# ruleNamespaceSelector match: kube-prometheus-stack's selects the label
# release: <its Helm release>, set here to the chart's usual release name.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: upstreamtier
  namespace: kube-system
  labels:
    app.kubernetes.io/name: coredns
    app.kubernetes.io/component: upstreamtier-alerts
    release: kube-prometheus-stack
spec:
`

// prometheusRule returns the PrometheusRule manifest of the rules file:
// its groups, from the line "groups:" on, indented under spec.
func prometheusRule(rules []byte) ([]byte, error) {
	i := bytes.Index(rules, []byte("\ngroups:\n"))
	if i < 0 {
		return nil, fmt.Errorf("%s: no line \"groups:\"", rulesFile)
	}
	var b bytes.Buffer
	b.WriteString(prometheusRuleHeader)
	for _, line := range strings.SplitAfter(string(rules[i+1:]), "\n") {
		if strings.TrimSpace(line) != "" {
			b.WriteString("  ")
		}
		b.WriteString(line)
	}
	return b.Bytes(), nil
}

// ruleFile is a Prometheus rules file, as far as these tests read it.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func readRules(t *testing.T) ([]byte, []rule) {
	t.Helper()
	src, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	if err := yaml.UnmarshalStrict(src, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var rules []rule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	return src, rules
}

// prometheusRule.yaml is the rules file, as a PrometheusRule: byte for
// byte what prometheusRule makes of it, and the same groups once decoded.
func TestPrometheusRule(t *testing.T) {
	src, _ := readRules(t)
	want, err := prometheusRule(src)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(prometheusRuleFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(prometheusRuleFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not generated from %s: run go test ./deploy/prometheus -run TestPrometheusRule -update", prometheusRuleFile, rulesFile)
	}
	var manifest struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name      string            `json:"name"`
			Namespace string            `json:"namespace"`
			Labels    map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec any `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(got, &manifest); err != nil {
		t.Fatalf("%s: %v", prometheusRuleFile, err)
	}
	if manifest.APIVersion != "monitoring.coreos.com/v1" || manifest.Kind != "PrometheusRule" || manifest.Metadata.Name == "" {
		t.Errorf("%s: apiVersion %q, kind %q, name %q: want a named monitoring.coreos.com/v1 PrometheusRule",
			prometheusRuleFile, manifest.APIVersion, manifest.Kind, manifest.Metadata.Name)
	}
	var plain any
	if err := yaml.Unmarshal(src, &plain); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(manifest.Spec, plain) {
		t.Errorf("%s: spec differs from %s", prometheusRuleFile, rulesFile)
	}
}

var (
	nameField  = regexp.MustCompile(`(?m)^\s*Name:\s*"([^"]*)"`)
	metricName = regexp.MustCompile(`\bcoredns_upstreamtier_[a-z_]+`)
	forMinutes = regexp.MustCompile(`^[1-9][0-9]*m$`)
)

// Every alert: named Upstreamtier..., a severity, a for of whole minutes
// (what shortFor scales), a summary, a description naming the tier and the
// upstream, a runbook_url to its own section of docs/operations.md, only
// metrics metrics.go defines, and promtool unit tests with the alert
// firing and not firing.
func TestRulesComplete(t *testing.T) {
	_, rules := readRules(t)
	src, err := os.ReadFile(metricsFile)
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]bool{}
	for _, m := range nameField.FindAllSubmatch(src, -1) {
		name := "coredns_upstreamtier_" + string(m[1])
		defined[name] = true
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			defined[name+suffix] = true
		}
	}
	runbook, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	tests := unitTests(t)
	names := make([]string, 0, len(rules))
	for _, r := range rules {
		if !strings.HasPrefix(r.Alert, "Upstreamtier") || slices.Contains(names, r.Alert) {
			t.Errorf("alert %q: want a unique name starting with Upstreamtier", r.Alert)
		}
		names = append(names, r.Alert)
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		if !forMinutes.MatchString(r.For) {
			t.Errorf("%s: for %q, want whole minutes", r.Alert, r.For)
		}
		for _, key := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[key] == "" {
				t.Errorf("%s: no %s", r.Alert, key)
			}
		}
		desc := strings.ToLower(r.Annotations["description"])
		for _, label := range []string{"labels.tier", "labels.upstream", "labels.server", "labels.instance"} {
			if !strings.Contains(desc, label) {
				t.Errorf("%s: the description does not name %s", r.Alert, strings.TrimPrefix(label, "labels."))
			}
		}
		anchor := strings.ToLower(r.Alert)
		if got := r.Annotations["runbook_url"]; got != runbookBase+anchor {
			t.Errorf("%s: runbook_url %q, want %q", r.Alert, got, runbookBase+anchor)
		}
		if !regexp.MustCompile(`(?m)^#+ ` + r.Alert + `\s*$`).Match(runbook) {
			t.Errorf("%s: %s has no section (heading) %q", r.Alert, runbookFile, r.Alert)
		}
		text := r.Expr + r.Annotations["description"] + r.Annotations["summary"]
		for _, m := range metricName.FindAllString(text, -1) {
			if !defined[m] {
				t.Errorf("%s: %s is not a metric of %s", r.Alert, m, metricsFile)
			}
		}
		if !tests[r.Alert].firing || !tests[r.Alert].silent {
			t.Errorf("%s: %s has no test of it firing and one of it not firing (%+v)", r.Alert, unitTestFile, tests[r.Alert])
		}
	}
}

// coverage says whether the unit tests have an alert firing and silent.
type coverage struct{ firing, silent bool }

// unitTests reads the promtool unit tests: for each alert, whether some
// eval_time expects it firing and some expects none.
func unitTests(t *testing.T) map[string]coverage {
	t.Helper()
	src, err := os.ReadFile(unitTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(src, &f); err != nil {
		t.Fatalf("%s: %v", unitTestFile, err)
	}
	got := map[string]coverage{}
	for _, test := range f.Tests {
		for _, a := range test.AlertRuleTest {
			c := got[a.Alertname]
			if len(a.ExpAlerts) > 0 {
				c.firing = true
			} else {
				c.silent = true
			}
			got[a.Alertname] = c
		}
	}
	return got
}

// promtool returns the path of promtool, or skips the test.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found (Debian package prometheus; .ci/operations installs it): rules checked without it only")
	}
	return path
}

// promtool check rules accepts the rules, and its unit tests pass, as for
// the short copy the live test loads.
func TestPromtool(t *testing.T) {
	tool := promtool(t)
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(tool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("check", "rules", rulesFile)
	run("test", "rules", unitTestFile)
	src, _ := readRules(t)
	short, err := shortFor(src)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/short-rules.yaml"
	if err := os.WriteFile(path, short, 0o644); err != nil {
		t.Fatal(err)
	}
	run("check", "rules", path)
}

var forLine = regexp.MustCompile(`(?m)^(\s+for: )([0-9]+)m$`)

// shortFor returns the rules with every for: of N minutes made N seconds,
// for the live test: the real rules, scaled down, so the two cannot drift.
func shortFor(rules []byte) ([]byte, error) {
	if n, m := bytes.Count(rules, []byte("\n        for: ")), len(forLine.FindAll(rules, -1)); n != m || n == 0 {
		return nil, fmt.Errorf("%s: %d for: lines, %d of them in whole minutes: want all", rulesFile, n, m)
	}
	return forLine.ReplaceAll(rules, []byte("${1}${2}s")), nil
}
