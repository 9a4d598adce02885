package grafana_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	dashboardFile = "upstreamtier-dashboard.json"
	metricsFile   = "../../metrics.go"

	// prefix is plugin.Namespace + "_" + pluginName + "_", which
	// definedMetrics checks every metric of metricsFile is built from.
	prefix = "coredns_upstreamtier_"

	schemaVersion = 39
	datasourceUID = "${datasource}"
)

// scrapeLabels are added by Prometheus when it scrapes the pods, on top of
// the labels the plugin exports.
var scrapeLabels = []string{"instance", "pod", "job"}

// filters are the matchers every selector of a panel or annotation must
// have, so that the template variables apply to the whole dashboard.
var filters = []string{`server=~"$server"`, `instance=~"$instance"`}

// series is one Prometheus series name the plugin exports, and its labels.
type series struct {
	metric string // the name in metrics.go, without prefix or suffix
	labels []string
}

// metricDef is one metric of metrics.go.
type metricDef struct {
	name   string // full name, with prefix
	kind   string // counter, gauge, histogram or summary
	labels []string
}

// series returns the series names the metric is scraped as, with their
// labels: histograms add _bucket (with le), _sum and _count.
func (m metricDef) series() map[string]series {
	s := func(extra ...string) series {
		return series{metric: m.name, labels: slices.Concat(m.labels, extra)}
	}
	switch m.kind {
	case "histogram":
		return map[string]series{m.name + "_bucket": s("le"), m.name + "_sum": s(), m.name + "_count": s()}
	case "summary":
		return map[string]series{m.name: s("quantile"), m.name + "_sum": s(), m.name + "_count": s()}
	default:
		return map[string]series{m.name: s()}
	}
}

var nameField = regexp.MustCompile(`(?m)^\s*Name:\s*"([^"]*)"`)

// definedMetrics reads metrics.go: the `Name: "..."` values of its text,
// which must be exactly the names of its promauto.New* calls, whose
// constructor gives the kind and whose label list gives the labels.
func definedMetrics(t *testing.T) map[string]metricDef {
	t.Helper()
	src, err := os.ReadFile(metricsFile)
	if err != nil {
		t.Fatal(err)
	}
	fields := nameField.FindAllSubmatch(src, -1)
	textNames := make([]string, 0, len(fields))
	for _, m := range fields {
		textNames = append(textNames, prefix+string(m[1]))
	}
	if len(textNames) == 0 {
		t.Fatalf("%s: no Name: \"...\" fields", metricsFile)
	}

	f, err := parser.ParseFile(token.NewFileSet(), metricsFile, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	defs := map[string]metricDef{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || types.ExprString(sel.X) != "promauto" || len(call.Args) == 0 {
			return true
		}
		ctor := sel.Sel.Name
		kind := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(ctor, "New"), "Vec"))
		if !slices.Contains([]string{"counter", "gauge", "histogram", "summary"}, kind) {
			t.Errorf("%s: promauto.%s: unknown constructor (teach this test its series)", metricsFile, ctor)
			return true
		}
		opts, ok := call.Args[0].(*ast.CompositeLit)
		if !ok {
			t.Errorf("%s: promauto.%s: options are not a composite literal", metricsFile, ctor)
			return true
		}
		fields := map[string]ast.Expr{}
		for _, e := range opts.Elts {
			if kv, ok := e.(*ast.KeyValueExpr); ok {
				fields[types.ExprString(kv.Key)] = kv.Value
			}
		}
		if ns, sub := types.ExprString(fields["Namespace"]), types.ExprString(fields["Subsystem"]); ns != "plugin.Namespace" || sub != "pluginName" {
			t.Errorf("%s: promauto.%s: Namespace %s, Subsystem %s: want plugin.Namespace and pluginName (the %s prefix)",
				metricsFile, ctor, ns, sub, prefix)
		}
		lit, ok := fields["Name"].(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			t.Errorf("%s: promauto.%s: Name is not a string literal", metricsFile, ctor)
			return true
		}
		name, _ := strconv.Unquote(lit.Value)
		def := metricDef{name: prefix + name, kind: kind}
		if len(call.Args) > 1 {
			list, ok := call.Args[1].(*ast.CompositeLit)
			if !ok {
				t.Errorf("%s: %s: labels are not a []string literal", metricsFile, def.name)
				return true
			}
			for _, e := range list.Elts {
				l, ok := e.(*ast.BasicLit)
				if !ok || l.Kind != token.STRING {
					t.Errorf("%s: %s: label %s is not a string literal", metricsFile, def.name, types.ExprString(e))
					continue
				}
				v, _ := strconv.Unquote(l.Value)
				def.labels = append(def.labels, v)
			}
		}
		if _, dup := defs[def.name]; dup {
			t.Errorf("%s: %s defined twice", metricsFile, def.name)
		}
		defs[def.name] = def
		return true
	})
	astNames := slices.Sorted(maps.Keys(defs))
	slices.Sort(textNames)
	if !slices.Equal(textNames, astNames) {
		t.Fatalf("%s: Name fields %v, but promauto metrics %v", metricsFile, textNames, astNames)
	}
	return defs
}

