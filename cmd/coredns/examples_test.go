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
// one of the given fence lines, up to the next closing fence: `~~~` for a
// block opened with `~~~`, as CoreDNS writes them, else "```".
func fencedBlocks(s string, opening ...string) []string {
	var blocks []string
	var cur []string
	closing := ""
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimRight(line, " \t")
		switch {
		case closing == "":
			for _, o := range opening {
				if line == o {
					closing, cur = "```", nil
					if strings.HasPrefix(o, "~~~") {
						closing = "~~~"
					}
				}
			}
		case line == closing:
			closing = ""
			blocks = append(blocks, strings.Join(cur, "\n"))
		default:
			cur = append(cur, line)
		}
	}
	return blocks
}

// corefileFences are the fence lines that open a Corefile in our docs.
var corefileFences = []string{"~~~ corefile", "```corefile"}

// docFile is one of the Markdown files that document the plugin.
type docFile struct {
	name, text string
}

// docFiles returns README.md and every docs/*.md, read from the
// repository.
func docFiles(t *testing.T) []docFile {
	t.Helper()
	names, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	names = append([]string{"../../README.md"}, names...)
	files := make([]docFile, 0, len(names))
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, docFile{strings.TrimPrefix(name, "../../"), string(b)})
	}
	return files
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
	return fencedBlocks(section(t, string(b), "\n## Examples", "\n## "), "~~~ corefile", "~~~ txt")
}

// validate sets up every plugin of corefile as at startup, without
// starting servers or probes, so nothing is sent to the examples' public
// addresses.
func validate(corefile string) error {
	input := caddy.CaddyfileInput{Contents: []byte(corefile + "\n"), Filepath: "Corefile", ServerTypeName: "dns"}
	return caddy.ValidateAndExecuteDirectives(input, nil, true)
}

// Every example of forward's README has its upstreamtier equivalent in
// the migration guide, right after it, and this build accepts it.
func TestForwardExamplesMigrate(t *testing.T) {
	guide, err := os.ReadFile("../../docs/migration.md")
	if err != nil {
		t.Fatal(err)
	}
	ours := fencedBlocks(section(t, string(guide), "\n## forward's own examples", "\n## "), corefileFences...)
	theirs := forwardExamples(t)
	if len(ours) != 2*len(theirs) {
		t.Fatalf("docs/migration.md has %d corefile blocks in the section, want a pair for each of forward's %d examples", len(ours), len(theirs))
	}
	for i, example := range theirs {
		if got := ours[2*i]; got != example {
			t.Errorf("pair %d: the forward side is not forward's example %d:\n%s\nwant:\n%s", i+1, i+1, got, example)
		}
		equivalent := ours[2*i+1]
		if !strings.Contains(equivalent, "upstreamtier") {
			t.Errorf("pair %d: no upstreamtier in\n%s", i+1, equivalent)
		}
		if err := validate(equivalent); err != nil {
			t.Errorf("pair %d: refused: %v\n%s", i+1, err, equivalent)
		}
	}
}

// Every Corefile with upstreamtier in README.md and docs/*.md, fenced as
// `~~~ corefile` (or "```corefile"), is accepted by this build, and the
// README has some. A Corefile without it is the other side of a migration,
// what a user runs today: not ours to check, and forward's setup would
// look its host names up on the network.
func TestDocCorefilesParse(t *testing.T) {
	for _, f := range docFiles(t) {
		var blocks []string
		for _, b := range fencedBlocks(f.text, corefileFences...) {
			if strings.Contains(b, "upstreamtier") {
				blocks = append(blocks, b)
			}
		}
		if f.name == "README.md" && len(blocks) == 0 {
			t.Errorf("README.md has no corefile block with upstreamtier")
		}
		for i, corefile := range blocks {
			if err := validate(corefile); err != nil {
				t.Errorf("%s, upstreamtier corefile block %d: refused: %v\n%s", f.name, i+1, err, corefile)
			}
		}
		t.Logf("%s: %d corefile blocks with upstreamtier", f.name, len(blocks))
	}
}
