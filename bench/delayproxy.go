package main

import (
	"hash/fnv"
	"math"
	"strings"
	"time"
)

// The authoritative servers' delay for a name: log-uniform between authDelayMin and
// authDelayMax (median √(20·250) ≈ 71 ms, mean ≈ 91 ms), as resolvers' cache misses
// spread over tens to hundreds of milliseconds.
const (
	authDelayMin = 20 * time.Millisecond
	authDelayMax = 250 * time.Millisecond
)

// authDelay returns how long the authoritative servers take for name. It depends on the
// name alone (a hash of it, case folded), so every resolver that misses on a name meets
// the same slow servers, as in reality, and a copy sent to another tier does not win.
func authDelay(name string) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(strings.ToLower(name)))
	return logUniform(float64(h.Sum64())/math.Exp2(64), authDelayMin, authDelayMax)
}

// logUniform maps u in [0, 1) to lo·(hi/lo)^u: each factor of two between lo and hi equally likely.
func logUniform(u float64, lo, hi time.Duration) time.Duration {
	return time.Duration(float64(lo) * math.Pow(float64(hi)/float64(lo), u))
}

// startDelayProxy starts the relay between every resolver and the authoritative server
// auth, holding each query for authDelay of its name; its counts are the authoritative load.
func startDelayProxy(auth string) (*relay, error) {
	return startRelayOnFreePort(auth, authDelay)
}

// startRelayOnFreePort starts a relay to upstream on a free loopback port, retrying if the port is taken meanwhile.
func startRelayOnFreePort(upstream string, delay func(string) time.Duration) (*relay, error) {
	var err error
	for range 5 {
		var port int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		var r *relay
		if r, err = startRelay(loopback(port), upstream, delay); err == nil {
			return r, nil
		}
	}
	return nil, err
}
