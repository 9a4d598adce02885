// Command encserver is the encrypted upstream of the bench's encrypted
// scenarios: CoreDNS serving tls://, https:// and quic:// server blocks. It is
// a build of its own, so the bench does not depend on which plugins
// cmd/coredns carries, with a minimal tls directive (a certificate and key,
// nothing else: no ACME).
package main

import (
	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
	"github.com/coredns/coredns/plugin"
	pkgtls "github.com/coredns/coredns/plugin/pkg/tls"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/erratic"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/template"
)

// directives is the plugin chain of this build, in CoreDNS's own order.
var directives = []string{"tls", "bind", "errors", "template", "erratic"}

func init() {
	dnsserver.Directives = directives
	plugin.Register("tls", setupTLS)
}

// setupTLS reads "tls CERT KEY": the server block's certificate.
func setupTLS(c *caddy.Controller) error {
	c.Next()
	args := c.RemainingArgs()
	if len(args) != 2 {
		return plugin.Error("tls", c.ArgErr())
	}
	cfg, err := pkgtls.NewTLSConfig(args[0], args[1], "")
	if err != nil {
		return plugin.Error("tls", err)
	}
	dnsserver.GetConfig(c).TLSConfig = cfg
	return nil
}

func main() {
	coremain.Run()
}
