package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

// verifyPair checks p's certificate against the CA file for name and returns the error.
func verifyPair(t *testing.T, caFile string, p keyPair, name string) error {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA file holds no certificate")
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name})
	return err
}

func TestWriteCerts(t *testing.T) {
	s, err := writeCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyPair(t, s.ca, s.good, upstreamName); err != nil {
		t.Errorf("good certificate for %s: %v", upstreamName, err)
	}
	if err := verifyPair(t, s.ca, s.good, "127.0.0.1"); err != nil {
		t.Errorf("good certificate for 127.0.0.1: %v", err)
	}
	if err := verifyPair(t, s.ca, s.otherCA, upstreamName); err == nil {
		t.Error("a certificate of the untrusted CA verified")
	}
	if err := verifyPair(t, s.ca, s.otherName, upstreamName); err == nil {
		t.Errorf("a certificate for %s verified as %s", otherName, upstreamName)
	}
	if err := verifyPair(t, s.ca, s.otherName, otherName); err != nil {
		t.Errorf("the other name's certificate is not valid for %s: %v", otherName, err)
	}
}
