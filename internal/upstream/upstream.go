// Package upstream holds the transports that carry queries to one
// upstream server: plain DNS over UDP and TCP, DNS over TLS, and DNS over
// HTTPS or QUIC through CoreDNS's pkg/proxy. A Config says how to reach
// the server and New returns its Link; nothing here knows of tiers or
// health, and nothing outside knows which transport a Link is.
package upstream

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/coredns/coredns/plugin/pkg/transport"
	"github.com/upstreamtier/upstreamtier/internal/dnspool"

	"github.com/miekg/dns"
)

// Config is how to reach one upstream server.
type Config struct {
	Addr      string // host:port
	Scheme    string // transport.DNS, TLS, HTTPS or QUIC
	TLS       *tls.Config
	DoHMethod string // the DoH request method, POST or GET
	// ForceTCP and PreferUDP say how plain DNS asks whatever the client
	// used.
	ForceTCP, PreferUDP bool
	Pool                dnspool.Options // source address, expire, max_age, max_idle_conns
	ReadTimeout         time.Duration   // the longest DoH or DoQ waits to read
}

// A Link carries one upstream's queries over its transport.
type Link interface {
	// Send writes the attempt's query for a client query that came over
	// clientProto; the answer is awaited on the Pending returned. A dial
	// ends at the deadline or when ctx is done.
	Send(ctx context.Context, clientProto string, q Query, deadline time.Time) (Pending, error)
	// Network is the protocol the query travels on for a client query
	// over clientProto, "udp" or "tcp", as dnstap reports it.
	Network(clientProto string) string
	// Stop closes the connections, ending the reads still waiting on the
	// upstream after grace.
	Stop(grace time.Duration)
}

// Pending is a query sent to an upstream and not yet answered.
type Pending interface {
	// Await waits for the answer until the deadline. A timeout leaves the
	// query pending: it may be awaited again.
	Await(deadline time.Time) (*dns.Msg, error)
	// AwaitCtx waits for the answer until the deadline or until ctx is
	// done, with ctx's error.
	AwaitCtx(ctx context.Context, deadline time.Time) (*dns.Msg, error)
	// Finish ends the exchange after the last await, with what that
	// gave. The transport may ask once more, as its rules say, within
	// the same deadline and ctx; it returns the exchange's last word.
	Finish(ctx context.Context, m *dns.Msg, err error, deadline time.Time) (*dns.Msg, error)
}

// Query is what an attempt sends: the client's query, which the transport
// leaves as it found it, and the attempt's own packed copy of it, which
// the transport may write into.
type Query struct {
	Req    *dns.Msg
	Packet Packet
	Alone  bool // no other upstream may take over: the transport may block until the answer
	// A transport that blocks the caller until the answer calls
	// Stalled.AskSilence(Start, done) if none has come by CheckAt, done
	// closed when the exchange is over, so that the upstream's silence is
	// still asked about and can end the query.
	Stalled        SilenceAsker
	Start, CheckAt time.Time
}

// SilenceAsker asks, until done is closed, whether an upstream has sent
// anything back since an attempt started.
type SilenceAsker interface {
	AskSilence(since time.Time, done <-chan struct{})
}

// New returns the link of the upstream cfg describes.
func New(cfg Config) Link {
	switch cfg.Scheme {
	case transport.DNS:
		return newPlain(cfg)
	case transport.TLS:
		return newDoT(cfg)
	}
	return newProxied(cfg)
}

// Exchange sends one query over l and waits for its answer until the
// deadline or until ctx is done.
func Exchange(ctx context.Context, l Link, clientProto string, q Query, deadline time.Time) (*dns.Msg, error) {
	p, err := l.Send(ctx, clientProto, q, deadline)
	if err != nil {
		return nil, err
	}
	m, err := p.AwaitCtx(ctx, deadline)
	return p.Finish(ctx, m, err, deadline)
}

// TLSConfig returns the TLS client configuration of one encrypted
// upstream: a copy of base (the tier's tls option; nil for the system
// roots) verifying serverName, with a session cache of its own.
// Certificates are always verified.
func TLSConfig(base *tls.Config, serverName string) *tls.Config {
	cfg := new(tls.Config)
	if base != nil {
		cfg = base.Clone()
	}
	cfg.ServerName = serverName
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	return cfg
}
