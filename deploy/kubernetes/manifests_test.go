package kubernetes_test

import (
	"bufio"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/coredns/caddy"
	"github.com/coredns/caddy/caddyfile"
	"github.com/coredns/coredns/core/dnsserver"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	// Registers the upstreamtier setup function with caddy.
	_ "github.com/upstreamtier/upstreamtier"
)

const (
	kustomizationFile = "kustomization.yaml"
	dockerfile        = "../Dockerfile"
	buildMain         = "../../cmd/coredns/main.go"

	// buildCommand is the one way this project builds its CoreDNS binary.
	buildCommand = `CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o coredns ./cmd/coredns`

	namespace = "kube-system"
	name      = "coredns" // of the ConfigMap, the Deployment and its container
)

// dnsPodLabels are the labels of the stock cluster-DNS pods.
var dnsPodLabels = map[string]string{"k8s-app": "kube-dns"}

// objects are the Kubernetes objects in this directory's manifests.
type objects struct {
	configMaps  []*corev1.ConfigMap
	deployments []*appsv1.Deployment
	pdbs        []*policyv1.PodDisruptionBudget
}

// decodeStrict decodes one YAML document the way the API server does with
// fieldValidation=Strict: duplicate keys, unknown fields and fields in the
// wrong case are errors.
func decodeStrict(doc []byte, into any) error {
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(js, into)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// yamlDocuments splits a file into its non-empty YAML documents.
func yamlDocuments(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs [][]byte
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if v != nil { // only comments or nothing
			docs = append(docs, doc)
		}
	}
}

// manifestFiles lists the YAML files of this directory but the kustomization.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = slices.DeleteFunc(files, func(f string) bool { return f == kustomizationFile })
	if len(files) == 0 {
		t.Fatal("no manifests found")
	}
	return files
}

// loadObjects strictly decodes every document of every manifest into its
// Kubernetes API type, chosen by apiVersion and kind.
func loadObjects(t *testing.T) objects {
	t.Helper()
	var objs objects
	for _, file := range manifestFiles(t) {
		for i, doc := range yamlDocuments(t, file) {
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s, document %d: %v", file, i+1, err)
			}
			var obj any
			switch gvk := meta.APIVersion + ", Kind=" + meta.Kind; gvk {
			case "v1, Kind=ConfigMap":
				cm := new(corev1.ConfigMap)
				objs.configMaps, obj = append(objs.configMaps, cm), cm
			case "apps/v1, Kind=Deployment":
				d := new(appsv1.Deployment)
				objs.deployments, obj = append(objs.deployments, d), d
			case "policy/v1, Kind=PodDisruptionBudget":
				pdb := new(policyv1.PodDisruptionBudget)
				objs.pdbs, obj = append(objs.pdbs, pdb), pdb
			default:
				t.Fatalf("%s, document %d: unexpected %s (teach this test its type)", file, i+1, gvk)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Errorf("%s, document %d (%s %s): %v", file, i+1, meta.APIVersion, meta.Kind, err)
			}
		}
	}
	return objs
}

// only returns the single element of list, failing the test otherwise.
func only[T any](t *testing.T, what string, list []T) T {
	t.Helper()
	if len(list) != 1 {
		t.Fatalf("want exactly 1 %s in the manifests, have %d", what, len(list))
	}
	return list[0]
}

// kustomization is the part of kustomize's Kustomization type these
// manifests may use; anything else fails the strict decoding.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources,omitempty"`
	// Images is what `kustomize edit set image` writes, to point the
	// Deployment at your own registry.
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
	Patches []struct {
		Path   string `json:"path,omitempty"`
		Patch  string `json:"patch,omitempty"`
		Target *struct {
			Group     string `json:"group,omitempty"`
			Version   string `json:"version,omitempty"`
			Kind      string `json:"kind,omitempty"`
			Name      string `json:"name,omitempty"`
			Namespace string `json:"namespace,omitempty"`
		} `json:"target,omitempty"`
	} `json:"patches,omitempty"`
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := loadObjects(t)
	only(t, "ConfigMap", objs.configMaps)
	only(t, "Deployment", objs.deployments)
	only(t, "PodDisruptionBudget", objs.pdbs)
}

