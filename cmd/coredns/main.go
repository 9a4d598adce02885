// Command coredns is a CoreDNS build with the upstreamtier plugin and the
// in-tree plugins a cluster-DNS operator needs.
package main

import (
	"slices"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The upstreamtier plugin itself.
	_ "github.com/upstreamtier/upstreamtier"

	// In-tree CoreDNS plugins, a curated set: enough to run cluster DNS,
	// without the cloud back ends that would triple the binary.
	_ "github.com/coredns/caddy/onevent"
	_ "github.com/coredns/coredns/plugin/acl"
	_ "github.com/coredns/coredns/plugin/any"
	_ "github.com/coredns/coredns/plugin/auto"
	_ "github.com/coredns/coredns/plugin/autopath"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/bufsize"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/cancel"
	_ "github.com/coredns/coredns/plugin/chaos"
	_ "github.com/coredns/coredns/plugin/debug"
	_ "github.com/coredns/coredns/plugin/dns64"
	_ "github.com/coredns/coredns/plugin/dnstap"
	_ "github.com/coredns/coredns/plugin/erratic"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/file"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/header"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/hosts"
	_ "github.com/coredns/coredns/plugin/k8s_external"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/local"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metadata"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/minimal"
	_ "github.com/coredns/coredns/plugin/multisocket"
	_ "github.com/coredns/coredns/plugin/nsid"
	_ "github.com/coredns/coredns/plugin/pprof"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
	_ "github.com/coredns/coredns/plugin/rewrite"
	_ "github.com/coredns/coredns/plugin/root"
	_ "github.com/coredns/coredns/plugin/secondary"
	_ "github.com/coredns/coredns/plugin/template"
	_ "github.com/coredns/coredns/plugin/timeouts"
	_ "github.com/coredns/coredns/plugin/tls"
	_ "github.com/coredns/coredns/plugin/transfer"
	_ "github.com/coredns/coredns/plugin/view"
	_ "github.com/coredns/coredns/plugin/whoami"
)

// directives is the plugin chain order of this build: CoreDNS's own order
// (its plugin.cfg, which main_test.go checks), with upstreamtier right
// before forward so that either can be the last word for a zone.
var directives = []string{
	"root", "metadata", "cancel", "timeouts", "multisocket", "reload",
	"nsid", "bufsize", "bind", "debug", "ready", "health", "pprof",
	"prometheus", "errors", "log", "dnstap", "local", "dns64", "any",
	"chaos", "loadbalance", "rewrite", "autopath", "acl", "cache", "header",
	"tls", "minimal", "template", "transfer", "hosts", "k8s_external",
	"kubernetes", "file", "auto", "secondary", "loop", "upstreamtier",
	"forward", "erratic", "whoami", "on", "view",
}

func init() {
	dnsserver.Directives = slices.Clone(directives)
}

func main() {
	coremain.Run()
}
