package upstreamtier

import (
	"context"
	"errors"
	"os"
	"strings"

	"github.com/upstreamtier/upstreamtier/internal/dnspool"
	"github.com/upstreamtier/upstreamtier/internal/upstream"

	"github.com/miekg/dns"
)

// reason is why an attempt failed.
type reason uint8

// The reasons an attempt fails.
const (
	reasonNetwork  reason = iota // an error on the way: refused, reset, TLS
	reasonTimeout                // no answer by the attempt's deadline
	reasonSilent                 // the upstream sent nothing back, and nothing was left to try
	reasonAllDown                // no tier became available while it waited
	reasonRcode                  // a failover rcode
	reasonMismatch               // an answer that does not match the query, or garbage
	reasonBudget                 // the query's budget was spent
)

// String returns the reason as errors and Extended DNS Errors say it.
func (r reason) String() string {
	switch r {
	case reasonTimeout:
		return "timeout"
	case reasonSilent:
		return "upstream silent"
	case reasonAllDown:
		return "no tier available"
	case reasonRcode:
		return "failover rcode"
	case reasonMismatch:
		return "answer does not match the query"
	case reasonBudget:
		return "query budget spent"
	}
	return "network error"
}

// label returns the reason as a metric label.
func (r reason) label() string {
	switch r {
	case reasonTimeout, reasonSilent, reasonAllDown, reasonBudget:
		return "timeout"
	case reasonRcode:
		return "rcode"
	case reasonMismatch:
		return "mismatch"
	}
	return "network"
}

// attemptError says which upstream failed an attempt and why.
type attemptError struct {
	upstream *Upstream
	reason   reason
	rcode    int   // the answer's rcode, for reasonRcode
	err      error // the underlying error, if any
}

func (e *attemptError) Error() string {
	if e.upstream == nil {
		return e.what()
	}
	s := "tier " + e.upstream.tier.name + " " + e.upstream.Addr() + ": " + e.what()
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *attemptError) Unwrap() error { return e.err }

// public is the part of the error a client may see in an Extended DNS
// Error: the tier and the reason, not the addresses of our upstreams.
func (e *attemptError) public() string {
	if e.upstream == nil {
		return e.what()
	}
	return "tier " + e.upstream.tier.name + ": " + e.what()
}

// what is the reason, with the rcode when that was it.
func (e *attemptError) what() string {
	if e.reason == reasonRcode {
		return e.reason.String() + " " + rcodeName(e.rcode)
	}
	return e.reason.String()
}

// label returns the reason as a metric label.
func (e *attemptError) label() string { return e.reason.label() }

// answered reports whether the upstream sent something back: a failover
// rcode or an answer that does not match is a failure of the attempt, but
// proof that the upstream is there.
func (e *attemptError) answered() bool {
	return e.reason == reasonRcode || e.reason == reasonMismatch
}

// question is what a query asks, which its answer must echo.
type question struct {
	name          string
	qtype, qclass uint16
}

// judge is the verdict on one exchange with an upstream, for client
// attempts and probes alike: nil for an answer that may reach the client,
// otherwise why it may not.
//
// An error without a question section (Unbound's access control refuses
// so) is judged by its rcode alone: a failover rcode fails the attempt
// as such, and a reachability probe (no failover rcodes) takes it as
// proof the upstream is there; any other cannot reach a client, and is a
// mismatch.
func judge(u *Upstream, q question, failover map[int]bool, m *dns.Msg, err error) *attemptError {
	switch {
	case err != nil:
		return classify(u, err)
	case questionless(m) && failover == nil:
		return nil
	case questionless(m) && failover[m.Rcode]:
		return &attemptError{upstream: u, reason: reasonRcode, rcode: m.Rcode}
	case !q.echoedBy(m):
		return &attemptError{upstream: u, reason: reasonMismatch}
	case failover[m.Rcode]:
		return &attemptError{upstream: u, reason: reasonRcode, rcode: m.Rcode}
	}
	return nil
}

// questionless reports whether m is an error response without a question
// section: NOERROR and NXDOMAIN must echo the question.
func questionless(m *dns.Msg) bool {
	return m.Response && len(m.Question) == 0 && m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError
}

// echoedBy reports whether m is a response to the question. The ID was
// checked by the transport.
func (q question) echoedBy(m *dns.Msg) bool {
	if !m.Response || len(m.Question) != 1 {
		return false
	}
	qq := m.Question[0]
	return qq.Qtype == q.qtype && qq.Qclass == q.qclass && strings.EqualFold(qq.Name, q.name)
}

// classify turns a transport error into the reason the attempt failed.
func classify(u *Upstream, err error) *attemptError {
	if isTimeout(err) {
		return &attemptError{upstream: u, reason: reasonTimeout}
	}
	if errors.Is(err, dnspool.ErrWrongID) || errors.Is(err, upstream.ErrMalformed) {
		return &attemptError{upstream: u, reason: reasonMismatch, err: err}
	}
	return &attemptError{upstream: u, reason: reasonNetwork, err: err}
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}