func TestKustomization(t *testing.T) {
	docs := yamlDocuments(t, kustomizationFile)
	if len(docs) != 1 {
		t.Fatalf("%s: want 1 document, have %d", kustomizationFile, len(docs))
	}
	var k kustomization
	if err := decodeStrict(docs[0], &k); err != nil {
		t.Fatalf("%s: %v", kustomizationFile, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s: apiVersion/kind = %s/%s, want kustomize.config.k8s.io/v1beta1/Kustomization", kustomizationFile, k.APIVersion, k.Kind)
	}
	if k.Namespace != namespace {
		t.Errorf("%s: namespace = %q, want %q", kustomizationFile, k.Namespace, namespace)
	}

	referenced := map[string]bool{}
	for _, r := range k.Resources {
		referenced[r] = true
	}
	for _, p := range k.Patches {
		if p.Path != "" {
			referenced[p.Path] = true
		}
	}
	for f := range referenced {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s references %s: %v", kustomizationFile, f, err)
		}
	}
	for _, f := range manifestFiles(t) {
		if !referenced[f] {
			t.Errorf("%s is not referenced by %s", f, kustomizationFile)
		}
	}

	// kustomize patches only its own resources: a patch whose target is not
	// among them is dropped without a word (or fails the build), so it would
	// never reach the cluster.
	type id struct{ kind, name string }
	have := map[id]bool{}
	for _, r := range k.Resources {
		if !strings.HasSuffix(r, ".yaml") {
			continue // a directory or remote base: not checked here
		}
		for _, doc := range yamlDocuments(t, r) {
			var m struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &m); err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			have[id{m.Kind, m.Metadata.Name}] = true
		}
	}
	for _, p := range k.Patches {
		if p.Target == nil || p.Target.Kind == "" || p.Target.Name == "" {
			t.Errorf("%s: patch %q needs a target kind and name", kustomizationFile, p.Path)
			continue
		}
		if !have[id{p.Target.Kind, p.Target.Name}] {
			t.Errorf("%s: patch %q targets %s %s, which is not among its resources: kustomize would drop it silently", kustomizationFile, p.Path, p.Target.Kind, p.Target.Name)
		}
	}
}

func TestConfigMap(t *testing.T) {
	cm := only(t, "ConfigMap", loadObjects(t).configMaps)
	if cm.Name != name || cm.Namespace != namespace {
		t.Errorf("ConfigMap is %s/%s, want %s/%s", cm.Namespace, cm.Name, namespace, name)
	}
	if strings.TrimSpace(cm.Data["Corefile"]) == "" {
		t.Errorf("ConfigMap %s has no Corefile", cm.Name)
	}
	for key := range cm.Data {
		if key != "Corefile" {
			t.Errorf("ConfigMap %s: unexpected key %q (the Deployment mounts only Corefile)", cm.Name, key)
		}
	}
}

func TestDeploymentPatch(t *testing.T) {
	d := only(t, "Deployment", loadObjects(t).deployments)
	if d.Name != name || d.Namespace != namespace {
		t.Errorf("Deployment is %s/%s, want %s/%s", d.Namespace, d.Name, namespace, name)
	}
	pod := d.Spec.Template.Spec

	// A strategic merge matches containers by name: another name would add
	// a container next to the stock one instead of changing it.
	if len(pod.Containers) != 1 || pod.Containers[0].Name != name {
		t.Fatalf("want exactly one container, named %q (the stock container's name)", name)
	}
	c := pod.Containers[0]
	if c.Image == "" {
		t.Error("container has no image")
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container has no securityContext")
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("securityContext.runAsNonRoot is not true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("securityContext.runAsUser is not set to a non-root UID")
	} else if uid := imageUID(t); *sc.RunAsUser != uid {
		t.Errorf("securityContext.runAsUser = %d, but the image runs as %d", *sc.RunAsUser, uid)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("securityContext.allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("securityContext.readOnlyRootFilesystem is not true")
	}
	if sc.Capabilities == nil ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_BIND_SERVICE"}) ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities = %+v, want add [NET_BIND_SERVICE] and drop [ALL]", sc.Capabilities)
	}

	health, ready := corefileHealthAndReadyPorts(t)
	checkProbe(t, "livenessProbe", c.LivenessProbe, "/health", health)
	checkProbe(t, "readinessProbe", c.ReadinessProbe, "/ready", ready)

	if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil {
		t.Fatal("no podAntiAffinity")
	}
	terms := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(terms) == 0 {
		t.Fatal("no preferred podAntiAffinity term")
	}
	for _, term := range terms {
		if term.PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
			t.Errorf("podAntiAffinity topologyKey = %q, want kubernetes.io/hostname", term.PodAffinityTerm.TopologyKey)
		}
		if !selects(term.PodAffinityTerm.LabelSelector, dnsPodLabels) {
			t.Errorf("podAntiAffinity labelSelector %v does not select the DNS pods %v", term.PodAffinityTerm.LabelSelector, dnsPodLabels)
		}
	}
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string, port int) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s is not an httpGet probe", what)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromInt32(int32(port)) {
		t.Errorf("%s gets %s on port %s, want %s on %d (from the Corefile)", what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, port)
	}
}

