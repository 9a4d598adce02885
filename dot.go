package upstreamtier

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// exchangeDoT sends req to a DNS-over-TLS upstream through pkg/proxy, which
// brings the TLS handshake, session resumption and connection reuse. req
// must be the attempt's own copy: the proxy rewrites its ID while it runs.
//
// The proxy honours its context only while it dials and shakes hands; once
// the query is written it reads until its own read timeout
// (attempt_timeout), whatever the context says, and a proxy stopped at
// shutdown does not close the connections in use. So the proxy runs in a
// goroutine of its own and the attempt waits for it only until its
// deadline or until ctx is done (the query was answered elsewhere, or the
// plugin shuts down): the attempt, a probe or a shutdown never waits on the
// network; the proxy's goroutine ends at its read timeout, and costs
// nothing but itself until then.
func (u *Upstream) exchangeDoT(ctx context.Context, req *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	type result struct {
		m   *dns.Msg
		err error
	}
	done := make(chan result, 1)
	go func() {
		state := request.Request{W: dotWriter{}, Req: req}
		ret, _, _, err := u.proxy.Connect(ctx, state, proxy.Options{ForceTCP: true, TLSConnectDeadline: deadline})
		if errors.Is(err, proxy.ErrCachedClosed) { // the upstream closed the pooled connection: once more
			ret, _, _, err = u.proxy.Connect(ctx, state, proxy.Options{ForceTCP: true, TLSConnectDeadline: deadline})
		}
		done <- result{ret, err}
	}()
	select {
	case r := <-done:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dotWriter is the ResponseWriter of the request handed to pkg/proxy. The
// proxy only asks it for the transport, to size its buffer: TCP.
type dotWriter struct{ dns.ResponseWriter }

func (dotWriter) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (dotWriter) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
