package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestLimitUpgrade(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name              string
		proto             int // minor version of HTTP/1.x
		upgrade           []string
		connection        string
		wantUpgrade       string
		wantConnection    string
		wantHTTP2Settings bool
	}{
		{"websocket kept", 1, []string{"websocket"}, "Upgrade", "websocket", "Upgrade", false},
		{"WebSocket any case", 1, []string{"WebSocket"}, "keep-alive, Upgrade", "WebSocket", "keep-alive, Upgrade", false},
		{"h2c removed", 1, []string{"h2c"}, "Upgrade, HTTP2-Settings", "", "", false},
		{"H2C removed", 1, []string{"H2C"}, "upgrade, http2-settings, keep-alive", "", "keep-alive", false},
		{"list removed", 1, []string{"websocket, h2c"}, "Upgrade", "", "", false},
		{"two lines removed", 1, []string{"websocket", "h2c"}, "Upgrade", "", "", false},
		{"other protocol removed", 1, []string{"TLS/1.2"}, "Upgrade", "", "", false},
		{"HTTP/1.0 ignored", 0, []string{"websocket"}, "Upgrade", "", "", false},
		{"no upgrade", 1, nil, "keep-alive", "", "keep-alive", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{ProtoMajor: 1, ProtoMinor: tc.proto, Header: http.Header{
				"Connection": {tc.connection}, "Http2-Settings": {"AAMAAABkAARAAAAAAAIAAAAA"},
			}}
			if tc.upgrade != nil {
				r.Header["Upgrade"] = tc.upgrade
			}
			limitUpgrade(r)
			if got := r.Header.Get("Upgrade"); got != tc.wantUpgrade {
				t.Errorf("Upgrade %q, want %q", got, tc.wantUpgrade)
			}
			if got := r.Header.Get("Connection"); got != tc.wantConnection {
				t.Errorf("Connection %q, want %q", got, tc.wantConnection)
			}
			if _, ok := r.Header["Http2-Settings"]; ok != tc.wantHTTP2Settings {
				t.Errorf("HTTP2-Settings kept: %v", ok)
			}
		})
	}
}

// TestSecurityHeadersAfterEarlyHints: the reverse proxy clears the header
// map after relaying a 1xx; the final response still carries our headers.
func TestSecurityHeadersAfterEarlyHints(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	conn, err := net.Dial("tcp", e.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /public/hints HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 103 {
		t.Fatalf("first response %v, %v; want 103", resp, err)
	}
	if resp, err = http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("final response %v, %v", resp, err)
	}
	for _, name := range []string{"X-Content-Type-Options", "Strict-Transport-Security", "X-Frame-Options"} {
		if resp.Header.Get(name) == "" {
			t.Errorf("final response lacks %s: %v", name, resp.Header)
		}
	}
	if resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("X-Frame-Options %q, want ours (DENY)", resp.Header.Get("X-Frame-Options"))
	}
}
