package upstreamtier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/request"

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
	err      error // the underlying error, if any
}

func (e *attemptError) Error() string {
	s := "tier " + e.upstream.tier.name + " " + e.upstream.Addr() + ": " + e.reason
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *attemptError) Unwrap() error { return e.err }

// public is the part of the error a client may see in an Extended DNS
// Error: the tier and the reason, not the addresses of our upstreams.
func (e *attemptError) public() string {
	return "tier " + e.upstream.tier.name + ": " + e.reason
}

// attempt sends the query to one upstream and returns its answer when the
// answer may reach the client: it arrived within the budget, matches the
// query, and its rcode is not one of the failover rcodes.
func (ut *UpstreamTier) attempt(ctx context.Context, u *Upstream, state request.Request, deadline time.Time) (*dns.Msg, *attemptError) {
	ret, err := ut.exchange(ctx, u, state, deadline)
	if err != nil {
		return nil, classify(u, err)
	}
	if !state.Match(ret) {
		return nil, &attemptError{upstream: u, reason: reasonMismatch}
	}
	if ut.failover[ret.Rcode] {
		return nil, &attemptError{upstream: u, reason: reasonRcode, err: errors.New(dns.RcodeToString[ret.Rcode])}
	}
	return ret, nil
}

// exchange runs one attempt and never waits past the query deadline.
//
// The proxy stops reading after its own read timeout (attempt_timeout), not
// at the context's deadline. While the budget left covers that timeout, the
// attempt runs in this goroutine: the common, cheap case. Otherwise it runs
// on a copy of the request in its own goroutine, because the proxy rewrites
// the request ID in place and keeps at it after we stop waiting.
func (ut *UpstreamTier) exchange(ctx context.Context, u *Upstream, state request.Request, deadline time.Time) (*dns.Msg, error) {
	left := time.Until(deadline)
	if left >= ut.attemptTimeout {
		return connect(ctx, u, state, u.tier.opts)
	}
	if left <= 0 {
		return nil, errBudget
	}

	own := state
	own.Req = state.Req.Copy()
	type result struct {
		msg *dns.Msg
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := connect(ctx, u, own, u.tier.opts)
		done <- result{m, err}
	}()

	timer := time.NewTimer(left)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.msg, r.err
	case <-timer.C:
		return nil, errBudget
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// connect is one exchange with the upstream, retried as forward does when a
// pooled connection turns out to be closed, or over TCP when prefer_udp got
// a truncated answer.
func connect(ctx context.Context, u *Upstream, state request.Request, opts proxy.Options) (*dns.Msg, error) {
	for range maxConnectRetries {
		ret, _, _, err := u.proxy.Connect(ctx, state, opts)
		if errors.Is(err, proxy.ErrCachedClosed) {
			continue
		}
		if err == nil && ret.Truncated && opts.PreferUDP && !opts.ForceTCP {
			opts.ForceTCP = true
			continue
		}
		return ret, err
	}
	return nil, errRetries
}

// classify turns a transport error into the reason the attempt failed.
func classify(u *Upstream, err error) *attemptError {
	var nerr net.Error
	switch {
	case errors.Is(err, errBudget):
		return &attemptError{upstream: u, reason: reasonBudget}
	case errors.As(err, &nerr) && nerr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return &attemptError{upstream: u, reason: reasonTimeout}
	}
	return &attemptError{upstream: u, reason: reasonNetwork, err: err}
}

// maxConnectRetries bounds the retries of connect: a stale pooled
// connection or two, and one switch to TCP.
const maxConnectRetries = 3

var (
	errBudget  = errors.New("query budget spent")
	errRetries = fmt.Errorf("gave up after %d connection retries", maxConnectRetries)
)
