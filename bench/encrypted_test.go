package main

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestPickTransports(t *testing.T) {
	got, err := pickTransports([]string{"doq", "dot"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].id != "dot" || got[1].id != "doq" {
		t.Errorf("pickTransports(doq, dot) = %v, want dot then doq, in run order", got)
	}
	if _, err := pickTransports([]string{"dot", "dnscrypt"}); err == nil {
		t.Error("an unknown transport was accepted")
	}
}

func TestEncStanza(t *testing.T) {
	doh := encTransports[1]
	for _, tc := range []struct {
		fw, t2 string
		want   []string
	}{
		{"upstreamtier", "", []string{
			"tier t1 https://127.0.0.1:8443 {", "tls /ca.crt", "tls_servername " + upstreamName, "\n            doh_method POST\n        }\n    }"}},
		{"upstreamtier", "127.0.0.1:53", []string{"tier t1 https://127.0.0.1:8443 {", "}\n        tier t2 127.0.0.1:53\n    }"}},
		{"forward", "", []string{"forward . https://127.0.0.1:8443 {", "tls /ca.crt", "tls_servername " + upstreamName, "\n        doh_method POST\n", "max_fails 1"}},
		{"forward", "127.0.0.1:53", []string{"forward . https://127.0.0.1:8443 127.0.0.1:53 {"}},
	} {
		got := encStanza(tc.fw, doh, 8443, "/ca.crt", tc.t2)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("encStanza(%s, DoH, t2 %q) =\n%s\nwithout %q", tc.fw, tc.t2, got, w)
			}
		}
	}
	if got := encStanza("upstreamtier", encTransports[0], 853, "/ca.crt", ""); strings.Contains(got, "doh_method") || !strings.Contains(got, "tls://127.0.0.1:853") {
		t.Errorf("DoT stanza:\n%s", got)
	}
}

func TestEncBlock(t *testing.T) {
	got := encBlock("quic", 8853, keyPair{Cert: "/u.crt", Key: "/u.key"}, answerIP)
	for _, w := range []string{"quic://.:8853 {", "bind 127.0.0.1", "tls /u.crt /u.key", "IN A " + answerIP, "rcode NOERROR"} {
		if !strings.Contains(got, w) {
			t.Errorf("encBlock =\n%s\nwithout %q", got, w)
		}
	}
}

func TestStartError(t *testing.T) {
	path := t.TempDir() + "/log"
	os.WriteFile(path, []byte("maxprocs: ...\nplugin/upstreamtier: Corefile:5 - Error during parsing: transport https:// is not supported\nmore\n"), 0o644)
	if got := startError(path, errors.New("not answering")); !strings.HasPrefix(got, "plugin/upstreamtier: Corefile:5 - Error during parsing") {
		t.Errorf("startError = %q, want the log's error line", got)
	}
	if got := startError(path+".none", errors.New("not answering")); got != "not answering" {
		t.Errorf("startError without a log = %q, want the error", got)
	}
}
