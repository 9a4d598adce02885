package main

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// synthetic returns n records sent one every ms from 0, each answered NOERROR
// 1 ms later by the tier answer(i) gives; answer returns 0 for a lost query.
func synthetic(n int, answer func(i int) int8) []record {
	recs := make([]record, n)
	for i := range recs {
		r := &recs[i]
		r.sent = int64(time.Duration(i) * time.Millisecond)
		if t := answer(i); t > 0 {
			r.tier = t
			r.recv.Store(r.sent + int64(time.Millisecond))
		}
	}
	return recs
}

// tierFrom answers from tier 1 before ms at and from tier 2 from then on.
func tierFrom(at int) func(int) int8 {
	return func(i int) int8 {
		if i < at {
			return 1
		}
		return 2
	}
}

const testTimeout = 2 * time.Second

func TestSwitchTime(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		about    string
		recs     []record
		tier     int8
		from, to time.Duration
		want     time.Duration
		ok       bool
	}{
		// A 100-query window may hold one bad query (99 %): the window from 299 ms holds one tier 1 answer.
		{about: "clean switch", recs: synthetic(1000, tierFrom(300)), tier: 2, to: 1000 * ms, want: 299 * ms, ok: true},
		{about: "measured from the phase start", recs: synthetic(1000, tierFrom(300)), tier: 2, from: 200 * ms, to: 1000 * ms, want: 99 * ms, ok: true},
		{about: "already switched", recs: synthetic(1000, tierFrom(0)), tier: 2, to: 1000 * ms, want: 0, ok: true},
		{about: "never switches", recs: synthetic(1000, tierFrom(1000)), tier: 2, to: 1000 * ms, ok: false},
		{about: "a flap back restarts the count", tier: 2, to: 1000 * ms, want: 699 * ms, ok: true,
			recs: synthetic(1000, func(i int) int8 {
				if i < 300 || i >= 600 && i < 700 {
					return 1
				}
				return 2
			})},
		{about: "lost queries count against the switch", tier: 2, to: 1000 * ms, want: 420 * ms, ok: true,
			recs: synthetic(1000, func(i int) int8 {
				if i >= 400 && i <= 420 {
					return 0
				}
				return 2
			})},
		{about: "the last window before the phase end is not judged", tier: 2, to: 1000 * ms, want: 299 * ms, ok: true,
			recs: synthetic(1000, func(i int) int8 {
				if i < 300 || i >= 920 {
					return 1
				}
				return 2
			})},
		{about: "a failing last judged window is no switch", tier: 2, to: 1000 * ms, ok: false,
			recs: synthetic(1000, func(i int) int8 {
				if i < 300 || i >= 880 {
					return 1
				}
				return 2
			})},
		{about: "fail-back to tier 1", recs: synthetic(1000, func(i int) int8 { return 3 - tierFrom(500)(i) }), tier: 1, from: 400 * ms, to: 1000 * ms, want: 99 * ms, ok: true},
	} {
		got, ok := switchTime(tc.recs, tc.tier, tc.from, tc.to, testTimeout)
		if ok != tc.ok || ok && got != tc.want {
			t.Errorf("%s: switchTime = %v, %v; want %v, %v", tc.about, got, ok, tc.want, tc.ok)
		}
	}
}

func TestSwitchTimeLateAndWrongAnswers(t *testing.T) {
	recs := synthetic(1000, tierFrom(0))
	// A late answer is a lost one, and a wrong answer counts for no tier: both break the windows they are in.
	recs[500].recv.Store(recs[500].sent + int64(testTimeout) + 1)
	recs[501].wrong = true
	got, ok := switchTime(recs, 2, 0, time.Second, testTimeout)
	if want := 501 * time.Millisecond; !ok || got != want {
		t.Errorf("switchTime = %v, %v; want %v, true", got, ok, want)
	}
}

func TestStats(t *testing.T) {
	// 200 queries, one a ms: latency i µs + 1 ms for the answered ones.
	recs := make([]record, 200)
	for i := range recs {
		r := &recs[i]
		r.sent = int64(time.Duration(i) * time.Millisecond)
		r.tier = int8(1 + i%2)
		r.recv.Store(r.sent + int64(time.Millisecond+time.Duration(i)*time.Microsecond))
	}
	recs[110].recv.Store(0)                                       // never answered
	recs[111].recv.Store(recs[111].sent + int64(testTimeout) + 1) // too late
	recs[112].rcode = dns.RcodeServerFailure
	recs[113].wrong = true
	recs[114].rcode = dns.RcodeRefused // answered, neither NOERROR nor SERVFAIL

	s := stats(recs, 100*time.Millisecond, 150*time.Millisecond, testTimeout)
	// Records 100 to 149: the bounds are [from, to).
	if s.sent != 50 || s.lost != 2 || s.servfail != 1 || s.wrong != 1 {
		t.Errorf("sent %d lost %d servfail %d wrong %d; want 50 2 1 1", s.sent, s.lost, s.servfail, s.wrong)
	}
	// Right NOERROR answers: 50 less 2 lost, the SERVFAIL, the wrong and the REFUSED; 112 and 114 are even (tier 1), 113 odd.
	if s.tier[1] != 22 || s.tier[2] != 23 {
		t.Errorf("tier 1 %d, tier 2 %d; want 22, 23", s.tier[1], s.tier[2])
	}
	// 48 answered latencies, 1.100 ms ... 1.149 ms without 1.110 and 1.111: the median is the 25th,
	// and the 99th percentile of 48 is the ceil(47.52) = 48th, the maximum.
	us := func(n int) time.Duration { return time.Millisecond + time.Duration(n)*time.Microsecond }
	if s.p50 != us(126) || s.p99 != us(149) || s.max != us(149) {
		t.Errorf("p50 %v p99 %v max %v; want %v %v %v", s.p50, s.p99, s.max, us(126), us(149), us(149))
	}
}

func TestStatsEmpty(t *testing.T) {
	recs := synthetic(10, tierFrom(0))
	if s := stats(recs, time.Second, 2*time.Second, testTimeout); s != (phaseStats{}) {
		t.Errorf("stats of no records = %+v, want zero", s)
	}
}
