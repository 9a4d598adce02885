package upstreamtier

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"

	pkgtls "github.com/coredns/coredns/plugin/pkg/tls"

	"github.com/coredns/coredns/core/dnsserver"
)

// tls reads "tls [CERT KEY [CA] | CA]".
func (p *parser) tls() error {
	args := p.c.RemainingArgs()
	if p.countEncrypted() == 0 {
		return p.c.Errf("tier %q: tls is for "+encryptedForms+" upstreams, and the tier has none", p.tier.name)
	}
	if len(args) > 3 {
		return p.c.Err("tls takes at most CERT KEY CA")
	}
	root := dnsserver.GetConfig(p.c).Root
	for i := range args {
		if !filepath.IsAbs(args[i]) && root != "" {
			args[i] = filepath.Join(root, args[i])
		}
	}
	if len(args) == 1 || len(args) == 3 {
		if err := checkCA(args[len(args)-1]); err != nil {
			return p.c.Errf("tls: %v", err)
		}
	}
	cfg, err := pkgtls.NewTLSConfigFromArgs(args...)
	if err != nil {
		return p.c.Errf("tls: %v", err)
	}
	p.tier.tlsConfig = cfg
	return nil
}

// checkCA says what is wrong with a CA file in words, where pkg/tls
// prints a nil error.
func checkCA(path string) error {
	pem, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return fmt.Errorf("error reading %s: %v", path, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("CA file %s holds no PEM certificate", path)
	}
	return nil
}

// tlsServerName reads "tls_servername NAME".
func (p *parser) tlsServerName() error {
	args := p.c.RemainingArgs()
	if p.countEncrypted() == 0 {
		return p.c.Errf("tier %q: tls_servername is for "+encryptedForms+" upstreams, and the tier has none", p.tier.name)
	}
	if len(args) != 1 {
		return p.c.Err("tls_servername needs one NAME")
	}
	for _, to := range p.tos {
		if to.serverName != "" {
			return p.c.Errf("tier %q: %s: server name given twice: %%%s and tls_servername %s", p.tier.name, to.arg, to.serverName, args[0])
		}
	}
	p.tier.tlsServerName = args[0]
	return nil
}

// countEncrypted returns how many of the tier's upstreams are tls://,
// https:// or quic://.
func (p *parser) countEncrypted() int {
	n := 0
	for _, to := range p.tos {
		if encrypted(to.transport) {
			n++
		}
	}
	return n
}
