package dnspool

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/upstreamtier/upstreamtier/internal/testcert"

	"github.com/miekg/dns"
)

// dotServerName is the name in the test DoT server's certificate.
const dotServerName = "dot.dnspool.test"

// tlsConfigs returns a server configuration with a certificate for
// dotServerName and a client one that trusts it.
func tlsConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	ca, err := testcert.NewIssuer("dnspool test CA")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.WritePair(dir, "server", dotServerName)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(pair.Cert, pair.Key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.crt")
	if err := ca.WriteCA(caFile); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{cert}}, &tls.Config{RootCAs: roots, ServerName: dotServerName}
}

// An attempt waits for the TLS handshake of a new connection only until
// its deadline, and may let go of it then. The connection, once the
// handshake is over and the query written, is closed, never pooled: its
// answer would come to whichever query drew it next.
func TestDialAbandoned(t *testing.T) {
	serverTLS, clientTLS := tlsConfigs(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			accepted <- c
		}
	}()
	pool := New(l.Addr().String(), Options{TLS: clientTLS})
	defer pool.Close(0)

	_, wire := query(t)
	c, err := pool.Send(context.Background(), wire, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	raw := <-accepted // the handshake waits until the server speaks
	defer raw.Close()
	// The attempt's deadline passes; nothing from the server can end it.
	if _, err := c.Await(make([]byte, 512), time.Now()); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Await during the handshake: %v, want a timeout", err)
	}
	c.Done(os.ErrDeadlineExceeded)

	// The server shakes hands; the query comes, then the connection closes.
	srv := &dns.Conn{Conn: tls.Server(raw, serverTLS)}
	srv.SetReadDeadline(time.Now().Add(time.Minute)) // a hang guard, not a timing assertion
	if _, err := srv.ReadMsg(); err != nil {
		t.Fatalf("the query written after the handshake: %v", err)
	}
	if _, err := srv.ReadMsg(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the query: %v, want the connection closed", err)
	}
	if n := pool.InUse(); n != 0 || len(pool.idle) != 0 {
		t.Fatalf("%d connections in use, %d idle; want none", n, len(pool.idle))
	}
}
