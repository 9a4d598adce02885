package prometheus_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// liveEnv names the coredns binary (built from ./cmd/coredns) the live test
// runs the demo with; .ci/operations sets it. The demo listens on fixed
// loopback ports (1053-1056, 9153, 8181), so the test does not run by
// default beside the other packages' tests.
const liveEnv = "UPSTREAMTIER_LIVE_COREDNS"

const (
	repoRoot      = "../.."
	dashboardFile = "../grafana/upstreamtier-dashboard.json"
	demoDNS       = "127.0.0.1:1053"
	demoMetrics   = "127.0.0.1:9153"

	// scrape is the scrape and rule evaluation interval of the live
	// Prometheus; rateInterval is Grafana's $__rate_interval for it (four
	// scrape intervals).
	scrape       = time.Second
	rateInterval = "4s"

	// capWait is the safety cap of every wait on an event: far above what
	// the events take (seconds), never a timing requirement.
	capWait = 3 * time.Minute
)

// The README's demo and a real Prometheus on loopback that scrapes it and
// evaluates the rules, with every for: scaled from minutes to seconds:
// switching tier 1 off makes UpstreamtierFailover and
// UpstreamtierUpstreamDown fire in /api/v1/alerts, switching it on again
// resolves them. Then every query of the Grafana dashboard returns a
// series over the run.
func TestLiveDemo(t *testing.T) {
	coredns := os.Getenv(liveEnv)
	if coredns == "" {
		t.Skip(liveEnv + " is not set: the live test needs the coredns binary (CGO_ENABLED=0 go build -o coredns ./cmd/coredns) and the prometheus server; .ci/operations runs it")
	}
	coredns, err := filepath.Abs(coredns)
	if err != nil {
		t.Fatal(err)
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus not found (Debian package prometheus)")
	}

	dir := t.TempDir()
	demo := filepath.Join(dir, "demo")
	copyDemo(t, demo)
	start(t, dir, "coredns", coredns, "-conf", "Corefile.example")

	src, _ := readRules(t)
	short, err := shortFor(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "rules.yaml"), string(short))
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: %[1]s
  evaluation_interval: %[1]s
rule_files: [rules.yaml]
scrape_configs:
  - job_name: coredns
    static_configs:
      - targets: [%[2]q]
