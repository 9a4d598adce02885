package upstreamtier

import (
	"context"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/coredns/coredns/request"

	"github.com/miekg/dns"
)

// Query types are chosen by clients, and some have no business going to a
// recursive resolver: a client could send them to make the upstreams fail
// and, were their answers judged, take a tier away from everybody.

// localRcode returns the rcode the plugin answers a query type with
// itself, without asking any upstream, and whether it does so. Zone
// transfers (AXFR, IXFR) and TKEY are for authoritative servers: a
// forwarder does not do them (NOTIMP; a transfer also spans several
// messages, which a one-answer exchange cannot relay). Types that cannot
// be asked at all, reserved 0, OPT and TSIG, are a malformed query
// (FORMERR).
func localRcode(qtype uint16) (int, bool) {
	switch qtype {
	case dns.TypeAXFR, dns.TypeIXFR, dns.TypeTKEY:
		return dns.RcodeNotImplemented, true
	case dns.TypeNone, dns.TypeOPT, dns.TypeTSIG:
		return dns.RcodeFormatError, true
	}
	return 0, false
}

// judgedType reports whether answers to qtype may move an upstream's
// health and RTT estimate. The other meta types a resolver may answer as
// it likes (ANY per RFC 8482, the obsolete MAILA and MAILB) are forwarded
// like any query, but what comes back says nothing about the upstream.
func judgedType(qtype uint16) bool {
	switch qtype {
	case dns.TypeANY, dns.TypeMAILA, dns.TypeMAILB:
		return false
	}
	return true
}

// answerLocally answers the query with rcode and Extended DNS Error 21
// (Not Supported), without asking any upstream.
func (ut *UpstreamTier) answerLocally(ctx context.Context, state request.Request, rcode int) (int, error) {
	qtype := dns.Type(state.QType()).String()
	localAnswers.WithLabelValues(metrics.WithServer(ctx), qtype).Inc()
	text := "upstreamtier: query type " + qtype + " is not forwarded"
	state.W.WriteMsg(errorAnswer(state, rcode, dns.ExtendedErrorCodeNotSupported, text))
	return dns.RcodeSuccess, plugin.Error(pluginName, errLocalType)
}
