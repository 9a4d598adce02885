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
// brings the TLS handshake, session resumption and connection reuse. The
// proxy reads until its own read timeout (attempt_timeout), so a DoT attempt
// always runs in its own goroutine, where outliving the query costs nothing
// but the goroutine. req must be the attempt's own copy: the proxy rewrites
// its ID while it runs.
func (u *Upstream) exchangeDoT(req *dns.Msg, deadline time.Time) (*dns.Msg, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	state := request.Request{W: dotWriter{}, Req: req}
	ret, _, _, err := u.proxy.Connect(ctx, state, proxy.Options{ForceTCP: true, TLSConnectDeadline: deadline})
	if errors.Is(err, proxy.ErrCachedClosed) { // the upstream closed the pooled connection: once more
		ret, _, _, err = u.proxy.Connect(ctx, state, proxy.Options{ForceTCP: true, TLSConnectDeadline: deadline})
	}
	return ret, err
}

// dotWriter is the ResponseWriter of the request handed to pkg/proxy. The
// proxy only asks it for the transport, to size its buffer: TCP.
type dotWriter struct{ dns.ResponseWriter }

func (dotWriter) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (dotWriter) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