`, scrape, demoMetrics))
	p := &prom{t: t, base: "http://" + freeTCP(t)}
	start(t, dir, "prometheus", promBin,
		"--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+strings.TrimPrefix(p.base, "http://"),
		"--log.level=warn")
	began := time.Now()

	// Queries for new names all along, as clients would send them: they
	// find tier 1 silent, and give the rate panels something to show.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		c := dns.Client{Timeout: 2 * time.Second}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("live%d.example.org.", i), dns.TypeA)
			c.Exchange(m, demoDNS)
		}
	})
	defer func() { close(stop); wg.Wait() }()

	p.wait("every upstream up, tier site serving, in Prometheus", func() bool {
		return p.has(`min(coredns_upstreamtier_upstream_healthy) == 1`) &&
			p.has(`coredns_upstreamtier_serving_tier{tier="site"} == 1`)
	})
	if a := p.alerts("UpstreamtierFailover"); len(a) > 0 {
		t.Fatalf("UpstreamtierFailover before tier 1 is off: %+v", a)
	}

	zone := filepath.Join(demo, "demo", "site.zone")
	if err := os.Rename(zone, zone+".off"); err != nil {
		t.Fatal(err)
	}
	t.Log("tier 1 off")
	var failover alert
	p.wait("UpstreamtierFailover firing", func() bool {
		for _, a := range p.alerts("UpstreamtierFailover") {
			if a.State == "firing" {
				failover = a
				return true
			}
		}
		return false
	})
	t.Logf("firing: %s: %s", failover.Annotations["summary"], failover.Annotations["description"])
	if failover.Labels["tier"] != "site" || failover.Labels["server"] != "dns://"+demoDNS ||
		!strings.Contains(failover.Annotations["description"], "to tier isp instead of its first tier site") ||
		!strings.Contains(failover.Annotations["description"], "127.0.0.1:1054 (") {
		t.Errorf("UpstreamtierFailover: labels %v, annotations %v: want tier site of server dns://%s, serving tier isp, 127.0.0.1:1054 down",
			failover.Labels, failover.Annotations, demoDNS)
	}
	p.wait("UpstreamtierUpstreamDown firing for 127.0.0.1:1054", func() bool {
		for _, a := range p.alerts("UpstreamtierUpstreamDown") {
			if a.State == "firing" && a.Labels["upstream"] == "127.0.0.1:1054" && a.Labels["tier"] == "site" {
				return true
			}
		}
		return false
	})

	if err := os.Rename(zone+".off", zone); err != nil {
		t.Fatal(err)
	}
	t.Log("tier 1 on")
	p.wait("UpstreamtierFailover and UpstreamtierUpstreamDown resolved", func() bool {
		return len(p.alerts("UpstreamtierFailover")) == 0 && len(p.alerts("UpstreamtierUpstreamDown")) == 0
	})
	p.wait("tier site serving and answering again, in Prometheus", func() bool {
		return p.has(`coredns_upstreamtier_serving_tier{tier="site"} == 1`) &&
			p.has(`increase(coredns_upstreamtier_requests_total{tier="site",rcode="NOERROR"}[3s]) > 0`)
	})
	for _, name := range []string{"UpstreamtierNoTierAvailable", "UpstreamtierServfailRateHigh", "UpstreamtierStandbyTierDown"} {
		if a := p.alerts(name); len(a) > 0 {
			t.Errorf("%s fired in the demo, where tiers isp and public stayed up and no query got SERVFAIL: %+v", name, a)
		}
	}

	t.Run("dashboard", func(t *testing.T) {
		p := &prom{t: t, base: p.base}
		checkDashboard(t, p, began, time.Now())
	})
}

// copyDemo copies Corefile.example and demo/ to dir: switching tier 1 off
// renames one of the files.
func copyDemo(t *testing.T, dir string) {
	t.Helper()
	for _, name := range []string{"Corefile.example", "demo/site.zone"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name), string(b))
	}
	entries, err := os.ReadDir(filepath.Join(repoRoot, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("demo/ has %d files, this test copies demo/site.zone only", len(entries))
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs a program in dir until the test ends, its output in
// dir/name.log, printed if the test fails.
func start(t *testing.T, dir, name, path string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = filepath.Join(dir, "demo")
	if name != "coredns" {
		cmd.Dir = dir
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
			lines = lines[max(0, len(lines)-80):]
			t.Logf("%s's output, last %d lines:\n%s", name, len(lines), strings.Join(lines, "\n"))
		}
	})
}

// freeTCP returns a free TCP address on 127.0.0.1.
func freeTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// prom is the HTTP API of the live Prometheus.
type prom struct {
	t    *testing.T
	base string
}

// get returns the data of an API call, nil while Prometheus is not up.
func (p *prom) get(path string, params url.Values) (json.RawMessage, error) {
	resp, err := http.Get(p.base + path + "?" + params.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%s: %s: %v", path, body, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s %v: %s", path, params, r.Error)
	}
	return r.Data, nil
}

// wait polls cond every scrape interval until it holds, for at most
// capWait.
func (p *prom) wait(what string, cond func() bool) {
	p.t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > capWait {
			p.t.Fatalf("no %s after %v", what, capWait)
		}
		time.Sleep(scrape / 2)
	}
	p.t.Logf("%s after %.1fs", what, time.Since(began).Seconds())
}

// has reports whether an instant query returns a series now.
func (p *prom) has(query string) bool {
	data, err := p.get("/api/v1/query", url.Values{"query": {query}})
	if err != nil {
		return false
	}
	var r struct {
		Result []json.RawMessage `json:"result"`
	}
	return json.Unmarshal(data, &r) == nil && len(r.Result) > 0
}

type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

// alerts returns the pending and firing alerts named name.
func (p *prom) alerts(name string) []alert {
	data, err := p.get("/api/v1/alerts", nil)
	if err != nil {
		return nil
	}
	var r struct {
		Alerts []alert `json:"alerts"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		p.t.Fatal(err)
	}
	var named []alert
	for _, a := range r.Alerts {
		if a.Labels["alertname"] == name {
			named = append(named, a)
		}
	}
	return named
}

