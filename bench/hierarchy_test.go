package main

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestHierIndex(t *testing.T) {
	for i := range 25 {
		got, ok := hierIndex(strings.ToUpper(hierName(i)))
		if !ok || got != i {
			t.Errorf("hierIndex(%q) = %d, %v; want %d", hierName(i), got, ok, i)
		}
	}
	for _, name := range []string{".", "bench.test.", "ns.bench.test.", "q1.bench.test.", "q.a.bench.test.", "q-1.a.bench.test.",
		"q01.a.bench.test.", "x1.a.bench.test.", "q1.b.bench.test.", "q1.a.bench.test.extra.", "probe1.ready.example."} {
		if i, ok := hierIndex(name); ok {
			t.Errorf("hierIndex(%q) = %d, want no load name", name, i)
		}
	}
	if !hierIsNX(9) || hierIsNX(0) || !strings.HasSuffix(hierName(9), "."+hierNegative) || !strings.HasSuffix(hierName(3), "."+hierPositive) {
		t.Errorf("every 10th name should not exist: %s, %s", hierName(3), hierName(9))
	}
}

func TestHierPhaseOf(t *testing.T) {
	s := time.Second
	edges := []time.Duration{10 * s, 20 * s, 30 * s}
	for _, tc := range []struct {
		t    time.Duration
		want int
	}{{0, 0}, {10*s - 1, 0}, {10 * s, 1}, {19 * s, 1}, {20 * s, 2}, {30*s - 1, 2}, {30 * s, 3}, {45 * s, 3}} {
		if got := hierPhaseOf(tc.t, edges); got != tc.want {
			t.Errorf("hierPhaseOf(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}

func TestHierClassify(t *testing.T) {
	ans := func(rcode int, wrong bool, lat time.Duration) *record {
		r := &record{sent: int64(time.Second), rcode: int8(rcode), wrong: wrong}
		r.recv.Store(r.sent + int64(lat))
		return r
	}
	ms := time.Millisecond
	for _, tc := range []struct {
		about string
		r     *record
		nx    bool
		want  hierClass
	}{
		{"no answer", &record{sent: 1}, false, hierUnanswered},
		{"answered too late", ans(dns.RcodeSuccess, false, 3*time.Second), false, hierUnanswered},
		{"right A", ans(dns.RcodeSuccess, false, ms), false, hierRightA},
		{"right NXDOMAIN", ans(dns.RcodeNameError, false, ms), true, hierRightNX},
		{"NOERROR with a wrong record", ans(dns.RcodeSuccess, true, ms), false, hierWrong},
		{"NOERROR for a name that does not exist", ans(dns.RcodeSuccess, false, ms), true, hierWrong},
		{"NXDOMAIN for a name that exists", ans(dns.RcodeNameError, false, ms), false, hierWrong},
		{"SERVFAIL", ans(dns.RcodeServerFailure, false, ms), false, hierOther},
		{"REFUSED", ans(dns.RcodeRefused, false, ms), true, hierOther},
	} {
		if got := hierClassify(tc.r, tc.nx, 2*time.Second); got != tc.want {
			t.Errorf("%s: class %d, want %d", tc.about, got, tc.want)
		}
	}
}

// hierTestRun is a run of 40 queries sent 1 s apart with phase edges at 10, 20 and 30 s:
// all answered right but queries 22 and 23 (one unanswered, one SERVFAIL); isp-a received
// 0-9 and 31-39, isp-b 10-19 and 20 (after SIGCONT), the origin 21-29 but the unanswered 22, and 30 (350 ms after the edge).
func hierTestRun() *hierRun {
	s := time.Second
	start := time.Unix(1000, 0)
	recs := make([]record, 40)
	r := &hierRun{forwarder: "upstreamtier", load: &loadResult{start: start, records: recs}, events: [3]time.Duration{10 * s, 20 * s, 30 * s}}
	for i := range r.servers {
		r.servers[i] = newHierArrivals(len(recs))
	}
	at := func(server, i int, d time.Duration) { r.servers[server].at[i].Store(start.Add(d).UnixNano()) }
	for i := range recs {
		rec := &recs[i]
		rec.sent = int64(time.Duration(i) * s)
		switch {
		case i == 22:
			continue
		case i == 23:
			rec.rcode = dns.RcodeServerFailure
		case hierIsNX(i):
			rec.rcode = dns.RcodeNameError
		}
		rec.recv.Store(rec.sent + int64(time.Duration(i+1)*time.Millisecond))
		sent := time.Duration(rec.sent)
		switch {
		case i < 10 || i > 30:
			at(0, i, sent)
		case i < 20:
			at(1, i, sent)
		case i == 20:
			at(1, i, 30*s+5*time.Millisecond)
		case i == 30:
			at(2, i, 30*s+350*time.Millisecond)
		default:
			at(2, i, sent)
		}
	}
	r.servers[2].observe(". ") // a probe name: counted apart
	return r
}

func TestHierSummary(t *testing.T) {
	r := hierTestRun()
	ph := hierSummary(r, 2*time.Second)
	want := [4]hierPhaseStats{
		{sent: 10, rightA: 9, rightNX: 1, received: [3]int{10, 0, 0}},
		{sent: 10, rightA: 9, rightNX: 1, received: [3]int{0, 10, 0}},
		{sent: 10, unanswered: 1, rightA: 7, rightNX: 1, received: [3]int{0, 1, 8}},
		{sent: 10, rightA: 9, rightNX: 1, received: [3]int{9, 0, 1}},
	}
	for k, st := range ph {
		w := want[k]
		if st.sent != w.sent || st.unanswered != w.unanswered || st.rightA != w.rightA || st.rightNX != w.rightNX || st.wrong != 0 || st.received != w.received {
			t.Errorf("phase %d: %+v, want %+v", k+1, st, w)
		}
	}
	if got := hierOtherText(ph[2].other); got != "SERVFAIL 1" {
		t.Errorf("phase 3 other rcodes %q, want SERVFAIL 1", got)
	}
	if got := hierOtherText(ph[0].other); got != "0" {
		t.Errorf("phase 1 other rcodes %q, want 0", got)
	}
	if ph[0].p50 != 6*time.Millisecond || ph[0].p99 != 10*time.Millisecond {
		t.Errorf("phase 1 p50 %v p99 %v, want 6ms, 10ms", ph[0].p50, ph[0].p99)
	}
	if d, ok := r.backAfter(); !ok || d != 350*time.Millisecond {
		t.Errorf("origin's last query %v after both back (%v), want 350ms", d, ok)
	}
	if n := r.servers[2].other.Load(); n != 1 {
		t.Errorf("origin's other queries %d, want 1", n)
	}
	note := hierTargetNote(r, ph)
	for _, w := range []string{"1 unanswered (0: **missed**)", "1 answers not right", "origin got 0 client queries sent while an ISP was up (0: met; 0 more", "350 ms after both back (≤ 1 s: met)"} {
		if !strings.Contains(note, w) {
			t.Errorf("target note %q lacks %q", note, w)
		}
	}
}

func TestHierBackAfterNone(t *testing.T) {
	r := hierTestRun()
	r.servers[2] = newHierArrivals(40)
	if _, ok := r.backAfter(); ok {
		t.Error("an origin that got no query has a last one")
	}
	// Queries only before both came back: none after, 0.
	r.servers[2].at[25].Store(r.load.start.Add(25 * time.Second).UnixNano())
	if d, ok := r.backAfter(); !ok || d != 0 {
		t.Errorf("last query before the edge: %v (%v), want 0", d, ok)
	}
}

func TestHierPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 200; i >= 1; i-- {
		ds = append(ds, time.Duration(i))
	}
	if p50, p99 := hierPercentiles(ds); p50 != 101 || p99 != 198 {
		t.Errorf("p50 %v p99 %v of 1..200, want 101, 198", p50, p99)
	}
	if p50, p99 := hierPercentiles(nil); p50 != 0 || p99 != 0 {
		t.Errorf("none: %v, %v", p50, p99)
	}
}

func TestHierStanza(t *testing.T) {
	ups := [3]string{"A", "B", "C"}
	ut := hierStanza("upstreamtier", ups)
	for _, w := range []string{"upstreamtier . {", "tier isp-a A", "tier isp-b B", "tier origin C"} {
		if !strings.Contains(ut, w) {
			t.Errorf("%q lacks %q", ut, w)
		}
	}
	if strings.Contains(ut, "health_check") {
		t.Errorf("upstreamtier runs with the defaults: %q", ut)
	}
	fw := hierStanza("forward", ups)
	for _, w := range []string{"forward . A B C {", "policy sequential", "health_check 0.5s", "max_fails 1"} {
		if !strings.Contains(fw, w) {
			t.Errorf("%q lacks %q", fw, w)
		}
	}
}

func TestHierEarly(t *testing.T) {
	r := hierTestRun()
	if got := r.early(1) + r.early(2); got != "" {
		t.Errorf("no early queries: %q", got)
	}
	// Query 12, sent at 12 s while isp-a was dead: isp-b got it 2 ms later, the origin 150 ms later.
	r.servers[2].at[12].Store(r.load.start.Add(12*time.Second + 150*time.Millisecond).UnixNano())
	r.servers[1].at[12].Store(r.load.start.Add(12*time.Second + 2*time.Millisecond).UnixNano())
	want := "upstreamtier: origin received 1 client queries sent before isp-b was down; when each server received them after their send: query 12 sent at 12.00 s (isp-a –, isp-b +2.0 ms, origin +150 ms)"
	if got := r.early(2); got != want {
		t.Errorf("early(2):\n got %s\nwant %s", got, want)
	}
	// Query 9, sent at 9 s while isp-a was up, reached isp-b too.
	r.servers[1].at[9].Store(r.load.start.Add(9*time.Second + 300*time.Millisecond).UnixNano())
	if got := r.early(1); !strings.Contains(got, "isp-b received 1 client queries sent before isp-a was down") || !strings.Contains(got, "query 9 sent at 9.00 s (isp-a +0 ms, isp-b +300 ms, origin –)") {
		t.Errorf("early(1): %s", got)
	}
}

func TestHierOriginWhileUp(t *testing.T) {
	ms := time.Millisecond
	r := &hierRun{load: &loadResult{start: time.Unix(1000, 0), records: make([]record, 40000)}, events: [3]time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second}}
	for i := range r.load.records {
		r.load.records[i].sent = int64(time.Duration(i) * ms)
	}
	for i := range r.servers {
		r.servers[i] = newHierArrivals(40000)
	}
	got := func(i int) { r.servers[2].at[i].Store(r.load.start.Add(time.Duration(i)*ms + ms).UnixNano()) }
	got(5000)  // phase 1: judged
	got(9950)  // 50 ms before the kill: at the edge
	got(15000) // phase 2: judged
	got(19999) // 1 ms before the freeze: at the edge
	got(25000) // phase 3: the origin's own
	got(30500) // phase 4: backAfter's
	if judged, atEdge := r.originWhileUp(); judged != 2 || atEdge != 2 {
		t.Errorf("originWhileUp = %d, %d; want 2, 2", judged, atEdge)
	}
}
