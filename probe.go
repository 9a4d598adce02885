package upstreamtier

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// probe asks a down upstream for the health_check domain (type NS) over the
// protocol client queries would use, and says whether it answered well: in
// time, matching the question, and with an rcode that is not a failover one.
func (u *Upstream) probe() error {
	m := new(dns.Msg)
	m.SetQuestion(u.hc.domain, dns.TypeNS)
	m.RecursionDesired = !u.hc.noRec
	attempt, _ := u.timeouts(u.hc.limit)
	deadline := time.Now().Add(attempt)

	wire, err := m.Pack()
	if err != nil {
		return err
	}
	ret, err := u.exchange(context.Background(), u.proto("udp"), m, wire, dns.MinMsgSize, deadline)
	switch {
	case err != nil:
		return err
	case !ret.Response || len(ret.Question) != 1 || !strings.EqualFold(ret.Question[0].Name, m.Question[0].Name):
		return fmt.Errorf("probe: %s", reasonMismatch)
	case u.hc.failover[ret.Rcode]:
		return fmt.Errorf("probe: %s %s", reasonRcode, dns.RcodeToString[ret.Rcode])
	}
	return nil
}

func probeResult(err error) string {
	if err != nil {
		return "fail"
	}
	return "ok"
}