// series returns how many series a query gives with at least one number
// (not NaN) in it: instant at end, or over [from, end] by step.
func (p *prom) series(query string, instant bool, from, end time.Time, step time.Duration) (int, error) {
	var data json.RawMessage
	var err error
	if instant {
		data, err = p.get("/api/v1/query", url.Values{"query": {query}, "time": {unix(end)}})
	} else {
		data, err = p.get("/api/v1/query_range", url.Values{"query": {query}, "start": {unix(from)}, "end": {unix(end)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}})
	}
	if err != nil {
		return 0, err
	}
	var r struct {
		Result []struct {
			Value  [2]any   `json:"value"`
			Values [][2]any `json:"values"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return 0, err
	}
	n := 0
	for _, s := range r.Result {
		for _, v := range append(s.Values, s.Value) {
			if str, ok := v[1].(string); ok {
				if f, err := strconv.ParseFloat(str, 64); err == nil && !math.IsNaN(f) {
					n++
					break
				}
			}
		}
	}
	return n, nil
}

func unix(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// dashboard is the Grafana dashboard, as far as its queries go.
type dashboard struct {
	Panels      []panel `json:"panels"`
	Annotations struct {
		List []struct {
			Name       string `json:"name"`
			Expr       string `json:"expr"`
			Step       string `json:"step"`
			Datasource struct {
				Type string `json:"type"`
			} `json:"datasource"`
		} `json:"list"`
	} `json:"annotations"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID   string `json:"refId"`
		Expr    string `json:"expr"`
		Instant bool   `json:"instant"`
	} `json:"targets"`
}

var labelValues = regexp.MustCompile(`^label_values\((.+), *([a-z_]+)\)$`)

// checkDashboard fills in the dashboard's variables from their own queries
// (label_values, as Grafana runs them), then runs every panel's and
// annotation's query over [from, end] as Grafana would for that time
// range: each must give a series.
func checkDashboard(t *testing.T, p *prom, from, end time.Time) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	rangeSec := int(end.Sub(from).Seconds())
	vars := map[string]string{
		"__rate_interval": rateInterval,
		"__interval":      scrape.String(),
		"__range":         fmt.Sprintf("%ds", rangeSec),
		"__range_s":       strconv.Itoa(rangeSec),
	}
	fill := func(expr string) string {
		return regexp.MustCompile(`\$\{?(\w+)\}?`).ReplaceAllStringFunc(expr, func(v string) string {
			name := strings.Trim(v, "${}")
			if val, ok := vars[name]; ok {
				return val
			}
			t.Errorf("%s: variable %s has no value", expr, v)
			return v
		})
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			t.Fatalf("variable %s: query %q is not label_values(SELECTOR, LABEL)", v.Name, q)
		}
		data, err := p.get("/api/v1/label/"+m[2]+"/values", url.Values{"match[]": {fill(m[1])}, "start": {unix(from)}, "end": {unix(end)}})
		if err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		var values []string
		if err := json.Unmarshal(data, &values); err != nil || len(values) == 0 {
			t.Fatalf("variable %s: %s gives no values (%v)", v.Name, q, err)
		}
		// One value picked, escaped as Grafana escapes a multi-value
		// variable for =~: a regular expression in a PromQL string.
		vars[v.Name] = strings.ReplaceAll(regexp.QuoteMeta(values[0]), `\`, `\\`)
		t.Logf("$%s = %s (of %q)", v.Name, values[0], values)
	}

	var panels []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			panels = append(panels, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	queries := 0
	for _, pa := range panels {
		for _, target := range pa.Targets {
			if target.Expr == "" {
				continue
			}
			queries++
			expr := fill(target.Expr)
			n, err := p.series(expr, target.Instant, from, end, scrape)
			switch {
			case err != nil:
				t.Errorf("panel %d %q, query %s: %v", pa.ID, pa.Title, target.RefID, err)
			case n == 0:
				t.Errorf("panel %d %q, query %s returns no series after a failover and a fail-back: %s", pa.ID, pa.Title, target.RefID, expr)
			default:
				t.Logf("panel %d %q, query %s: %d series", pa.ID, pa.Title, target.RefID, n)
			}
		}
	}
	for _, a := range d.Annotations.List {
		if a.Datasource.Type != "prometheus" {
			continue
		}
		queries++
		// Grafana steps annotation queries by their step; one longer than
		// the run would leave a single point at its start.
		step, err := time.ParseDuration(a.Step)
		if err != nil || step > end.Sub(from) {
			step = scrape
		}
		expr := fill(a.Expr)
		n, err := p.series(expr, false, from, end, step)
		switch {
		case err != nil:
			t.Errorf("annotation %q: %v", a.Name, err)
		case n == 0:
			t.Errorf("annotation %q returns no series after a failover and a fail-back: %s", a.Name, expr)
		default:
			t.Logf("annotation %q: %d series", a.Name, n)
		}
	}
	if queries == 0 {
		t.Fatal("no queries in the dashboard")
	}
}
