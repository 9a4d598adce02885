package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
)

// rootModule is the module path of the repository root: the plugin, ./cmd/coredns and the Go
// benchmarks the bench runs. The bench is a module of its own in bench/, so that its
// dependencies (the plotting library) stay out of the plugin's go.mod.
const rootModule = "github.com/upstreamtier/upstreamtier"

// repoRoot returns the repository root: the working directory or the nearest of its parents
// whose go.mod declares rootModule, so the bench runs from bench/ or from the root alike.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if declares(filepath.Join(dir, "go.mod"), rootModule) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the upstreamtier repository (no go.mod of " + rootModule + " here or above)")
		}
		dir = parent
	}
}

// declares reports whether the go.mod at path declares module mod.
func declares(path, mod string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for line := range bytes.Lines(b) {
		if string(bytes.TrimSpace(line)) == "module "+mod {
			return true
		}
	}
	return false
}
