package upstreamtier

import (
	"sync/atomic"
	"time"
)

// rtt is an RFC 6298 estimate of an upstream's round-trip time: the
// smoothed RTT and its variation, read without a lock; its one writer at
// a time is the caller's to ensure.
type rtt struct {
	srtt   atomic.Int64 // in ns, 0 until the first sample
	rttvar atomic.Int64 // in ns
}

// sample adds one measured round trip.
func (r *rtt) sample(d time.Duration) {
	srtt, rttvar := r.smoothed(), time.Duration(r.rttvar.Load())
	if srtt == 0 {
		srtt, rttvar = d, d/2
	} else {
		rttvar = (3*rttvar + (srtt - d).Abs()) / 4
		srtt = (7*srtt + d) / 8
	}
	r.srtt.Store(int64(max(srtt, 1)))
	r.rttvar.Store(int64(rttvar))
}

// smoothed returns the smoothed RTT, 0 before the first sample.
func (r *rtt) smoothed() time.Duration { return time.Duration(r.srtt.Load()) }

// rto returns the retransmission timeout srtt + 4·rttvar, 0 before the
// first sample.
func (r *rtt) rto() time.Duration {
	return r.smoothed() + 4*time.Duration(r.rttvar.Load())
}
