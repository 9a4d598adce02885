package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/coredns/coredns/plugin/pkg/proxy"
	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// proxiedLink carries DNS over HTTPS (RFC 8484) or QUIC (RFC 9250)
// through CoreDNS's pkg/proxy, which brings the handshakes, session
// resumption, connection reuse, HTTP/2 and QUIC streams.
//
// The proxy's exchange blocks until the answer, the attempt's deadline or
// the end of its context, and rewrites the request's ID while it runs. So
// an exchange runs on a copy of the request in a goroutine of its own
// (unless no other upstream may take over), and the attempt waits for it
// only until its deadline or until its context is done (the query was
// answered elsewhere, or the plugin shuts down), and may wait again, as a
// hedge does.
type proxiedLink struct {
	proxy *proxy.Proxy
	proto string // what the transport runs over: "udp" for QUIC, "tcp" otherwise
}

// newProxied returns the link of an https:// or quic:// upstream.
// Certificates are always verified, against the upstream's server name.
func newProxied(cfg Config) *proxiedLink {
	p := proxy.NewProxy("upstreamtier", cfg.Addr, cfg.Scheme)
	if cfg.Scheme == transport.HTTPS {
		// No client timeout: each request is bounded by its attempt's deadline.
		p.SetHTTPClient(&http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()})
		p.SetDOHRequestOptions(cfg.DoHMethod)
	}
	p.SetTLSConfig(cfg.TLS)
	p.SetDOHHost(cfg.TLS.ServerName)
	if cfg.Pool.Expire > 0 {
		p.SetExpire(cfg.Pool.Expire)
	}
	p.SetMaxAge(cfg.Pool.MaxAge)
	p.SetMaxIdleConns(cfg.Pool.MaxIdle)
	if cfg.Pool.Source != nil {
		p.SetLocalAddress(cfg.Pool.Source)
	}
	p.SetReadTimeout(cfg.ReadTimeout)
	// Start runs the proxy's connection manager (its pooled connections
	// and their expiry); its own health checker is never triggered.
	p.Start(time.Second)
	proto := "tcp"
	if cfg.Scheme == transport.QUIC {
		proto = "udp"
	}
	return &proxiedLink{proxy: p, proto: proto}
}

// Network implements Link: DoH runs over TCP, DoQ over UDP.
func (l *proxiedLink) Network(string) string { return l.proto }

// TLSConfig returns the configuration connections are verified with.
func (l *proxiedLink) TLSConfig() *tls.Config { return l.proxy.GetTransport().GetTLSConfig() }

// send starts the exchange in a goroutine of its own, on a copy of the
// client's query (the proxy rewrites its ID while it runs), so that the
// attempt may stop waiting at a checkpoint and be hedged. When no other
// upstream may take over, it runs in the caller's goroutine on the query
// itself, as forward's does: nothing else reads the query meanwhile, and
// the proxy restores the ID before it returns.
func (l *proxiedLink) Send(ctx context.Context, _ string, q Query, deadline time.Time) (Pending, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	p := &proxiedPending{done: make(chan struct{}), cancel: cancel}
	if q.Alone {
		if q.Stalled != nil {
			t := time.AfterFunc(time.Until(q.CheckAt), func() { q.Stalled.AskSilence(q.Start, p.done) })
			defer t.Stop()
		}
		l.exchange(ctx, p, q.Req)
	} else {
		go l.exchange(ctx, p, q.Req.Copy())
	}
	return p, nil
}

// exchange asks the proxy and gives p its result.
func (l *proxiedLink) exchange(ctx context.Context, p *proxiedPending, req *dns.Msg) {
	state := request.Request{W: proxiedWriter{}, Req: req}
	p.m, _, _, p.err = l.proxy.Connect(ctx, state, proxy.Options{})
	// The upstream closed the cached connection (DoQ) before the query
	// went out: try again, as forward does. Each try retires a cached
	// connection, so it ends with a new one at the latest.
	for errors.Is(p.err, proxy.ErrCachedClosed) && ctx.Err() == nil {
		p.m, _, _, p.err = l.proxy.Connect(ctx, state, proxy.Options{})
	}
	close(p.done)
}

// stop stops the proxy. Its finalizer is removed before its transport is
// stopped now, rather than whenever the garbage collector gets to it,
// because it would stop it a second time, and that panics.
// Stop implements Link; the proxy has no grace of its own to give.
func (l *proxiedLink) Stop(time.Duration) {
	l.proxy.Stop()
	runtime.SetFinalizer(l.proxy, nil)
	l.proxy.GetTransport().Stop()
}

// proxiedPending is an exchange running in the proxy's goroutine; m and
// err are its result once done is closed.
type proxiedPending struct {
	done   chan struct{}
	cancel context.CancelFunc
	m      *dns.Msg
	err    error
}

func (p *proxiedPending) Await(deadline time.Time) (*dns.Msg, error) {
	return p.AwaitCtx(context.Background(), deadline)
}

func (p *proxiedPending) AwaitCtx(ctx context.Context, deadline time.Time) (*dns.Msg, error) {
	select {
	case <-p.done: // an exchange run in the query's goroutine, or a quick one
		return p.m, p.err
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-p.done:
		return p.m, p.err
	case <-t.C:
		return nil, os.ErrDeadlineExceeded
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// finish lets the proxy's goroutine go, if it still runs.
func (p *proxiedPending) Finish(_ context.Context, m *dns.Msg, err error, _ time.Time) (*dns.Msg, error) {
	p.cancel()
	return m, err
}

// proxiedWriter is the ResponseWriter of the request handed to pkg/proxy.
// The proxy only asks it for the transport, to size its buffer: TCP.
type proxiedWriter struct{ dns.ResponseWriter }

func (proxiedWriter) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (proxiedWriter) LocalAddr() net.Addr  { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
