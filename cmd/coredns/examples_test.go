package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coredns/caddy"
)

// fencedBlocks returns the text of the fenced blocks in s that open with
// one of the given fence lines, up to the next closing fence.
func fencedBlocks(s, closing string, opening ...string) []string {
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimRight(line, " \t")
		switch {
		case !in:
			for _, o := range opening {
				if line == o {
					in, cur = true, nil
				}
			}
		case line == closing:
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		default:
			cur = append(cur, line)
		}
	}
	return blocks
}

// section returns the part of a Markdown text from the heading start to
// the next heading that begins with the same prefix.
func section(t *testing.T, s, start, next string) string {
	t.Helper()
	i := strings.Index(s, start)
	if i < 0 {
		t.Fatalf("no section %q", start)
	}
	s = s[i+len(start):]
	if j := strings.Index(s, next); j >= 0 {
		s = s[:j]
	}
	return s
}

// forwardExamples returns the example Corefiles of forward's README, in
// the CoreDNS version this build uses.
func forwardExamples(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/coredns/coredns").Output()
	if err != nil {
		t.Fatalf("finding CoreDNS's source: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "plugin", "forward", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return fencedBlocks(section(t, string(b), "\n## Examples", "\n## "), "~~~", "~~~ corefile", "~~~ txt")
}

// Every example of forward's README has its upstreamtier equivalent in
// ours, right after it, and this build accepts it: every plugin of the
// Corefile is set up as at startup, without starting servers or probes,
// so nothing is sent to the examples' public addresses.
func TestForwardExamplesMigrate(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ours := fencedBlocks(section(t, string(readme), "### forward's own examples", "\n### "), "```", "```corefile")
	theirs := forwardExamples(t)
	if len(ours) != 2*len(theirs) {
		t.Fatalf("README has %d corefile blocks in the section, want a pair for each of forward's %d examples", len(ours), len(theirs))
	}
	for i, example := range theirs {
		if got := ours[2*i]; got != example {
			t.Errorf("pair %d: the forward side is not forward's example %d:\n%s\nwant:\n%s", i+1, i+1, got, example)
		}
		equivalent := ours[2*i+1]
		if !strings.Contains(equivalent, "upstreamtier") {
			t.Errorf("pair %d: no upstreamtier in\n%s", i+1, equivalent)
		}
		input := caddy.CaddyfileInput{Contents: []byte(equivalent + "\n"), Filepath: "Corefile", ServerTypeName: "dns"}
		if err := caddy.ValidateAndExecuteDirectives(input, nil, true); err != nil {
			t.Errorf("pair %d: refused: %v\n%s", i+1, err, equivalent)
		}
	}
}
