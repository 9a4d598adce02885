package main

import (
	"bytes"
	"flag"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
)

// Settings of this file's scenarios, from the command line.
var (
	goBenchCount = flag.Int("gobench-count", 5, "throughput and configsize: -count of the Go benchmarks they run for allocations per query; 0 skips them")
)

// goBenchResult is the median of one Go sub-benchmark's runs.
type goBenchResult struct {
	ns, bytes, allocs float64 // per op
}

// goBenchLine matches a result line of go test -bench -benchmem, e.g.
// "BenchmarkServeDNS/forward-2   44173   26758 ns/op   2032 B/op   22 allocs/op".
var goBenchLine = regexp.MustCompile(`(?m)^Benchmark(\S+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op\s+([0-9.]+) B/op\s+([0-9.]+) allocs/op`)

// goBenchCommand is the command goBench runs, for the tables to cite; %s is the -bench pattern, %d the count.
const goBenchCommand = "go test -run '^$' -bench '%s' -benchmem -count %d ."

// goBench runs the plugin's Go benchmarks matching pattern -gobench-count times and returns
// each sub-benchmark's medians by name without the Benchmark prefix, e.g. "ServeDNS/forward".
// It needs the source: the bench run inside the repository (repoRoot) with go on PATH; without
// them (or with -gobench-count 0) it returns nil and says why.
func (b *bench) goBench(pattern string) (map[string]goBenchResult, string) {
	if (*goBenchCount) <= 0 {
		return nil, "not run (-gobench-count 0)"
	}
	root, err := repoRoot()
	if err != nil {
		return nil, "not run: " + err.Error()
	}
	fmt.Printf("  go benchmarks: %s\n", fmt.Sprintf(goBenchCommand, pattern, (*goBenchCount)))
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", pattern, "-benchmem", "-count", strconv.Itoa((*goBenchCount)), ".")
	cmd.Dir = root // the plugin's package, where bench_test.go is
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Sprintf("failed: %v: %s", err, bytes.TrimSpace(out))
	}
	return parseGoBench(string(out)), ""
}

// parseGoBench returns the medians of every sub-benchmark in the output of go test -bench -benchmem.
func parseGoBench(out string) map[string]goBenchResult {
	runs := map[string][][3]float64{}
	for _, m := range goBenchLine.FindAllStringSubmatch(out, -1) {
		var v [3]float64
		for i := range v {
			v[i], _ = strconv.ParseFloat(m[i+2], 64)
		}
		runs[m[1]] = append(runs[m[1]], v)
	}
	res := map[string]goBenchResult{}
	for name, vs := range runs {
		col := func(i int) float64 { return median(perRun(vs, i)) }
		res[name] = goBenchResult{ns: col(0), bytes: col(1), allocs: col(2)}
	}
	return res
}

// perRun returns column i of every run.
func perRun(vs [][3]float64, i int) []float64 {
	out := make([]float64, len(vs))
	for k, v := range vs {
		out[k] = v[i]
	}
	return out
}
