package upstream

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// unpackAnswer gives what dns.Msg.Unpack gives, for the answers it
// unpacks itself and for those it leaves to Unpack, but for the case of
// the question's name and of the records that point at it, which is the
// client's.
func TestUnpackAnswerAsUnpack(t *testing.T) {
	q := newClientQuery("WWW.Example.org", dns.TypeA)
	wire, _ := q.Pack()
	pkt := NewPacket(wire, 1232, q.Question[0])
	if pkt.qend == 0 {
		t.Fatal("question not found in the packed query")
	}
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	answers := map[string]func(m *dns.Msg){
		"one A": func(m *dns.Msg) { m.Answer = []dns.RR{rr("www.example.org. 60 IN A 192.0.2.1")} },
		"CNAME chain": func(m *dns.Msg) {
			m.Answer = []dns.RR{rr("www.example.org. 60 IN CNAME a.example.net."), rr("a.example.net. 60 IN A 192.0.2.2")}
		},
		"NXDOMAIN, SOA": func(m *dns.Msg) {
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{rr("example.org. 60 IN SOA ns. host. 1 2 3 4 5")}
		},
		"no records": func(*dns.Msg) {},
		"AAAA": func(m *dns.Msg) {
			m.Compress = true
			m.Answer = []dns.RR{rr("www.example.org. 60 IN AAAA 2001:db8::1")}
		},
		"many records": func(m *dns.Msg) {
			m.Compress = true
			for i := range 6 {
				m.Answer = append(m.Answer, rr(fmt.Sprintf("www.example.org. 60 IN A 192.0.2.%d", i)))
			}
			m.Ns = []dns.RR{rr("example.org. 60 IN NS ns.example.org.")}
		},
		"OPT with EDE": func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: "stale"})
		},
		"EDNS, BADVERS":  func(m *dns.Msg) { m.SetEdns0(1232, true); m.Rcode = dns.RcodeBadVers },
		"other case":     func(m *dns.Msg) { m.Question[0].Name = "www.EXAMPLE.org." },
		"other name":     func(m *dns.Msg) { m.Question[0].Name = "mail.example.org." },
		"other type":     func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA },
		"not a response": func(m *dns.Msg) { m.Response = false },
		"compressed": func(m *dns.Msg) {
			m.Compress = true
			m.Answer = []dns.RR{rr("www.example.org. 60 IN A 192.0.2.1"), rr("x.www.example.org. 60 IN A 192.0.2.3")}
		},
	}
	for name, build := range answers {
		t.Run(name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetReply(q)
			m.Question[0].Name = "www.example.org."
			m.Extra = nil
			build(m)
			p, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			got, gerr := unpackAnswer(p, &pkt)
			want := new(dns.Msg)
			werr := want.Unpack(p)
			if (gerr == nil) != (werr == nil) {
				t.Fatalf("error %v, Unpack's %v", gerr, werr)
			}
			// Names may differ in case only: the client's spelling for
			// the question and what points at it.
			if !strings.EqualFold(got.String(), want.String()) {
				t.Errorf("got\n%s\nUnpack gives\n%s", got, want)
			}
			if want.Response && strings.EqualFold(want.Question[0].Name, pkt.ask.Name) && want.Question[0].Qtype == pkt.ask.Qtype && got.Question[0].Name != pkt.ask.Name {
				t.Errorf("question %s, want the client's %s", got.Question[0].Name, pkt.ask.Name)
			}
		})
	}
}

// A section of the answer grows into a new array, never into the next
// section's records.
func TestUnpackAnswerSectionsApart(t *testing.T) {
	q := newClientQuery("www.example.org", dns.TypeA)
	wire, _ := q.Pack()
	pkt := NewPacket(wire, 1232, q.Question[0])
	m := new(dns.Msg)
	m.SetReply(q)
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "www.example.org.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
	m.SetEdns0(1232, false)
	p, _ := m.Pack()
	got, err := unpackAnswer(p, &pkt)
	if err != nil {
		t.Fatal(err)
	}
	opt := got.Extra[0]
	got.Answer = append(got.Answer, opt)
	if got.Extra[0] != opt || len(got.Extra) != 1 {
		t.Fatal("appending to the answer section overwrote the additional section")
	}
}

// newClientQuery returns an A query with EDNS0, as dig sends.
func newClientQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	return m
}
