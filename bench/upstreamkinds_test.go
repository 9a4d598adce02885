package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/upstreamtier/upstreamtier/internal/faultdns"
)

// kindReply builds an answer to check c with rcode and, when data is not "", one A or TXT record holding it.
func kindReply(c kindCheck, rcode int, data ...string) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(c.name, c.qtype)
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	for _, d := range data {
		hdr := dns.RR_Header{Name: c.name, Rrtype: c.qtype, Class: dns.ClassINET, Ttl: 60}
		if c.qtype == dns.TypeTXT {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{d}})
		} else {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.ParseIP(d)})
		}
	}
	return m
}

func TestKindJudge(t *testing.T) {
	a, nx, txt := kindChecksZone[0], kindChecksZone[3], kindChecksZone[2]
	const otherIP, otherAddr = "192.0.2.9", "127.0.0.1:5300"
	noQuestion := kindReply(a, dns.RcodeRefused)
	noQuestion.Question = nil // Unbound's refusal by access control carries no question
	extra := kindReply(a, dns.RcodeSuccess, kindA)
	extra.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "ns." + loadZone, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.ParseIP("127.0.0.1")}}
	for _, c := range []struct {
		about     string
		check     kindCheck
		m         *dns.Msg
		wantOther bool
		out       kindOutcome
		src       kindSource
	}{
		{"the kind's data", a, kindReply(a, dns.RcodeSuccess, kindA), false, outOK, srcKind},
		{"glue in the additional section does not matter", a, extra, false, outOK, srcKind},
		{"another address", a, kindReply(a, dns.RcodeSuccess, kindB), false, outWrong, srcNone},
		{"two addresses", a, kindReply(a, dns.RcodeSuccess, kindA, kindB), false, outWrong, srcNone},
		{"no data", a, kindReply(a, dns.RcodeSuccess), false, outWrong, srcNone},
		{"NXDOMAIN where there is data", a, kindReply(a, dns.RcodeNameError), false, outWrong, srcNone},
		{"NXDOMAIN for the name without data", nx, kindReply(nx, dns.RcodeNameError), false, outOK, srcKind},
		{"NOERROR for the name without data", nx, kindReply(nx, dns.RcodeSuccess), false, outWrong, srcNone},
		{"TXT", txt, kindReply(txt, dns.RcodeSuccess, kindTXT), false, outOK, srcKind},
		{"SERVFAIL", a, kindReply(a, dns.RcodeServerFailure), false, outServfail, srcNone},
		{"REFUSED passed on", a, kindReply(a, dns.RcodeRefused), false, outRefused, srcNone},
		{"REFUSED without a question", a, noQuestion, false, outRefused, srcNone},
		{"FORMERR", a, kindReply(a, dns.RcodeFormatError), false, outWrong, srcNone},
		{"lost", a, nil, false, outLost, srcNone},
		{"tier 2 answered where the kind should have", a, kindReply(a, dns.RcodeSuccess, otherIP), false, outWrong, srcOther},
		{"tier 2's TXT", txt, kindReply(txt, dns.RcodeSuccess, otherAddr), false, outWrong, srcOther},
		{"tier 2 answered, as it should behind a failing kind", a, kindReply(a, dns.RcodeSuccess, otherIP), true, outOK, srcOther},
		{"the kind answered where tier 2 should have", a, kindReply(a, dns.RcodeSuccess, kindA), true, outWrong, srcKind},
		{"another question", a, kindReply(kindChecksZone[1], dns.RcodeSuccess, kindA), false, outWrong, srcNone},
	} {
		out, src := kindJudge(c.check, c.m, otherIP, otherAddr, c.wantOther)
		if out != c.out || src != c.src {
			t.Errorf("%s: got outcome %d source %d, want %d %d", c.about, out, src, c.out, c.src)
		}
	}
}

