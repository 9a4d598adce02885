package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

const siteCorefile = "../../deploy/systemd/Corefile"

// The site Corefile of deploy/systemd is accepted by this build: every
// plugin set up as at startup, the upstreamtier stanza by the plugin's
// real setup, without starting servers or probes (nothing is sent to its
// addresses). Its tiers are site, isp and public in that order, the two
// outside the site barred from the private zones, the last one DoT.
func TestSiteCorefile(t *testing.T) {
	b, err := os.ReadFile(siteCorefile)
	if err != nil {
		t.Fatal(err)
	}
	input := caddy.CaddyfileInput{Contents: b, Filepath: siteCorefile, ServerTypeName: "dns"}
	if err := caddy.ValidateAndExecuteDirectives(input, nil, true); err != nil {
		t.Fatalf("refused: %v", err)
	}

	tierLine := regexp.MustCompile(`^\s*tier (\S+) (.+?) \{$`)
	var tiers, upstreams []string
	excepts := map[string]string{}
	current := ""
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		if m := tierLine.FindStringSubmatch(line); m != nil {
			current = m[1]
			tiers = append(tiers, current)
			upstreams = append(upstreams, m[2])
		} else if e, ok := strings.CutPrefix(strings.TrimSpace(line), "except "); ok && current != "" {
			excepts[current] = e
		}
	}
	if want := []string{"site", "isp", "public"}; !slices.Equal(tiers, want) {
		t.Fatalf("tiers %q, want %q", tiers, want)
	}
	if _, ok := excepts["site"]; ok {
		t.Errorf("tier site has except %s: it is the one that serves the private zones", excepts["site"])
	}
	for _, tier := range []string{"isp", "public"} {
		if !strings.Contains(excepts[tier], "corp.example") {
			t.Errorf("tier %s: except %q, want corp.example kept from it", tier, excepts[tier])
		}
	}
	for u := range strings.FieldsSeq(upstreams[2]) {
		if !strings.HasPrefix(u, "tls://") || !strings.Contains(u, "%") {
			t.Errorf("tier public: upstream %s, want tls://IP%%NAME (DoT, certificate name checked)", u)
		}
	}
}
