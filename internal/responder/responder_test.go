package responder

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

var answerIP = netip.MustParseAddr("192.0.2.7")

// answer packs q, runs Answer on it and unpacks the result.
func answer(t *testing.T, q *dns.Msg) *dns.Msg {
	t.Helper()
	wire, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(wire)+answerLen+optLen)
	copy(buf, wire)
	out := Answer(buf, len(wire), answerIP.As4())
	if out == nil {
		t.Fatal("no answer")
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("answer does not unpack: %v", err)
	}
	return r
}

func TestAnswerA(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("www.Example.org.", dns.TypeA)
	q.SetEdns0(1232, false)
	r := answer(t, q)
	if !r.Response || r.Id != q.Id || r.Rcode != dns.RcodeSuccess || !r.RecursionDesired || !r.RecursionAvailable {
		t.Fatalf("header: %s", r)
	}
	if len(r.Question) != 1 || r.Question[0] != q.Question[0] {
		t.Fatalf("question %v, want %v", r.Question, q.Question)
	}
	if len(r.Answer) != 1 {
		t.Fatalf("answer: %v", r.Answer)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || a.Hdr.Name != "www.Example.org." || a.A.String() != answerIP.String() || a.Hdr.Ttl != ttl {
		t.Fatalf("answer record %s", r.Answer[0])
	}
	if opt := r.IsEdns0(); opt == nil || opt.UDPSize() != ednsSize {
		t.Fatalf("no EDNS0 in the answer to an EDNS0 query: %s", r)
	}
}

func TestAnswerNoData(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion(".", dns.TypeNS)
	r := answer(t, q)
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || r.IsEdns0() != nil {
		t.Fatalf("want an empty NOERROR answer without EDNS0: %s", r)
	}
}

func TestAnswerBadQueries(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("example.org.", dns.TypeA)
	q.Response = true
	wire, _ := q.Pack()
	buf := make([]byte, len(wire)+answerLen+optLen)
	copy(buf, wire)
	if out := Answer(buf, len(wire), answerIP.As4()); out != nil {
		t.Errorf("answered a response")
	}
	if out := Answer(buf, 5, answerIP.As4()); out != nil {
		t.Errorf("answered 5 bytes")
	}
	// A question cut short is a format error.
	q.Response = false
	wire, _ = q.Pack()
	copy(buf, wire)
	out := Answer(buf, len(wire)-3, answerIP.As4())
	r := new(dns.Msg)
	if out == nil || r.Unpack(out) != nil || r.Rcode != dns.RcodeFormatError || len(r.Question) != 0 {
		t.Errorf("cut-short question: %v", r)
	}
}

func TestAnswerAllocatesNothing(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("www.example.org.", dns.TypeA)
	q.SetEdns0(1232, false)
	wire, _ := q.Pack()
	buf := make([]byte, len(wire)+answerLen+optLen)
	if n := testing.AllocsPerRun(100, func() {
		copy(buf, wire)
		Answer(buf, len(wire), answerIP.As4())
	}); n != 0 {
		t.Errorf("Answer allocates %v times", n)
	}
}

func TestResponderServes(t *testing.T) {
	r, err := Start(3, answerIP)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := new(dns.Client)
	for _, addr := range r.Addrs() {
		q := new(dns.Msg)
		q.SetQuestion("x.bench.example.", dns.TypeA)
		a, _, err := c.Exchange(q, addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if len(a.Answer) != 1 || a.Answer[0].(*dns.A).A.String() != answerIP.String() {
			t.Fatalf("%s answered %s", addr, a)
		}
	}
	if r.Queries() != 3 {
		t.Errorf("%d queries counted, want 3", r.Queries())
	}
}
