package main

import (
	"net"
	"os"
	"path/filepath"

	"github.com/upstreamtier/upstreamtier/internal/testcert"
)

// upstreamName is the name the forwarders verify in the encrypted upstream's certificate.
const upstreamName = "upstream.bench.test"

// otherName is the name in the certificate of an upstream that presents someone else's.
const otherName = "other.bench.test"

// keyPair is a certificate and its private key, as PEM files.
type keyPair = testcert.KeyPair

// certSet is the throwaway PKI of the encrypted scenarios, written as PEM files into one directory.
type certSet struct {
	ca        string  // the CA certificate the forwarders trust
	good      keyPair // upstreamName and 127.0.0.1, issued by ca
	otherCA   keyPair // the same names, issued by a CA nobody trusts
	otherName keyPair // otherName only, issued by ca
}

// writeCerts makes a fresh certSet in dir.
func writeCerts(dir string) (*certSet, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	trusted, err := testcert.NewIssuer("bench trusted CA")
	if err != nil {
		return nil, err
	}
	untrusted, err := testcert.NewIssuer("bench untrusted CA")
	if err != nil {
		return nil, err
	}
	s := &certSet{ca: filepath.Join(dir, "ca.crt")}
	if err := trusted.WriteCA(s.ca); err != nil {
		return nil, err
	}
	loopback := net.IPv4(127, 0, 0, 1)
	if s.good, err = trusted.WritePair(dir, "upstream", upstreamName, loopback); err != nil {
		return nil, err
	}
	if s.otherCA, err = untrusted.WritePair(dir, "otherca", upstreamName, loopback); err != nil {
		return nil, err
	}
	s.otherName, err = trusted.WritePair(dir, "othername", otherName)
	return s, err
}
