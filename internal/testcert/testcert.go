// Package testcert makes throwaway certificate authorities and server
// certificates, written as PEM files, for the tests and the bench to run
// encrypted upstreams on loopback.
package testcert

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

// KeyPair is a certificate and its private key, as PEM files.
type KeyPair struct{ Cert, Key string }

// Issuer is a CA that can sign certificates.
type Issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewIssuer returns a fresh self-signed CA called cn.
func NewIssuer(cn string) (*Issuer, error) {
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
	return &Issuer{cert: cert, key: key}, err
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

// WriteCA writes the CA's certificate to path, for clients to trust.
func (ca *Issuer) WriteCA(path string) error {
	return writePEM(path, "CERTIFICATE", ca.cert.Raw)
}

// issue returns a server certificate for the DNS name and IPs, signed by ca, and its key, both DER.
func (ca *Issuer) issue(name string, ips ...net.IP) (certDER, keyDER []byte, err error) {
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

// WritePair issues a certificate for name and ips with ca and writes it and its key as DIR/BASE.crt and DIR/BASE.key.
func (ca *Issuer) WritePair(dir, base, name string, ips ...net.IP) (KeyPair, error) {
	p := KeyPair{Cert: filepath.Join(dir, base+".crt"), Key: filepath.Join(dir, base+".key")}
	certDER, keyDER, err := ca.issue(name, ips...)
	if err != nil {
		return p, err
	}
	if err := writePEM(p.Cert, "CERTIFICATE", certDER); err != nil {
		return p, err
	}
	return p, writePEM(p.Key, "EC PRIVATE KEY", keyDER)
}

// writePEM writes der as one PEM block of type typ.
func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