func TestKindVerdict(t *testing.T) {
	all := func(mod func(*kindStats)) kindStats {
		s := kindStats{sent: 200, p50: time.Millisecond}
		s.outcomes[outOK] = 200
		if mod != nil {
			mod(&s)
		}
		return s
	}
	for _, c := range []struct {
		about string
		fails bool
		pos   kindPosition
		s     kindStats
		pass  bool
		why   string
	}{
		{"every answer right", false, posOnly, all(nil), true, "pass"},
		{"SERVFAIL", false, posBehindClosed, all(func(s *kindStats) { s.outcomes[outOK], s.outcomes[outServfail] = 150, 50 }), false, "50 SERVFAIL"},
		{"lost behind a blackhole", false, posBehindBlackhole, all(func(s *kindStats) { s.outcomes[outOK], s.outcomes[outLost] = 190, 10 }), false, "10 lost"},
		{"tier 2 got a client query", false, posFirst, all(func(s *kindStats) { s.otherGot = 1 }), false, "t2 got 1"},
		{"the dead tier 1 got queries: no matter", false, posBehindBlackhole, all(func(s *kindStats) { s.otherGot = 200 }), true, "pass"},
		{"a refuser alone, fast", true, posOnly, all(func(s *kindStats) { s.outcomes[outOK], s.outcomes[outServfail] = 0, 200 }), true, "pass"},
		{"a refuser alone, slow", true, posOnly, all(func(s *kindStats) { s.outcomes[outOK], s.outcomes[outRefused], s.p50 = 0, 200, 12*time.Millisecond }), false, "median 12 ms"},
		{"a refuser alone, lost", true, posOnly, all(func(s *kindStats) { s.outcomes[outOK], s.outcomes[outServfail], s.outcomes[outLost] = 0, 199, 1 }), false, "1 lost"},
		{"a refuser first, out after fall", true, posFirst, all(func(s *kindStats) { s.kindGot = 2 }), true, "pass"},
		{"a refuser first, still asked", true, posFirst, all(func(s *kindStats) { s.kindGot, s.kindLate = 200, 190 }), false, "t1 got 190 after the first 10"},
		{"a refuser first, its REFUSED seen", true, posFirst, all(func(s *kindStats) { s.outcomes[outOK], s.outcomes[outRefused] = 198, 2 }), false, "2 REFUSED"},
	} {
		pass, why := kindVerdict(c.fails, c.pos, c.s)
		if pass != c.pass || !strings.Contains(why, c.why) {
			t.Errorf("%s: got %v %q, want %v containing %q", c.about, pass, why, c.pass, c.why)
		}
	}
}

func TestKindStatsSummarise(t *testing.T) {
	answers := []kindAnswer{
		{outcome: outOK, src: srcKind, rcode: dns.RcodeSuccess, latency: 1 * time.Millisecond},
		{outcome: outOK, src: srcKind, rcode: dns.RcodeNameError, latency: 3 * time.Millisecond},
		{outcome: outWrong, src: srcOther, rcode: dns.RcodeSuccess, latency: 2 * time.Millisecond},
		{outcome: outServfail, rcode: dns.RcodeServerFailure, latency: 5 * time.Millisecond},
		{outcome: outLost, rcode: -1},
	}
	var s kindStats
	s.summarise(answers, 2) // the kind behind a dead tier 1
	if s.sent != 5 || s.outcomes[outOK] != 2 || s.outcomes[outWrong] != 1 || s.outcomes[outServfail] != 1 || s.outcomes[outLost] != 1 {
		t.Errorf("outcomes %v of %d", s.outcomes, s.sent)
	}
	if s.byTier[2] != 2 || s.byTier[1] != 1 {
		t.Errorf("by tier %v, want the kind's 2 at tier 2 and the other's 1 at tier 1", s.byTier)
	}
	if s.p50 != 3*time.Millisecond {
		t.Errorf("p50 %v, want 3ms (the lost query has no latency)", s.p50)
	}
	if got := otherRcodeText(s.rcodes); got != "NOERROR 2, SERVFAIL 1, NXDOMAIN 1" && got != "NOERROR 2, NXDOMAIN 1, SERVFAIL 1" {
		t.Errorf("rcodes %q", got)
	}
}

func TestKindStanza(t *testing.T) {
	ut := kindStanza("upstreamtier", []string{"127.0.0.1:1", "127.0.0.1:2"})
	if want := "upstreamtier {\n        tier t1 127.0.0.1:1\n        tier t2 127.0.0.1:2\n    }"; ut != want {
		t.Errorf("upstreamtier stanza:\n%s\nwant:\n%s", ut, want)
	}
	if strings.Contains(ut, "health_check") {
		t.Error("upstreamtier must run with its defaults")
	}
	if one := kindStanza("upstreamtier", []string{"127.0.0.1:1"}); strings.Contains(one, "t2") {
		t.Errorf("one tier rendered two: %s", one)
	}
	fw := kindStanza("forward", []string{"127.0.0.1:1", "127.0.0.1:2"})
	for _, want := range []string{"forward . 127.0.0.1:1 127.0.0.1:2 {", "policy sequential", "health_check 0.5s", "max_fails 1", "failover SERVFAIL REFUSED"} {
		if !strings.Contains(fw, want) {
			t.Errorf("forward stanza lacks %q:\n%s", want, fw)
		}
	}
	if one := kindStanza("forward", []string{"127.0.0.1:1"}); !strings.HasPrefix(one, "forward . 127.0.0.1:1 ") || strings.Contains(one, "%!") {
		t.Errorf("forward with one upstream: %s", one)
	}
}

