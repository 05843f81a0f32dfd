package proxy

import (
	"net/http"
	"testing"
)

// sentForwarding is what a client sends to claim another origin: every
// forwarding header family, CGI-alias spellings, and a Connection header
// nominating Portcullis's own X-Forwarded-* for removal.
var sentForwarding = []string{
	"X-Forwarded-For: 203.0.113.7", "X-Forwarded-Host: evil.test", "X-Forwarded-Proto: https",
	"X-Forwarded-Port: 443", "X-Forwarded-Server: evil", "X-Forwarded-User: admin",
	"X-Forwarded-Client-Cert: Hash=abc;Subject=\"CN=admin\"", "X-Forwarded-Ssl: on",
	"X_Forwarded_For: 6.6.6.6", "X.Forwarded.Host: evil.test", "X_Real_IP: 6.6.6.6",
	"Forwarded: for=203.0.113.7;proto=https;host=evil.test",
	"X-Real-IP: 203.0.113.7", "True-Client-IP: 203.0.113.7", "CF-Connecting-IP: 203.0.113.7",
	"X-Client-IP: 203.0.113.7", "X-Cluster-Client-IP: 203.0.113.7", "Fastly-Client-IP: 203.0.113.7",
	"X-Original-Forwarded-For: 203.0.113.7", "X-Original-Host: evil.test", "X-Envoy-External-Address: 203.0.113.7",
	"Connection: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host",
}

// notPassed are the sent headers (canonical as Go stores them) that an
// untrusted peer may never pass on.
var notPassed = []string{
	"X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-User", "X-Forwarded-Client-Cert", "X-Forwarded-Ssl",
	"X_forwarded_for", "X.forwarded.host", "X_real_ip", "Forwarded", "X-Real-Ip", "True-Client-Ip", "Cf-Connecting-Ip",
	"X-Client-Ip", "X-Cluster-Client-Ip", "Fastly-Client-Ip", "X-Original-Forwarded-For", "X-Original-Host",
	"X-Envoy-External-Address",
}

func TestForwardingHeadersFromUntrustedPeer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	resp, body := e.raw(t, "GET", "/public/x", sentForwarding...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	got := e.up.got()
	if len(got) != 1 {
		t.Fatalf("upstream received %d requests", len(got))
	}
	h := got[0].header
	want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "app.test"}
	for k, v := range want {
		if g := h.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("upstream %s = %q, want exactly %q", k, g, v)
		}
	}
	for _, k := range notPassed {
		if v, ok := h[k]; ok {
			t.Errorf("upstream received %s: %q from an untrusted peer", k, v)
		}
	}
}

func TestForwardingHeadersFromTrustedPeer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "trusted_proxies: [127.0.0.1]\n")
	resp, body := e.raw(t, "GET", "/byip", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https",
		"X-Real-IP: 203.0.113.7", "X_Forwarded_For: 6.6.6.6", "X_Real_IP: 6.6.6.6",
		"Connection: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host",
		"Authorization: Bearer "+e.token(t, "alice", "", nil))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	h := e.up.got()[0].header
	want := map[string]string{"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.test", "X-Real-Ip": "203.0.113.7"}
	for k, v := range want {
		if g := h.Values(k); len(g) != 1 || g[0] != v {
			t.Errorf("upstream %s = %q, want exactly %q", k, g, v)
		}
	}
	for _, k := range []string{"X_forwarded_for", "X_real_ip"} {
		if v, ok := h[k]; ok {
			t.Errorf("upstream received alias %s: %q", k, v)
		}
	}
	// The rate limit keyed by client IP counts the client behind the
	// proxy, whatever port or mapping the proxy wrote: one more request
	// from the same client, spelled differently, is over the limit.
	resp, _ = e.raw(t, "GET", "/byip", "X-Forwarded-For: [::ffff:203.0.113.7]:5555", "Authorization: Bearer "+e.token(t, "bob", "", nil))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("second request from the same client IP: status %d, want 429", resp.StatusCode)
	}
}
