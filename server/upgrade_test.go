package server

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// h2Request is an HTTP/2 connection preface, an empty SETTINGS frame and a
// HEADERS frame for GET path (HPACK literals, no Huffman, so the path is
// visible in the bytes), as an h2c client sends after a 101.
func h2Request(path string) []byte {
	var hdr bytes.Buffer
	hdr.Write([]byte{0x82, 0x86}) // :method GET, :scheme http (static table)
	hdr.WriteByte(0x04)           // :path, literal without indexing, indexed name
	hdr.WriteByte(byte(len(path)))
	hdr.WriteString(path)
	hdr.WriteByte(0x01) // :authority
	hdr.WriteByte(byte(len("app.test")))
	hdr.WriteString("app.test")
	frame := func(typ, flags byte, stream uint32, payload []byte) []byte {
		var f [9]byte
		f[0], f[1], f[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		f[3], f[4] = typ, flags
		binary.BigEndian.PutUint32(f[5:], stream)
		return append(f[:], payload...)
	}
	out := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	out = append(out, frame(0x4, 0, 0, nil)...)               // SETTINGS
	out = append(out, frame(0x1, 0x4|0x1, 1, hdr.Bytes())...) // HEADERS, END_HEADERS|END_STREAM
	return out
}

// TestH2CSmuggling is the attack end to end: an h2c upgrade on a public
// route, then HTTP/2 for a protected path on the same connection. The
// upgrade must be stripped (the request forwarded as an ordinary one), and
// the HTTP/2 bytes never reach the upstream.
func TestH2CSmuggling(t *testing.T) {
	e := startEdge(t, "", "")
	for _, tc := range []struct{ name, upgrade, connection string }{
		{"h2c", "h2c", "Upgrade, HTTP2-Settings"},
		{"H2C upper case", "H2C", "upgrade, http2-settings"},
		{"h2c and websocket listed", "h2c, websocket", "Upgrade"},
		{"websocket then h2c", "websocket, h2c", "Upgrade, HTTP2-Settings"},
		{"padded", " h2c ", "keep-alive, Upgrade"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.up.reset()
			c := dialRaw(t, e.addr)
			c.send(t, "GET /public/x HTTP/1.1\r\nHost: app.test\r\nConnection: "+tc.connection+
				"\r\nUpgrade: "+tc.upgrade+"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
			resp, body := c.response(t)
			if resp.StatusCode != 200 || body != "ok 0" {
				t.Fatalf("upgrade attempt answered %d %q, want the ordinary 200", resp.StatusCode, body)
			}
			checkSecurityHeaders(t, "ordinary answer", resp.Header)
			c.send(t, string(h2Request("/admin/secret")))
			resp, _ = c.response(t)
			if resp.StatusCode != 400 {
				t.Errorf("HTTP/2 preface answered %d, want 400", resp.StatusCode)
			}
			checkSecurityHeaders(t, "preface refusal", resp.Header)
			c.closed(t)
			got := e.up.got()
			if len(got) != 1 {
				t.Fatalf("upstream received %d requests, want the one ordinary request", len(got))
			}
			h := got[0].header
			if h.Get("Upgrade") != "" || h.Get("Http2-Settings") != "" || strings.Contains(strings.ToLower(h.Get("Connection")), "upgrade") {
				t.Errorf("upstream received upgrade headers: %v", h)
			}
			e.up.mu.Lock()
			tunnel := e.up.tunnel
			e.up.mu.Unlock()
			if len(tunnel) > 0 {
				t.Errorf("upstream received %d bytes through a switched connection: %q", len(tunnel), tunnel)
			}
			e.healthy(t)
		})
	}
}

// TestWebSocketThroughGuard: the one allowed upgrade still tunnels (after
// the decision), with our headers on the 101, and the guard lets the
// tunnel's bytes pass unparsed.
func TestWebSocketThroughGuard(t *testing.T) {
	e := startEdge(t, "", "")
	c := dialRaw(t, e.addr)
	c.send(t, "GET /public/ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	checkSecurityHeaders(t, "101", resp.Header)
	// Bytes that are no HTTP request at all: the guard must not read them.
	c.send(t, "\x81\x00\r\n")
	echo := make([]byte, 4)
	if _, err := io.ReadFull(c.br, echo); err != nil || string(echo) != "\x81\x00\r\n" {
		t.Fatalf("echo %q, %v", echo, err)
	}
}

// TestEarlyHintsKeepSecurityHeaders: the upstream sends 103 then 200; the
// final response carries our headers (the reverse proxy clears the header
// map after relaying the 103) and the request id.
func TestEarlyHintsKeepSecurityHeaders(t *testing.T) {
	e := startEdge(t, "", "")
	c := dialRaw(t, e.addr)
	c.send(t, "GET /public/hints HTTP/1.1\r\nHost: app.test\r\nX-Request-Id: hints-1\r\n\r\n")
	resp, _ := c.response(t)
	if resp.StatusCode != 103 || resp.Header.Get("Link") == "" {
		t.Fatalf("first response %d %v, want the 103 with its Link", resp.StatusCode, resp.Header)
	}
	resp, body := c.response(t)
	if resp.StatusCode != 200 || body != "hinted" {
		t.Fatalf("final response %d %q", resp.StatusCode, body)
	}
	checkSecurityHeaders(t, "final response after 103", resp.Header)
	if got := resp.Header.Get(HeaderRequestID); got != "hints-1" {
		t.Errorf("request id %q on the final response, want hints-1", got)
	}
	// Still a working keep-alive connection.
	c.send(t, "GET /public/x HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp, _ := c.response(t); resp.StatusCode != 200 {
		t.Errorf("next request %d", resp.StatusCode)
	}
}

// TestOptionsStar: answered by Portcullis with the headers, on both
// listeners, and never forwarded.
func TestOptionsStar(t *testing.T) {
	e := startEdge(t, "", "")
	for _, addr := range []string{e.addr, e.admin} {
		c := dialRaw(t, addr)
		c.send(t, "OPTIONS * HTTP/1.1\r\nHost: app.test\r\n\r\n")
		resp, _ := c.response(t)
		if resp.StatusCode != 200 {
			t.Errorf("%s: OPTIONS * answered %d", addr, resp.StatusCode)
		}
		checkSecurityHeaders(t, "OPTIONS * on "+addr, resp.Header)
	}
	if got := e.up.got(); len(got) != 0 {
		t.Errorf("upstream received %+v", got)
	}
}

// TestAdminRefusalsCarryHeaders: the admin listener is guarded too.
func TestAdminRefusalsCarryHeaders(t *testing.T) {
	e := startEdge(t, "", "")
	c := dialRaw(t, e.admin)
	c.send(t, "GET /health HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	resp, _ := c.response(t)
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	checkSecurityHeaders(t, "admin refusal", resp.Header)
	c.closed(t)
}

// TestStreamingThroughGuard: a streamed response is flushed as it comes.
func TestStreamingThroughGuard(t *testing.T) {
	e := startEdge(t, "", "")
	c := dialRaw(t, e.addr)
	c.send(t, "GET /public/stream HTTP/1.1\r\nHost: app.test\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	checkSecurityHeaders(t, "stream", resp.Header)
	line := make([]byte, len("first\n"))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(resp.Body, line); err != nil || string(line) != "first\n" {
		t.Fatalf("first part %q, %v (not flushed?)", line, err)
	}
	close(e.up.release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}
}
