package main

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	tap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"
)

// startCoreDNS starts this build of CoreDNS in-process on a Corefile, the
// way the binary does, and stops it when the test ends.
func startCoreDNS(t *testing.T, corefile string) *caddy.Instance {
	t.Helper()
	inst, err := caddy.Start(caddy.CaddyfileInput{Contents: []byte(corefile), ServerTypeName: "dns"})
	if err != nil {
		t.Fatalf("starting CoreDNS: %v\n%s", err, corefile)
	}
	t.Cleanup(func() { inst.Stop() })
	return inst
}

// freeAddr returns a free UDP and TCP port on 127.0.0.1.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		l, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port")
	return ""
}

func query(t *testing.T, addr, name string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.SetEdns0(1232, false)
	c := dns.Client{Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

// The real server with dnstap: each forwarded query and its answer go to
// the dnstap socket as FORWARDER_QUERY and FORWARDER_RESPONSE, naming the
// upstream that answered.
func TestDnstapEndToEnd(t *testing.T) {
	up, err := faultdns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()

	sock := filepath.Join(t.TempDir(), "dnstap.sock")
	input, err := tap.NewFrameStreamSockInputFromPath(sock)
	if err != nil {
		t.Fatal(err)
	}
	frames := make(chan []byte, 16)
	go input.ReadInto(frames)

	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	startCoreDNS(t, fmt.Sprintf(`.:%s {
    bind %s
    dnstap unix://%s full
    upstreamtier {
        tier site %s
    }
}`, port, host, sock, up.Addr()))

	r := query(t, addr, "tapped.example.org")
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Fatalf("no answer:\n%s", r)
	}

	seen := map[tap.Message_Type]bool{}
	timeout := time.After(time.Minute) // a safety net, not a timing assertion
	for !seen[tap.Message_FORWARDER_QUERY] || !seen[tap.Message_FORWARDER_RESPONSE] {
		select {
		case frame := <-frames:
			var d tap.Dnstap
			if err := proto.Unmarshal(frame, &d); err != nil {
				t.Fatal(err)
			}
			m := d.GetMessage()
			switch m.GetType() {
			case tap.Message_FORWARDER_QUERY, tap.Message_FORWARDER_RESPONSE:
				to := net.JoinHostPort(net.IP(m.GetResponseAddress()).String(), fmt.Sprint(m.GetResponsePort()))
				if to != up.Addr() {
					t.Errorf("%s to %s, want the upstream %s", m.GetType(), to, up.Addr())
				}
				raw := m.GetQueryMessage()
				if m.GetType() == tap.Message_FORWARDER_RESPONSE {
					raw = m.GetResponseMessage()
				}
				var msg dns.Msg
				if err := msg.Unpack(raw); err != nil || !strings.EqualFold(msg.Question[0].Name, "tapped.example.org.") {
					t.Errorf("%s carries %v (%v)", m.GetType(), msg.Question, err)
				}
				seen[m.GetType()] = true
			}
		case <-timeout:
			t.Fatalf("dnstap got %v, want a forwarder query and response", seen)
		}
	}
}

// A reload, as the reload plugin does it, swaps the configuration and the
// new one answers.
func TestReloadEndToEnd(t *testing.T) {
	up, err := faultdns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	other, err := faultdns.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	addr := freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	corefile := `.:%s {
    bind %s
    upstreamtier {
        tier site %s
    }
}`
	inst := startCoreDNS(t, fmt.Sprintf(corefile, port, host, up.Addr()))
	if a := query(t, addr, "before.example.org").Answer[0].(*dns.A).A; !a.Equal(up.AnswerIP()) {
		t.Fatalf("answer %s, want %s", a, up.AnswerIP())
	}

	next, err := inst.Restart(caddy.CaddyfileInput{Contents: []byte(fmt.Sprintf(corefile, port, host, other.Addr())), ServerTypeName: "dns"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Stop() })
	if a := query(t, addr, "after.example.org").Answer[0].(*dns.A).A; !a.Equal(other.AnswerIP()) {
		t.Fatalf("answer %s after the reload, want %s from the new upstream", a, other.AnswerIP())
	}
}