func TestKindConfigs(t *testing.T) {
	// Every server stays on loopback and never uses the machine's resolver or root hints.
	if c := strings.ReplaceAll(nsdServerConf, "%[1]s", "/d"); strings.Contains(c, "zone:") || !strings.Contains(c, "ip-address: 127.0.0.1") {
		t.Errorf("NSD server section:\n%s", c)
	}
	kresd := strings.ReplaceAll(strings.ReplaceAll(kresdConf, "%[1]d", "5300"), "%[2]s", "127.0.0.1@5301")
	for _, want := range []string{"policy.STUB('127.0.0.1@5301')", "hints.root({['a.root-servers.net.'] = '127.0.0.1'})", "net.listen('127.0.0.1', 5300"} {
		if !strings.Contains(kresd, want) {
			t.Errorf("kresd config lacks %q", want)
		}
	}
	for _, want := range []string{"forward-zones=" + loadZone + "=%[3]s, .=%[3]s", "hint-file=%[1]s/root.hints", "security-poll-suffix=\n", "local-address=127.0.0.1"} {
		if !strings.Contains(pdnsRecursorConf, want) {
			t.Errorf("pdns-recursor config lacks %q", want)
		}
	}
	for _, want := range []string{"recursion no;", "listen-on port %[2]d { 127.0.0.1; };", "controls { };"} {
		if !strings.Contains(namedConf, want) {
			t.Errorf("named config lacks %q", want)
		}
	}
	stub := strings.Join(dnsmasqStubArgs(5300), " ")
	for _, want := range []string{"--no-resolv", "--conf-file=/dev/null", "--local=/bench.test/", "--host-record=a.bench.test," + kindA, "--listen-address=127.0.0.1"} {
		if !strings.Contains(stub, want) {
			t.Errorf("dnsmasq stub lacks %q: %s", want, stub)
		}
	}
	if strings.Contains(stub, "--server") {
		t.Errorf("the dnsmasq stub forwards: %s", stub)
	}
	if fwd := strings.Join(dnsmasqForwarderArgs(5300, "127.0.0.1:5301"), " "); !strings.Contains(fwd, "--server=127.0.0.1#5301") || !strings.Contains(fwd, "--no-resolv") {
		t.Errorf("dnsmasq forwarder: %s", fwd)
	}
	if !strings.Contains(kindZoneFile, "a   IN A   "+kindA) || strings.Contains(kindZoneFile, "*") {
		t.Errorf("the zone must hold a's data and no wildcard (nx must be NXDOMAIN):\n%s", kindZoneFile)
	}
}

func TestKindPositions(t *testing.T) {
	for _, k := range upstreamKinds() {
		ps := k.positions()
		if k.fails && len(ps) != 2 || !k.fails && len(ps) != 4 {
			t.Errorf("%s: positions %v", k.name, ps)
		}
		if len(k.checks) == 0 {
			t.Errorf("%s: no checks", k.name)
		}
		if strings.Contains(k.name, " ") {
			t.Errorf("%q: -kinds takes names without spaces", k.name)
		}
	}
	if kindTier(posBehindBlackhole) != 2 || kindTier(posFirst) != 1 || kindTier(posOnly) != 1 {
		t.Error("kindTier")
	}
}

func TestKindLoadOverUDPAndTCP(t *testing.T) {
	s, err := startUpstream() // faultdns, in process: A queries get its IP
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checks := []kindCheck{{"a." + loadZone, dns.TypeA, dns.RcodeSuccess, s.AnswerIP().String()}}
	judge := func(c kindCheck, m *dns.Msg) (kindOutcome, kindSource) { return kindJudge(c, m, "", "", false) }
	for _, network := range kindTransports {
		early := false
		answers := kindLoad(s.Addr(), network, checks, 20, 500, time.Second, judge, func() { early = true })
		var st kindStats
		st.summarise(answers, 1)
		if st.outcomes[outOK] != 20 || st.byTier[1] != 20 {
			t.Errorf("%s: outcomes %v, by tier %v; want 20 right from tier 1", network, st.outcomes, st.byTier)
		}
		if !early {
			t.Errorf("%s: the early hook was not called", network)
		}
	}
	if got := s.QueriesFor(checks[0].name); got != 40 {
		t.Errorf("the server got %d queries, want 40", got)
	}
}

func TestRootNSAnswer(t *testing.T) {
	s, err := startUpstream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := rootNSAnswer(s.Addr()); got != "NOERROR" {
		t.Errorf("healthy: %q", got)
	}
	if err := s.SetMode(faultdns.Refused); err != nil {
		t.Fatal(err)
	}
	if got := rootNSAnswer(s.Addr()); got != "REFUSED" {
		t.Errorf("refusing: %q", got)
	}
}

func TestKindOtherText(t *testing.T) {
	refuser, nsd := upstreamKind{name: "r", fails: true}, upstreamKind{name: "nsd"}
	s := kindStats{kindGot: 2, kindLate: 0, otherGot: 3}
	for _, c := range []struct {
		k    upstreamKind
		pos  kindPosition
		want string
	}{
		{refuser, posFirst, "t1 got 2 (0 from query 11 on)"},
		{nsd, posFirst, "t2 got 3"},
		{nsd, posBehindBlackhole, "dead t1 got 3"},
		{nsd, posBehindClosed, "–"},
		{nsd, posOnly, "–"},
	} {
		if got := kindOtherText(c.k, c.pos, s); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.k.name, c.pos, got, c.want)
		}
	}
}
