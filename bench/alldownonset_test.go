package main

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// onsetRecs returns n records sent one every ms from 0; answer says each one's latency and rcode, or false for none.
func onsetRecs(n int, answer func(i int) (time.Duration, int, bool)) []record {
	recs := make([]record, n)
	for i := range recs {
		r := &recs[i]
		r.sent = int64(time.Duration(i) * time.Millisecond)
		if lat, rcode, ok := answer(i); ok {
			r.rcode = int8(rcode)
			r.recv.Store(r.sent + int64(lat) + 1) // recv 0 means unanswered
		}
	}
	return recs
}

// silentUntil answers NOERROR in 1 ms before ms from, nothing from then until ms fastAt,
// a fast SERVFAIL from then until ms to, and NOERROR again after.
func silentUntil(from, fastAt, to int) func(int) (time.Duration, int, bool) {
	return func(i int) (time.Duration, int, bool) {
		switch {
		case i < from || i >= to:
			return time.Millisecond, dns.RcodeSuccess, true
		case i < fastAt:
			return 0, 0, false
		default:
			return 200 * time.Microsecond, dns.RcodeServerFailure, true
		}
	}
}

func TestFirstFastServfail(t *testing.T) {
	ms := time.Millisecond
	fast := 5 * ms
	slowThenFast := func(i int) (time.Duration, int, bool) {
		switch {
		case i < 300:
			return 0, 0, false
		case i < 400:
			return 1500 * ms, dns.RcodeServerFailure, true // a SERVFAIL after an attempt timed out is no fast one
		default:
			return ms, dns.RcodeServerFailure, true
		}
	}
	for _, tc := range []struct {
		about    string
		recs     []record
		from, to time.Duration
		want     int
	}{
		{about: "silence then fast", recs: onsetRecs(1000, silentUntil(100, 250, 900)), from: 100 * ms, to: 900 * ms, want: 250},
		{about: "fast at once", recs: onsetRecs(1000, silentUntil(100, 100, 900)), from: 100 * ms, to: 900 * ms, want: 100},
		{about: "slow SERVFAILs are not fast", recs: onsetRecs(1000, slowThenFast), from: 0, to: time.Second, want: 400},
		{about: "none in the window", recs: onsetRecs(1000, silentUntil(100, 950, 990)), from: 100 * ms, to: 900 * ms, want: -1},
		{about: "a fast SERVFAIL sent before the onset does not count", recs: onsetRecs(1000, silentUntil(0, 0, 1000)), from: 500 * ms, to: time.Second, want: 500},
	} {
		if got := firstFastServfail(tc.recs, tc.from, tc.to, fast); got != tc.want {
			t.Errorf("%s: first fast SERVFAIL at %d, want %d", tc.about, got, tc.want)
		}
	}
}

