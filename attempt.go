package upstreamtier

import (
	"context"
	"errors"
	"os"

	"github.com/miekg/dns"
)

// Reasons an attempt failed, as reported in errors and Extended DNS Errors.
const (
	reasonTimeout  = "timeout"
	reasonNetwork  = "network error"
	reasonRcode    = "failover rcode"
	reasonMismatch = "answer does not match the query"
	reasonBudget   = "query budget spent"
)

// attemptError says which upstream failed an attempt and why.
type attemptError struct {
	upstream *Upstream
	reason   string
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
		return e.reason + " " + dns.RcodeToString[e.rcode]
	}
	return e.reason
}

// label returns the reason as a metric label.
func (e *attemptError) label() string {
	switch e.reason {
	case reasonTimeout, reasonBudget:
		return "timeout"
	case reasonRcode:
		return "rcode"
	case reasonMismatch:
		return "mismatch"
	}
	return "network"
}

// classify turns a transport error into the reason the attempt failed.
func classify(u *Upstream, err error) *attemptError {
	if isTimeout(err) {
		return &attemptError{upstream: u, reason: reasonTimeout}
	}
	if errors.Is(err, errWrongID) || errors.Is(err, errMalformed) {
		return &attemptError{upstream: u, reason: reasonMismatch, err: err}
	}
	return &attemptError{upstream: u, reason: reasonNetwork, err: err}
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}