// allSeries maps every series name the plugin exports to its metric and labels.
func allSeries(defs map[string]metricDef) map[string]series {
	out := map[string]series{}
	for _, d := range defs {
		maps.Copy(out, d.series())
	}
	return out
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gridPos struct {
	H, W, X, Y int
}

type target struct {
	RefID        string         `json:"refId"`
	Expr         string         `json:"expr"`
	LegendFormat string         `json:"legendFormat"`
	Datasource   *datasourceRef `json:"datasource"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource *datasourceRef `json:"datasource"`
	GridPos    *gridPos       `json:"gridPos"`
	Targets    []target       `json:"targets"`
	Panels     []panel        `json:"panels"` // of a collapsed row
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasourceRef  `json:"datasource"`
}

type annotation struct {
	Name       string         `json:"name"`
	BuiltIn    int            `json:"builtIn"`
	Expr       string         `json:"expr"`
	Datasource *datasourceRef `json:"datasource"`
}

type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []annotation `json:"list"`
	} `json:"annotations"`
}

// checkNoDuplicateKeys walks one JSON value and fails on an object with a
// key twice (encoding/json would silently keep the last) or trailing data.
func checkNoDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var walk func(path string) error
	walk = func(path string) error {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				key := k.(string)
				if seen[key] {
					return fmt.Errorf("%s: duplicate key %q", path, key)
				}
				seen[key] = true
				if err := walk(path + "." + key); err != nil {
					return err
				}
			}
			_, err = dec.Token() // }
		case json.Delim('['):
			for i := 0; dec.More(); i++ {
				if err := walk(fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
			_, err = dec.Token() // ]
		}
		return err
	}
	if err := walk("$"); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the dashboard object")
	}
	return nil
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(data) {
		t.Fatalf("%s: not valid JSON", dashboardFile)
	}
	if err := checkNoDuplicateKeys(data); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// flatten returns the panels with the panels of collapsed rows.
func flatten(ps []panel) []panel {
	out := make([]panel, 0, len(ps))
	for _, p := range ps {
		out = append(out, p)
		out = append(out, flatten(p.Panels)...)
	}
	return out
}

// queryPanels returns the panels that query Prometheus: all but rows.
func queryPanels(d dashboard) []panel {
	return slices.DeleteFunc(flatten(d.Panels), func(p panel) bool { return p.Type == "row" })
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.Title == "" {
		t.Error("no title")
	}
	if d.UID == "" || len(d.UID) > 40 {
		t.Errorf("uid %q: want 1 to 40 characters", d.UID)
	}
	if d.SchemaVersion != schemaVersion {
		t.Errorf("schemaVersion %d, want %d", d.SchemaVersion, schemaVersion)
	}
	all := flatten(d.Panels)
	if len(queryPanels(d)) == 0 {
		t.Fatal("no panels")
	}
	ids := map[int]string{}
	for _, p := range all {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.Title == "" {
			t.Errorf("%s: no title", name)
		}
		if p.ID <= 0 {
			t.Errorf("%s: id must be positive", name)
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("%s: id also used by %q", name, other)
		}
		ids[p.ID] = p.Title
		if g := p.GridPos; g == nil || g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v: want w, h > 0 inside the 24 columns", name, g)
		}
		if p.Type == "row" {
			if len(p.Targets) > 0 {
				t.Errorf("%s: a row has no targets", name)
			}
			continue
		}
		if p.Type == "" {
			t.Errorf("%s: no type", name)
		}
		if p.Datasource == nil || p.Datasource.UID != datasourceUID {
			t.Errorf("%s: datasource %+v, want uid %s", name, p.Datasource, datasourceUID)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no targets", name)
		}
		refs := map[string]bool{}
		for i, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("%s: target %d: empty expr", name, i)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: target %d: refId %q missing or repeated", name, i, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != datasourceUID {
				t.Errorf("%s: target %s: datasource %+v, want uid %s", name, tg.RefID, tg.Datasource, datasourceUID)
			}
		}
	}
	// Top-level panels of a grid must not overlap (panels inside collapsed
	// rows are placed when the row opens).
	for i, a := range d.Panels {
		for _, b := range d.Panels[i+1:] {
			if a.GridPos == nil || b.GridPos == nil {
				continue
			}
			ga, gb := *a.GridPos, *b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q %+v and %q %+v overlap", a.Title, ga, b.Title, gb)
			}
		}
	}
}

func TestDashboardVariables(t *testing.T) {
	d := loadDashboard(t)
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	ds, ok := vars["datasource"]
	if !ok {
		t.Fatal("no datasource variable")
	}
	var dsQuery string
	if ds.Type != "datasource" || json.Unmarshal(ds.Query, &dsQuery) != nil || dsQuery != "prometheus" {
		t.Errorf("datasource variable: type %q, query %s: want a datasource variable of prometheus", ds.Type, ds.Query)
	}
	for _, name := range []string{"server", "instance"} {
		v, ok := vars[name]
		if !ok {
			t.Errorf("no %s variable", name)
			continue
		}
		// The query is a string in old dashboards, an object in new ones.
		var q string
		if json.Unmarshal(v.Query, &q) != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Errorf("%s variable: query %s: %v", name, v.Query, err)
			}
			q = obj.Query
		}
		re := regexp.MustCompile(`^label_values\(` + prefix + `serving_tier(\{[^}]*\})?,\s*` + name + `\)$`)
		for what, s := range map[string]string{"query": q, "definition": v.Definition} {
			if !re.MatchString(s) {
				t.Errorf("%s variable: %s %q, want label_values(%sserving_tier..., %s)", name, what, s, prefix, name)
			}
		}
		if v.Type != "query" || v.Datasource == nil || v.Datasource.UID != datasourceUID {
			t.Errorf("%s variable: type %q, datasource %+v: want a query of %s", name, v.Type, v.Datasource, datasourceUID)
		}
	}
}

var (
	metricName   = regexp.MustCompile(`\bcoredns_[a-zA-Z0-9_:]*`)
	selector     = regexp.MustCompile(`^\{([^}]*)\}`)
	matcher      = regexp.MustCompile(`^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$`)
	grouping     = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	labelReplace = regexp.MustCompile(`,\s*"([^"]*)"\s*,\s*"[^"]*"\s*,\s*"([^"]*)"\s*,\s*"[^"]*"\s*\)`)
	legendLabel  = regexp.MustCompile(`\{\{\s*([^}\s]+)\s*\}\}`)
)

// checkExpr checks one PromQL expression (and its legend) against the
// exported series: every coredns_ metric is a series of this plugin,
// selected with braces holding the dashboard filters and only its own
// labels; by/on/... clauses, label_replace and the legend name only labels
// of the expression's series. It returns the series used.
func checkExpr(expr, legend string, known map[string]series, needFilters bool) (used []string, errs []error) {
	labels := map[string]bool{}
	for _, l := range scrapeLabels {
		labels[l] = true
	}
	for _, loc := range metricName.FindAllStringIndex(expr, -1) {
		name := expr[loc[0]:loc[1]]
		s, ok := known[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not a series of %s", name, metricsFile))
			continue
		}
		used = append(used, name)
		for _, l := range s.labels {
			labels[l] = true
		}
		m := selector.FindStringSubmatch(expr[loc[1]:])
		if m == nil {
			if needFilters {
				errs = append(errs, fmt.Errorf("%s: no {...} selector with the dashboard filters", name))
			}
			continue
		}
		for _, f := range filters {
			if needFilters && !strings.Contains(m[1], f) {
				errs = append(errs, fmt.Errorf("%s: selector {%s} does not filter %s", name, m[1], f))
			}
		}
		for mt := range strings.SplitSeq(m[1], ",") {
			if strings.TrimSpace(mt) == "" {
				continue
			}
			parts := matcher.FindStringSubmatch(mt)
			if parts == nil {
				errs = append(errs, fmt.Errorf("%s: cannot read matcher %q", name, mt))
				continue
			}
			if !slices.Contains(s.labels, parts[1]) && !slices.Contains(scrapeLabels, parts[1]) {
				errs = append(errs, fmt.Errorf("%s: no label %q", name, parts[1]))
			}
		}
	}
	if len(used) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("uses no series of the plugin"))
	}
	if len(used) == 0 {
		return used, errs // the labels cannot be checked
	}
	var refs []string
	for _, m := range grouping.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				refs = append(refs, l)
			}
		}
	}
	for _, m := range labelReplace.FindAllStringSubmatch(expr, -1) {
		refs = append(refs, m[1], m[2])
	}
	for _, m := range legendLabel.FindAllStringSubmatch(legend, -1) {
		refs = append(refs, m[1])
	}
	for _, l := range refs {
		if !labels[l] {
			errs = append(errs, fmt.Errorf("label %q is on none of the series used", l))
		}
	}
	return used, errs
}

// TestDashboardMetricsDefined checks that every expression of the
// dashboard (panels, annotations, variables) uses only series and labels
// that metrics.go defines.
func TestDashboardMetricsDefined(t *testing.T) {
	d := loadDashboard(t)
	known := allSeries(definedMetrics(t))
	check := func(where, expr, legend string, needFilters bool) {
		_, errs := checkExpr(expr, legend, known, needFilters)
		for _, err := range errs {
			t.Errorf("%s: %v\n\texpr: %s", where, err, expr)
		}
	}
	for _, p := range queryPanels(d) {
		for _, tg := range p.Targets {
			check(fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), tg.Expr, tg.LegendFormat, true)
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 1 {
			continue
		}
		if a.Expr == "" || a.Datasource == nil || a.Datasource.UID != datasourceUID {
			t.Errorf("annotation %q: want an expr on datasource %s", a.Name, datasourceUID)
			continue
		}
		check(fmt.Sprintf("annotation %q", a.Name), a.Expr, "", true)
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			check(fmt.Sprintf("variable %q", v.Name), v.Definition, "", false)
		}
	}
}

// TestDashboardUsesEveryMetric checks that every metric metrics.go defines
// has at least one panel (an annotation or a variable is not enough).
func TestDashboardUsesEveryMetric(t *testing.T) {
	d := loadDashboard(t)
	defs := definedMetrics(t)
	known := allSeries(defs)
	usedBy := map[string][]string{}
	for _, p := range queryPanels(d) {
		for _, tg := range p.Targets {
			used, _ := checkExpr(tg.Expr, "", known, false)
			for _, s := range used {
				m := known[s].metric
				if !slices.Contains(usedBy[m], p.Title) {
					usedBy[m] = append(usedBy[m], p.Title)
				}
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(defs)) {
		if len(usedBy[name]) == 0 {
			t.Errorf("%s (%s, labels %v) is on no panel", name, defs[name].kind, defs[name].labels)
		}
	}
}

// TestCheckExprCatches makes sure checkExpr is not vacuous: it rejects
// what the dashboard must not contain.
func TestCheckExprCatches(t *testing.T) {
	known := allSeries(map[string]metricDef{
		prefix + "requests_total":           {name: prefix + "requests_total", kind: "counter", labels: []string{"server", "tier", "rcode"}},
		prefix + "attempt_duration_seconds": {name: prefix + "attempt_duration_seconds", kind: "histogram", labels: []string{"server", "tier"}},
	})
	f := `{server=~"$server", instance=~"$instance"}`
	good := []struct{ expr, legend string }{
		{`sum by (tier, rcode) (rate(` + prefix + `requests_total` + f + `[5m]))`, "{{tier}} {{rcode}}"},
		{`histogram_quantile(0.99, sum by (tier, le) (rate(` + prefix + `attempt_duration_seconds_bucket` + f + `[5m])))`, "{{tier}}"},
		{`label_replace(sum by (instance, tier) (` + prefix + `requests_total` + f + `), "tier", "(none)", "tier", "")`, "{{instance}}"},
	}
	for _, c := range good {
		if _, errs := checkExpr(c.expr, c.legend, known, true); len(errs) > 0 {
			t.Errorf("%s: unexpected errors %v", c.expr, errs)
		}
	}
	bad := map[string]struct{ expr, legend string }{
		"unknown metric":        {`rate(` + prefix + `nope_total` + f + `[5m])`, ""},
		"other CoreDNS metric":  {`rate(coredns_dns_requests_total` + f + `[5m]) + rate(` + prefix + `requests_total` + f + `[5m])`, ""},
		"bare histogram name":   {`rate(` + prefix + `attempt_duration_seconds` + f + `[5m])`, ""},
		"le on a counter":       {`sum by (le) (rate(` + prefix + `requests_total` + f + `[5m]))`, ""},
		"le matcher on sum":     {`rate(` + prefix + `attempt_duration_seconds_sum{server=~"$server", instance=~"$instance", le="1"}[5m])`, ""},
		"unknown by label":      {`sum by (upstream) (rate(` + prefix + `requests_total` + f + `[5m]))`, ""},
		"unknown legend label":  {`rate(` + prefix + `requests_total` + f + `[5m])`, "{{zone}}"},
		"unknown replace label": {`label_replace(` + prefix + `requests_total` + f + `, "zone", "x", "tier", "")`, ""},
		"no filters":            {`rate(` + prefix + `requests_total[5m])`, ""},
		"no instance filter":    {`rate(` + prefix + `requests_total{server=~"$server"}[5m])`, ""},
		"no plugin metric":      {`vector(1)`, ""},
	}
	for what, c := range bad {
		if _, errs := checkExpr(c.expr, c.legend, known, true); len(errs) == 0 {
			t.Errorf("%s: %s passes", what, c.expr)
		}
	}
}
