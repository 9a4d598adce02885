package upstreamtier

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"

	"github.com/miekg/dns"
)

// With tiers 1 and 2 down, a name excepted from tier 3 never reaches it:
// the client gets SERVFAIL saying policy prohibits the answer.
func TestPrivateZoneNeverLeaks(t *testing.T) {
	up := startUpstreams(t, 3)
	ut := newPlugin(t, `upstreamtier {
	tier site %s
	tier isp %s
	tier public %s {
		except corp.example
	}
	fall 1
	health_check 1m
}`, up...)
	changes := watch(t, ut)
	up[0].SetMode(faultdns.Refused)
	up[1].SetMode(faultdns.Closed)
	serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	expectChanges(t, changes, false, up[0], up[1])

	for _, name := range []string{"corp.example", "db.corp.example", "A.Deep.CORP.example"} {
		for _, tcp := range []bool{false, true} {
			m, _ := serve(t, ut, newClientQuery(name, dns.TypeA), tcp)
			if e := ede(m); m.Rcode != dns.RcodeServerFailure || e == nil || e.InfoCode != dns.ExtendedErrorCodeProhibited {
				t.Fatalf("%s: want SERVFAIL with EDE Prohibited, got\n%s", name, m)
			}
		}
	}
	for _, name := range []string{"corp.example.", "db.corp.example.", "a.deep.corp.example."} {
		if n := up[2].QueriesFor(name); n != 0 {
			t.Errorf("the public tier saw %d queries for %s", n, name)
		}
	}
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[2])
}

// max_concurrent refuses the query beyond the limit at once.
func TestMaxConcurrent(t *testing.T) {
	up := startUpstreams(t, 1)
	up[0].SetMode(faultdns.Slow)
	up[0].SetDelay(300 * time.Millisecond)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
		max_concurrent 2
		hedge off
	}`, up...)

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
		})
	}
	waitQueries(t, up[0], 2)
	_, err := serve(t, ut, newClientQuery("www.example.org", dns.TypeA), false)
	if !errors.Is(err, errOverload) {
		t.Errorf("third query in flight: want the overload error, got %v", err)
	}
	wg.Wait()
	q := newClientQuery("www.example.org", dns.TypeA)
	m, _ := serve(t, ut, q, false)
	expectFrom(t, q, m, up[0])
}

// Malformed queries get the right rcode, never a panic, and never reach
// an upstream.
func TestMalformedQueries(t *testing.T) {
	up := startUpstreams(t, 1)
	ut := newPlugin(t, `upstreamtier {
		tier site %s
	}`, up...)

	noQuestion := new(dns.Msg)
	noQuestion.Id = 1
	twoQuestions := newClientQuery("a.example.org", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, dns.Question{Name: "b.example.org.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	notify := newClientQuery("example.org", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	update := newClientQuery("example.org", dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	ednsV1 := newClientQuery("www.example.org", dns.TypeA)
	ednsV1.IsEdns0().SetVersion(1)
	response := newClientQuery("www.example.org", dns.TypeA)
	response.Response = true
	bigEDNS := newClientQuery("www.example.org", dns.TypeA)
	bigEDNS.IsEdns0().SetUDPSize(65535)

	tests := []struct {
		name  string
		q     *dns.Msg
		rcode int  // returned to the server, which writes it when not success
		wrote bool // whether the plugin wrote the answer itself
	}{
		{"no question", noQuestion, dns.RcodeFormatError, false},
		{"QR set", response, dns.RcodeFormatError, false},
		{"two questions", twoQuestions, dns.RcodeFormatError, false},
		{"NOTIFY", notify, dns.RcodeNotImplemented, false},
		{"UPDATE", update, dns.RcodeNotImplemented, false},
		{"EDNS version 1", ednsV1, dns.RcodeSuccess, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rcode, m := serveRcode(t, ut, tc.q)
			if rcode != tc.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[rcode], dns.RcodeToString[tc.rcode])
			}
			if (m != nil) != tc.wrote {
				t.Errorf("wrote %v", m)
			}
			if m != nil && m.Rcode != dns.RcodeBadVers {
				t.Errorf("want BADVERS, got %s", dns.RcodeToString[m.Rcode])
			}
		})
	}
	if n := up[0].Queries(); n != 0 {
		t.Errorf("%d malformed queries reached the upstream", n)
	}

	// A huge EDNS0 buffer size is fine: the answer is forwarded.
	m, _ := serve(t, ut, bigEDNS, false)
	expectFrom(t, bigEDNS, m, up[0])
}
