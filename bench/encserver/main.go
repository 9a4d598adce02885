// Command encserver is the encrypted upstream of the bench's encrypted
// scenarios: CoreDNS serving tls://, https:// and quic:// server blocks
// with CoreDNS's own tls plugin. It is a build of its own, so that the
// upstream is the same small chain whatever cmd/coredns carries.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/erratic"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/tls"
)

// directives is the plugin chain of this build, in CoreDNS's own order.
var directives = []string{"tls", "bind", "errors", "template", "erratic"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
