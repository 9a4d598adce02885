package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// cpuSnapshot is the machine's busy CPU time and the benchmark's own, at one moment.
type cpuSnapshot struct {
	at          time.Time
	busy, bench time.Duration
}

// takeCPU reads the machine's busy time from /proc/stat and this process's from /proc/self/stat.
func takeCPU() cpuSnapshot {
	s := cpuSnapshot{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i := 1; i < len(f) && i <= 8; i++ {
			if i == 4 || i == 5 {
				continue // idle and iowait
			}
			var t int64
			fmt.Sscan(f[i], &t)
			s.busy += time.Duration(t) * (time.Second / 100)
		}
	}
	s.bench, _ = procCPU("self")
	return s
}

// otherLoad returns how many cores processes other than the benchmark and fw kept busy between a and b.
// A shared machine's other work skews latencies and rates; this makes it visible.
func otherLoad(a, b cpuSnapshot, fwCPU time.Duration) float64 {
	other := (b.busy - a.busy) - (b.bench - a.bench) - fwCPU
	return max(0, other.Seconds()/b.at.Sub(a.at).Seconds())
}
