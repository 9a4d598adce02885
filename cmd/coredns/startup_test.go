package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/miekg/dns"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

// upstreamtier and forward in one server block: refused at startup, naming
// the upstreamtier line, when forward would never be asked; started when
// each has names of its own.
func TestStartupForwardOverlap(t *testing.T) {
	tests := []struct {
		desc   string
		plugin string // the server block's upstreamtier and forward lines
		want   string // "" when CoreDNS must start
	}{
		{"same zone", `upstreamtier . {
			tier a 127.0.0.1:1
		}
		forward . 127.0.0.1:2`, "plugin/upstreamtier: Corefile:2 - Error during parsing: upstreamtier and forward both claim . in this server block"},
		{"forward inside FROM", `upstreamtier {
			tier a 127.0.0.1:1
		}
		forward corp.example 127.0.0.1:2`, "both claim corp.example."},
		{"upstreamtier for one zone, forward for the rest", `upstreamtier corp.example {
			tier a 127.0.0.1:1
		}
		forward . 127.0.0.1:2`, ""},
		{"forward after next NXDOMAIN", `upstreamtier {
			tier a 127.0.0.1:1
			next NXDOMAIN
		}
		forward . 127.0.0.1:2`, ""},
		{"forward for an except of upstreamtier", `upstreamtier {
			tier a 127.0.0.1:1
			except corp.example
		}
		forward corp.example 127.0.0.1:2`, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			corefile := ".:" + port(freeAddr(t)) + " {\n " + tc.plugin + "\n}\n"
			inst, err := caddy.Start(caddy.CaddyfileInput{Contents: []byte(corefile), ServerTypeName: "dns", Filepath: "Corefile"})
			if err == nil {
				inst.Stop()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v\n%s", err, corefile)
			case tc.want != "" && err == nil:
				t.Fatalf("started, want %q\n%s", tc.want, corefile)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q, want %q", err, tc.want)
			}
		})
	}
}

// An upstream that is the server itself is refused at startup, naming its
// tier's line.
func TestStartupSelfLoop(t *testing.T) {
	addr := freeAddr(t)
	for _, listen := range []string{"", "\n bind 127.0.0.1"} {
		corefile := ".:" + port(addr) + " {" + listen + "\n upstreamtier {\n  tier a 127.0.0.1:1\n  tier b " + addr + "\n }\n}\n"
		inst, err := caddy.Start(caddy.CaddyfileInput{Contents: []byte(corefile), ServerTypeName: "dns", Filepath: "Corefile"})
		if err == nil {
			inst.Stop()
			t.Fatalf("started, want the loop refused:\n%s", corefile)
		}
		line := 4 + strings.Count(listen, "\n")
		if want := fmt.Sprintf("Corefile:%d - Error during parsing: tier \"b\": upstream %s is this server itself", line, addr); !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q, want %q", err, want)
		}
	}
}

func port(addr string) string { return addr[strings.LastIndex(addr, ":")+1:] }

// A reload ends the queries waiting on a silent upstream: CoreDNS waits for
// the old server's queries before the plugin's OnShutdown, so without the
// restart hook they would hold the reload for CoreDNS's 5 s grace period
// and wait out their attempt after it.
func TestReloadEndsWaitingQueries(t *testing.T) {
	bh, err := faultdns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bh.Close()
	bh.SetMode(faultdns.Blackhole)
	addr := freeAddr(t)
	corefile := ".:" + port(addr) + " {\n bind 127.0.0.1\n upstreamtier {\n  tier site " + bh.Addr() + "\n  timeout 30s\n  attempt_timeout 30s\n }\n}\n"
	inst, err := caddy.Start(caddy.CaddyfileInput{Contents: []byte(corefile), ServerTypeName: "dns"})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	done := make(chan struct{}, n)
	for i := range n {
		go func() {
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("q%d.example.org.", i), dns.TypeA)
			c := dns.Client{Timeout: time.Minute}
			c.Exchange(m, addr)
			done <- struct{}{}
		}()
	}
	// Every query has reached the upstream (the probes count too, so wait
	// for each name): they all wait on it now.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang detector
	defer cancel()
	for i := range n {
		for {
			before := bh.Queries() // read first: a query after it ends the wait
			if bh.QueriesFor(fmt.Sprintf("q%d.example.org.", i)) > 0 {
				break
			}
			if err := bh.WaitQueries(ctx, before+1); err != nil {
				t.Fatal(err)
			}
		}
	}
	next, err := inst.Restart(caddy.CaddyfileInput{Contents: []byte(corefile), ServerTypeName: "dns"})
	if err != nil {
		t.Fatal(err)
	}
	defer next.Stop()
	// The queries must end with the reload, not with their 30 s attempt:
	// a guard well below it detects the wait.
	guard := time.After(20 * time.Second)
	for i := range n {
		select {
		case <-done:
		case <-guard:
			t.Fatalf("%d of %d queries still wait on the silent upstream after the reload", n-i, n)
		}
	}
}