func TestSteadyFrom(t *testing.T) {
	ms := time.Millisecond
	fast := func(r *record) bool { return fastServfail(r, 5*ms) }
	// Fast from 300 ms, but one slow query at 600 ms: the 100-query windows around it hold 99 of 100.
	oneSlow := func(i int) (time.Duration, int, bool) {
		switch {
		case i < 300:
			return 0, 0, false
		case i == 600:
			return 50 * ms, dns.RcodeServerFailure, true
		default:
			return ms, dns.RcodeServerFailure, true
		}
	}
	// Fast from 300 ms, a second of silence at 600 ms (a probe round that holds every query), fast again.
	relapse := func(i int) (time.Duration, int, bool) {
		if i < 300 || (i >= 600 && i < 700) {
			return 0, 0, false
		}
		return ms, dns.RcodeServerFailure, true
	}
	// As in switchTime, a 100-query window may hold one bad query (99 %): the window from 299 ms holds one silent query.
	for _, tc := range []struct {
		about string
		recs  []record
		want  time.Duration
		ok    bool
	}{
		{about: "steady from the first", recs: onsetRecs(1000, silentUntil(0, 300, 1000)), want: 299 * ms, ok: true},
		{about: "one slow query in a window", recs: onsetRecs(1000, oneSlow), want: 299 * ms, ok: true},
		{about: "a relapse restarts the count", recs: onsetRecs(1000, relapse), want: 699 * ms, ok: true},
		{about: "never fast", recs: onsetRecs(1000, silentUntil(0, 1000, 1000)), ok: false},
	} {
		got, ok := steadyFrom(tc.recs, 0, time.Second, fast)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("%s: steady from %v (%v), want %v (%v)", tc.about, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOnsetSummary(t *testing.T) {
	ms := time.Millisecond
	recs := onsetRecs(3000, silentUntil(1000, 1150, 2000))
	for i := 1150; i < 2000; i++ {
		if i%2 == 0 {
			recs[i].hasEDE, recs[i].ede = true, edeNoReachable
		}
	}
	// After recovery, 5 SERVFAILs while the forwarder notices.
	for i := 2000; i < 2005; i++ {
		recs[i].rcode = dns.RcodeServerFailure
	}
	r := &onsetRun{forwarder: "upstreamtier", load: &loadResult{records: recs}, faultAt: 1000 * ms, recoverAt: 2000 * ms}
	st := onsetSummary(r, 5*ms, 2*time.Second)
	if st.window.sent != 1000 || st.window.lost != 150 || st.window.servfail != 850 {
		t.Errorf("window: %d sent, %d lost, %d SERVFAIL; want 1000, 150, 850", st.window.sent, st.window.lost, st.window.servfail)
	}
	if st.first != 1150 || st.firstAt != 150*ms {
		t.Errorf("first fast SERVFAIL: query %d at %v after the onset, want 1150 at 150ms", st.first, st.firstAt)
	}
	if !st.steady || st.steadyAt != 149*ms { // a window may hold one bad query
		t.Errorf("all fast from %v (%v), want 149ms", st.steadyAt, st.steady)
	}
	if st.ede22 != 425 || st.slowAfter != 0 {
		t.Errorf("%d with EDE 22, %d not fast after the first; want 425, 0", st.ede22, st.slowAfter)
	}
	if st.after.servfail != 5 || st.before.lost != 0 {
		t.Errorf("after: %d SERVFAIL, before: %d lost; want 5, 0", st.after.servfail, st.before.lost)
	}
	note := onsetTargetNote(onsetCases[0], r, st)
	for _, want := range []string{"first fast SERVFAIL 150 ms (≤ 200ms: met)", "with EDE 22 (met)", "15.0 % unanswered (≤ 1 %: **missed**)", "5 SERVFAIL after recovery (< 200: met)"} {
		if !strings.Contains(note, want) {
			t.Errorf("target note %q lacks %q", note, want)
		}
	}
}

func TestOnsetStanza(t *testing.T) {
	for _, tc := range []struct {
		fw    string
		tiers int
		want  []string
		not   string
	}{
		{fw: "upstreamtier", tiers: 2, want: []string{"tier t1 A", "tier t2 B"}},
		{fw: "upstreamtier", tiers: 1, want: []string{"tier t1 A"}, not: "t2"},
		{fw: "forward", tiers: 2, want: []string{"forward . A B {", "max_fails 1"}},
		{fw: "forward", tiers: 1, want: []string{"forward . A {", "health_check 0.5s"}, not: "B"},
	} {
		got := onsetStanza(tc.fw, tc.tiers, []string{"A", "B"})
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s, %d tiers: %q lacks %q", tc.fw, tc.tiers, got, w)
			}
		}
		if tc.not != "" && strings.Contains(got, tc.not) {
			t.Errorf("%s, %d tiers: %q has %q", tc.fw, tc.tiers, got, tc.not)
		}
	}
}

func TestSplitLines(t *testing.T) {
	lines, rest := splitLines(nil, []byte("one\ntw"))
	if len(lines) != 1 || lines[0] != "one" || string(rest) != "tw" {
		t.Fatalf("first chunk: %q, rest %q", lines, rest)
	}
	lines, rest = splitLines(rest, []byte("o\nthree\n"))
	if len(lines) != 2 || lines[0] != "two" || lines[1] != "three" || len(rest) != 0 {
		t.Fatalf("second chunk: %q, rest %q", lines, rest)
	}
}

func TestLogNote(t *testing.T) {
	ref := time.Unix(100, 0)
	lines := []stampedLine{
		{text: "[INFO] plugin/upstreamtier: upstream X of tier origin is down: REFUSED"},
		{at: ref.Add(-3 * time.Millisecond), text: "[INFO] plugin/upstreamtier: before"},
		{at: ref.Add(12 * time.Millisecond), text: "[INFO] plugin/upstreamtier: upstream Y of tier t1 is down: timeout"},
	}
	got := logNote(lines, ref)
	want := "at startup: `plugin/upstreamtier: upstream X of tier origin is down: REFUSED`; -3.0 ms: `plugin/upstreamtier: before`; +12 ms: `plugin/upstreamtier: upstream Y of tier t1 is down: timeout`"
	if got != want {
		t.Errorf("logNote:\n got %s\nwant %s", got, want)
	}
	if got := logNote(nil, ref); got != "no plugin log lines" {
		t.Errorf("no lines: %q", got)
	}
	many := make([]stampedLine, logNoteMax+3)
	for i := range many {
		many[i] = stampedLine{at: ref, text: "x"}
	}
	if got := logNote(many, ref); !strings.HasSuffix(got, "… 3 more") {
		t.Errorf("too many lines: %q", got)
	}
	if !pluginLine("[INFO] plugin/forward: ...") || pluginLine("maxprocs: Leaving GOMAXPROCS=2") {
		t.Error("pluginLine keeps the plugins' lines only")
	}
}

func TestBadBefore(t *testing.T) {
	ms := time.Millisecond
	recs := onsetRecs(1000, silentUntil(500, 500, 1000))
	if got := badBefore(recs, 500*ms, 2*time.Second); got != "" {
		t.Errorf("all right before the onset: %q", got)
	}
	recs[100].recv.Store(0)
	recs[498].rcode = dns.RcodeServerFailure
	if got := badBefore(recs, 500*ms, 2*time.Second); got != ", sent 400–2.0 ms before the onset" {
		t.Errorf("badBefore = %q", got)
	}
}