func TestPodDisruptionBudget(t *testing.T) {
	pdb := only(t, "PodDisruptionBudget", loadObjects(t).pdbs)
	if pdb.Namespace != namespace {
		t.Errorf("PodDisruptionBudget is in %q, want %q", pdb.Namespace, namespace)
	}
	if pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) {
		t.Errorf("maxUnavailable = %v, want 1", pdb.Spec.MaxUnavailable)
	}
	if pdb.Spec.MinAvailable != nil {
		t.Error("minAvailable is set next to maxUnavailable")
	}
	if !selects(pdb.Spec.Selector, dnsPodLabels) {
		t.Errorf("selector %v does not select the DNS pods %v", pdb.Spec.Selector, dnsPodLabels)
	}
}

// selects reports whether a non-empty label selector matches labels.
func selects(sel *metav1.LabelSelector, lbls map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return false
	}
	return s.Matches(labels.Set(lbls))
}

// corefileText is the Corefile of the ConfigMap.
func corefileText(t *testing.T) string {
	t.Helper()
	return only(t, "ConfigMap", loadObjects(t).configMaps).Data["Corefile"]
}

// corefile is the Corefile of the ConfigMap, parsed into server blocks.
func corefile(t *testing.T) []caddyfile.ServerBlock {
	t.Helper()
	return parseCorefile(t, corefileText(t))
}

// parseCorefile parses a Corefile into server blocks, with the directives
// CoreDNS knows plus upstreamtier.
func parseCorefile(t *testing.T, text string) []caddyfile.ServerBlock {
	t.Helper()
	blocks, err := caddyfile.Parse("Corefile", strings.NewReader(text), validDirectives())
	if err != nil {
		t.Fatalf("Corefile: %v", err)
	}
	if len(blocks) == 0 {
		t.Fatal("Corefile has no server blocks")
	}
	return blocks
}

// commentedTier is an optional tier the Corefile ships commented out: a
// commented tier line and, when it opens a block, the commented lines of
// the block up to its closing brace.
var commentedTier = regexp.MustCompile(`(?m)^\s*#\s*tier\s.*\{[ \t]*\n(?:\s*#.*\n)*?\s*#\s*\}[ \t]*$|^\s*#\s*tier\s.*$`)

// commentMark is the comment mark of one line, and the space after it.
var commentMark = regexp.MustCompile(`(?m)^(\s*)#\s?`)

// uncommentTiers returns the Corefile with its optional tiers uncommented.
func uncommentTiers(text string) string {
	return commentedTier.ReplaceAllStringFunc(text, func(tier string) string {
		return commentMark.ReplaceAllString(tier, "$1")
	})
}

// validDirectives is CoreDNS's directive list with upstreamtier added, as
// cmd/coredns does.
func validDirectives() []string {
	d := slices.Clone(dnsserver.Directives)
	if !slices.Contains(d, "upstreamtier") {
		d = append(d, "upstreamtier")
	}
	return d
}

// corefileHealthAndReadyPorts returns the ports of the health and ready
// endpoints the Corefile configures.
func corefileHealthAndReadyPorts(t *testing.T) (health, ready int) {
	t.Helper()
	port := func(dir string, def int) int {
		var found []int
		for _, sb := range corefile(t) {
			toks, ok := sb.Tokens[dir]
			if !ok {
				continue
			}
			p := def
			if len(toks) > 1 && toks[1].Line == toks[0].Line && toks[1].Text != "{" {
				_, ps, ok := strings.Cut(toks[1].Text, ":")
				n, err := strconv.Atoi(ps)
				if !ok || err != nil {
					t.Fatalf("Corefile line %d: cannot read the port of %s %s", toks[1].Line, dir, toks[1].Text)
				}
				p = n
			}
			found = append(found, p)
		}
		if len(found) != 1 {
			t.Fatalf("Corefile: want %s in exactly one server block, found %d", dir, len(found))
		}
		return found[0]
	}
	return port("health", 8080), port("ready", 8181)
}

