package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// upstreamName is the name the forwarders verify in the encrypted upstream's certificate.
const upstreamName = "upstream.bench.test"

// otherName is the name in the certificate of an upstream that presents someone else's.
const otherName = "other.bench.test"

// keyPair is a certificate and its private key, as PEM files.
type keyPair struct{ cert, key string }

// certSet is the throwaway PKI of the encrypted scenarios, written as PEM files into one directory.
type certSet struct {
	ca        string  // the CA certificate the forwarders trust
	good      keyPair // upstreamName and 127.0.0.1, issued by ca
	otherCA   keyPair // the same names, issued by a CA nobody trusts
	otherName keyPair // otherName only, issued by ca
}

// issuer is a CA that can sign certificates.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newIssuer returns a fresh self-signed CA called cn.
func newIssuer(cn string) (*issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := certTemplate(cn)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return &issuer{cert: cert, key: key}, err
}

// certTemplate is a certificate for cn valid for a day from an hour ago.
func certTemplate(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
}

// issue returns a server certificate for the DNS name and IPs, signed by ca, and its key, both DER.
func (ca *issuer) issue(name string, ips ...net.IP) (certDER, keyDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := certTemplate(name)
	tmpl.DNSNames, tmpl.IPAddresses = []string{name}, ips
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key); err != nil {
		return nil, nil, err
	}
	keyDER, err = x509.MarshalECPrivateKey(key)
	return certDER, keyDER, err
}

// writePair issues a certificate for name and ips with ca and writes it and its key as DIR/BASE.crt and DIR/BASE.key.
func (ca *issuer) writePair(dir, base, name string, ips ...net.IP) (keyPair, error) {
	p := keyPair{cert: filepath.Join(dir, base+".crt"), key: filepath.Join(dir, base+".key")}
	certDER, keyDER, err := ca.issue(name, ips...)
	if err != nil {
		return p, err
	}
	if err := writePEM(p.cert, "CERTIFICATE", certDER); err != nil {
		return p, err
	}
	return p, writePEM(p.key, "EC PRIVATE KEY", keyDER)
}

// writePEM writes der as one PEM block of type typ.
func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// writeCerts makes a fresh certSet in dir.
func writeCerts(dir string) (*certSet, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	trusted, err := newIssuer("bench trusted CA")
	if err != nil {
		return nil, err
	}
	untrusted, err := newIssuer("bench untrusted CA")
	if err != nil {
		return nil, err
	}
	s := &certSet{ca: filepath.Join(dir, "ca.crt")}
	if err := writePEM(s.ca, "CERTIFICATE", trusted.cert.Raw); err != nil {
		return nil, err
	}
	loopback := net.IPv4(127, 0, 0, 1)
	if s.good, err = trusted.writePair(dir, "upstream", upstreamName, loopback); err != nil {
		return nil, err
	}
	if s.otherCA, err = untrusted.writePair(dir, "otherca", upstreamName, loopback); err != nil {
		return nil, err
	}
	s.otherName, err = trusted.writePair(dir, "othername", otherName)
	return s, err
}