// TestCorefileUsesBuiltInPlugins checks that the Corefile only uses plugins
// compiled into cmd/coredns: anything else stops CoreDNS at startup.
func TestCorefileUsesBuiltInPlugins(t *testing.T) {
	built := buildDirectives(t)
	for _, sb := range corefile(t) {
		for dir := range sb.Tokens {
			if !slices.Contains(built, dir) {
				t.Errorf("Corefile server block %v uses %q, which %s does not compile in", sb.Keys, dir, buildMain)
			}
		}
	}
}

// buildDirectives reads the directive list of the custom build, the
// `directives` string slice of cmd/coredns/main.go.
func buildDirectives(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), buildMain, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "directives" || len(vs.Values) != 1 {
			return true
		}
		lit, ok := vs.Values[0].(*ast.CompositeLit)
		if !ok {
			return true
		}
		for _, e := range lit.Elts {
			if bl, ok := e.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				s, err := strconv.Unquote(bl.Value)
				if err == nil {
					dirs = append(dirs, s)
				}
			}
		}
		return false
	})
	if len(dirs) == 0 {
		t.Skipf("%s has no `directives` string list to check the Corefile against", buildMain)
	}
	return dirs
}

// TestCorefileUpstreamtierSetup runs the plugin's real setup function on
// every upstreamtier stanza of the Corefile, the way CoreDNS does at
// startup (caddy's executeDirectives), without starting anything: no
// OnStartup hook runs, so no upstream is contacted.
func TestCorefileUpstreamtierSetup(t *testing.T) {
	text := corefileText(t)
	t.Run("as shipped", func(t *testing.T) { checkUpstreamtierSetup(t, text) })
	// The optional tiers must be valid too once a user uncomments them.
	t.Run("with the commented-out tiers", func(t *testing.T) {
		if !commentedTier.MatchString(text) {
			t.Skip("the Corefile has no commented-out tier")
		}
		uncommented := uncommentTiers(text)
		for _, tier := range commentedTier.FindAllString(text, -1) {
			t.Logf("uncommented:\n%s", commentMark.ReplaceAllString(tier, "$1"))
		}
		checkUpstreamtierSetup(t, uncommented)
	})
}

// TestCorefileForwardsAsStock checks that the Corefile as shipped sends
// queries where stock `forward . /etc/resolv.conf` does, the node's
// resolvers, and nowhere else: every other tier, the public DoT one
// included, is the operator's choice to uncomment.
func TestCorefileForwardsAsStock(t *testing.T) {
	for _, sb := range corefile(t) {
		tokens, ok := sb.Tokens["upstreamtier"]
		if !ok {
			continue
		}
		var tiers []string
		for i, tok := range tokens {
			if tok.Text == "tier" && i+1 < len(tokens) {
				var to []string
				for _, arg := range tokens[i+2:] {
					if arg.Line != tok.Line || arg.Text == "{" {
						break
					}
					to = append(to, arg.Text)
				}
				tiers = append(tiers, tokens[i+1].Text+" "+strings.Join(to, " "))
			}
		}
		if !slices.Equal(tiers, []string{"node /etc/resolv.conf"}) {
			t.Errorf("upstreamtier tiers as shipped: %q, want only the node's resolvers, %q: other tiers must be opt-in", tiers, "node /etc/resolv.conf")
		}
	}
}

func checkUpstreamtierSetup(t *testing.T, text string) {
	t.Helper()
	setup, err := caddy.DirectiveAction("dns", "upstreamtier")
	if err != nil {
		t.Fatal(err)
	}
	blocks := parseCorefile(t, text)

	base := caddy.NewTestController("dns", "")
	if base.Context() == nil {
		t.Fatal("the dns server type is not registered")
	}
	// CoreDNS's own check and normalization of the server block keys; it
	// also creates the per-zone configs that setup functions look up.
	blocks, err = base.Context().InspectServerBlocks("Corefile", blocks)
	if err != nil {
		t.Fatalf("Corefile server blocks: %v", err)
	}

	stanzas := 0
	for i, sb := range blocks {
		tokens, ok := sb.Tokens["upstreamtier"]
		if !ok {
			continue
		}
		stanzas++
		checkTLSServerNames(t, tokens)
		c := *base
		c.Key = sb.Keys[0]
		c.ServerBlockIndex = i
		c.ServerBlockKeyIndex = 0
		c.ServerBlockKeys = sb.Keys
		c.Dispenser = caddyfile.NewDispenserTokens("Corefile", withResolvConf(t, tokens))
		if err := setup(&c); err != nil {
			t.Errorf("upstreamtier in server block %v: %v", sb.Keys, err)
		}
	}
	if stanzas == 0 {
		t.Fatal("the Corefile does not use upstreamtier")
	}
}

// checkTLSServerNames fails the test for a tls:// upstream that gives the
// resolver's IP address without a server name: its certificate names the
// service, so the handshake would fail at run time.
func checkTLSServerNames(t *testing.T, tokens []caddyfile.Token) {
	t.Helper()
	for _, tok := range tokens {
		if tok.Text == "tls_servername" {
			return
		}
	}
	for _, tok := range tokens {
		if strings.HasPrefix(tok.Text, "tls://") && !strings.Contains(tok.Text, "%") {
			t.Errorf("Corefile line %d: %s has no %%servername (nor tls_servername): its certificate cannot be verified", tok.Line, tok.Text)
		}
	}
}

// withResolvConf returns tokens with /etc/resolv.conf replaced by a stand-in
// file if this machine's has no nameserver (some CI sandboxes), so that the
// test reads the same on every machine and never needs the network.
func withResolvConf(t *testing.T, tokens []caddyfile.Token) []caddyfile.Token {
	t.Helper()
	const resolvConf = "/etc/resolv.conf"
	if b, err := os.ReadFile(resolvConf); err == nil && regexp.MustCompile(`(?m)^\s*nameserver\s+\S`).Match(b) {
		return tokens
	}
	standIn := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(standIn, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s has no nameserver here; using %s instead", resolvConf, standIn)
	out := slices.Clone(tokens)
	for i := range out {
		if out[i].Text == resolvConf {
			out[i].Text = standIn
		}
	}
	return out
}

// dockerInstruction is one instruction of a Dockerfile, continuation lines
// joined.
type dockerInstruction struct {
	cmd  string // upper case: FROM, RUN, USER, ...
	args string
}

// readDockerfile returns the instructions of deploy/Dockerfile.
func readDockerfile(t *testing.T) (raw string, instrs []dockerInstruction) {
	t.Helper()
	b, err := os.ReadFile(dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	var cur strings.Builder
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if rest, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(rest + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		instrs = append(instrs, dockerInstruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	return string(b), instrs
}

// finalStage returns the instructions after the last FROM.
func finalStage(t *testing.T, instrs []dockerInstruction) []dockerInstruction {
	t.Helper()
	last := -1
	for i, in := range instrs {
		if in.cmd == "FROM" {
			last = i
		}
	}
	if last < 0 {
		t.Fatal("Dockerfile has no FROM")
	}
	return instrs[last+1:]
}

// imageUID returns the numeric UID the image runs as.
func imageUID(t *testing.T) int64 {
	t.Helper()
	_, instrs := readDockerfile(t)
	var user string
	for _, in := range finalStage(t, instrs) {
		if in.cmd == "USER" {
			user = in.args
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.ParseInt(uid, 10, 64)
	if err != nil {
		t.Fatalf("Dockerfile: USER %q is not numeric; Kubernetes cannot verify runAsNonRoot for a user name", user)
	}
	return n
}

// TestDockerfile checks deploy/Dockerfile as text: CI has no container
// engine to build it.
func TestDockerfile(t *testing.T) {
	raw, instrs := readDockerfile(t)

	froms := 0
	built := false
	for _, in := range instrs {
		switch in.cmd {
		case "FROM":
			froms++
		case "RUN":
			built = built || strings.Contains(in.args, buildCommand)
		}
	}
	if froms < 2 {
		t.Errorf("Dockerfile has %d stages, want a multi-stage build", froms)
	}
	if !strings.Contains(raw, buildCommand) || !built {
		t.Errorf("Dockerfile does not RUN the build command %q", buildCommand)
	}

	final := finalStage(t, instrs)
	var user, entrypoint string
	exposed := map[string]bool{}
	for _, in := range final {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "EXPOSE":
			for p := range strings.FieldsSeq(in.args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				exposed[p] = true
			}
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "root" || uid == "0" {
		t.Errorf("final stage runs as USER %q, want a non-root user", user)
	} else if imageUID(t) == 0 {
		t.Error("final stage runs as UID 0")
	}
	for _, p := range []string{"53/udp", "53/tcp", "9153/tcp", "8080/tcp", "8181/tcp"} {
		if !exposed[p] {
			t.Errorf("final stage does not EXPOSE %s", p)
		}
	}
	if entrypoint != `["/coredns"]` {
		t.Errorf(`ENTRYPOINT is %s, want ["/coredns"]`, entrypoint)
	}
	if !strings.Contains(raw, "ca-certificates") {
		t.Error("Dockerfile does not mention ca-certificates: DNS-over-TLS upstreams need them")
	}
}
