package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// The attack suite: raw bytes to a real Portcullis in front of a real
// upstream that records what reaches it. Every refused request must get
// our JSON error with the security headers, close its connection, reach
// the upstream not at all (nor anything pipelined behind it), and leave the
// process serving.

const smuggled = "GET /admin/secret HTTP/1.1\r\nHost: app.test\r\n\r\n"

func TestFramingAttacks(t *testing.T) {
	e := startEdge(t, "", "")
	post := "POST /public/x HTTP/1.1\r\nHost: app.test\r\n"
	cases := []struct {
		name   string
		req    string
		status int
	}{
		{"CL.TE", post + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE.CL", post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\n" + smuggled + "\r\n0\r\n\r\n", 400},
		{"TE xchunked", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE space before colon", post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE chunked twice in a list", post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE gzip, chunked", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE identity", post + "Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nabc", 400},
		{"TE two lines", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE two chunked lines", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE tab before value", post + "Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE vertical tab", post + "Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE leading space (fold)", post + " Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE folded value", post + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE after folded line", post + "X-Pad: a\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE bare LF in name", post + "Transfer-Encoding\n: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"TE underscore alias", post + "Transfer_Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"CL underscore alias", post + "Content_Length: 40\r\n\r\n" + smuggled, 400},
		{"bare LF line endings", "POST /public/x HTTP/1.1\nHost: app.test\nContent-Length: 0\n\n" + smuggled, 400},
		{"bare CR", post + "X-A: b\rTransfer-Encoding: chunked\r\n\r\n" + smuggled, 400},
		{"NUL in a value", post + "X-A: b\x00c\r\nContent-Length: 0\r\n\r\n" + smuggled, 400},
		{"CL twice equal", post + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + smuggled, 400},
		{"CL twice differing", post + "Content-Length: 5\r\nContent-Length: 45\r\n\r\nhello" + smuggled, 400},
		{"CL list", post + "Content-Length: 5, 5\r\n\r\nhello" + smuggled, 400},
		{"CL plus sign", post + "Content-Length: +5\r\n\r\nhello" + smuggled, 400},
		{"CL hex", post + "Content-Length: 0x5\r\n\r\nhello" + smuggled, 400},
		{"CL negative", post + "Content-Length: -1\r\n\r\n" + smuggled, 400},
		{"CL tab", post + "Content-Length:\t5\r\n\r\nhello" + smuggled, 400},
		{"HTTP/1.0 with TE", "POST /public/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"HTTP/1.0 with TE and CL", "POST /public/x HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00", 400},
		{"HTTP/1.2", "GET /public/x HTTP/1.2\r\nHost: app.test\r\n\r\n" + smuggled, 400},
		{"no Host", "GET /public/x HTTP/1.1\r\n\r\n" + smuggled, 400},
		{"two Hosts", "GET /public/x HTTP/1.1\r\nHost: app.test\r\nHost: admin.test\r\n\r\n" + smuggled, 400},
		{"double space in request line", "GET  /public/x HTTP/1.1\r\nHost: app.test\r\n\r\n" + smuggled, 400},
		{"reserved method", refusedMethod + " /public/x HTTP/1.1\r\nHost: app.test\r\n\r\n" + smuggled, 400},
		{"Expect other than 100-continue", post + "Expect: 200-ok\r\nContent-Length: 0\r\n\r\n" + smuggled, 417},
		{"headers over 32 KiB", "GET /public/x HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("a", 33<<10) + "\r\n\r\n" + smuggled, 431},
		{"many headers over 32 KiB", "GET /public/x HTTP/1.1\r\nHost: app.test\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("b", 100)+"\r\n", 330) + "\r\n" + smuggled, 431},
		{"chunk size with trailing space", post + "Transfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n" + smuggled, 0},
		{"chunk size bare LF", post + "Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n" + smuggled, 0},
		{"chunk data longer than its size", post + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n" + smuggled, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.up.reset()
			c := dialRaw(t, e.addr)
			c.send(t, tc.req)
			if tc.status == 0 {
				// A malformed chunked body arrives after its head was
				// accepted: the stream ends there, whatever net/http
				// answers; nothing behind it is read as a request.
				readAllResponses(t, c)
			} else {
				resp, body := c.response(t)
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, body)
				}
				var eb struct{ Error, ErrorDescription string }
				if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error != "invalid_request" {
					t.Errorf("body %q, want a JSON invalid_request", body)
				}
				checkSecurityHeaders(t, "refusal", resp.Header)
				if !resp.Close { // ReadResponse folds Connection: close into Close
					t.Errorf("no Connection: close on the refusal")
				}
				if resp.Header.Get(HeaderRequestID) == "" {
					t.Error("no request id on the refusal")
				}
				c.closed(t)
			}
			for _, r := range e.up.got() {
				if tc.status != 0 || strings.Contains(r.uri, "admin") {
					t.Errorf("upstream received %s %s (body %q)", r.method, r.uri, r.body)
				}
			}
			e.healthy(t)
		})
	}
}

// readAllResponses reads until the server closes, returning how many
// responses came.
func readAllResponses(t *testing.T, c *rawConn) int {
	t.Helper()
	n := 0
	for {
		if _, err := c.br.Peek(1); err != nil {
			return n
		}
		c.response(t)
		n++
	}
}

// TestPipelinedAroundARefusal: requests before a refused one are answered,
// the refused one is answered 400, and nothing after it is read.
func TestPipelinedAroundARefusal(t *testing.T) {
	e := startEdge(t, "", "")
	c := dialRaw(t, e.addr)
	c.send(t, "GET /public/one HTTP/1.1\r\nHost: app.test\r\n\r\n"+
		"POST /public/two HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nabc"+
		"POST /public/three HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		smuggled+"GET /public/four HTTP/1.1\r\nHost: app.test\r\n\r\n")
	for i, want := range []int{200, 200, 400} {
		resp, body := c.response(t)
		if resp.StatusCode != want {
			t.Fatalf("response %d: %d %q, want %d", i+1, resp.StatusCode, body, want)
		}
		checkSecurityHeaders(t, fmt.Sprintf("response %d", i+1), resp.Header)
	}
	c.closed(t)
	var uris []string
	for _, r := range e.up.got() {
		uris = append(uris, r.uri)
	}
	if strings.Join(uris, " ") != "/public/one /public/two" {
		t.Errorf("upstream received %q, want only /public/one and /public/two", uris)
	}
	e.healthy(t)
}

// TestLegitimateFraming: what real clients send keeps working through the
// guard: chunked uploads with extensions and trailers, pipelining,
// keep-alive, a CRLF after a POST body, large bodies.
func TestLegitimateFraming(t *testing.T) {
	e := startEdge(t, "", "")
	big := strings.Repeat("x", 1<<20)
	c := dialRaw(t, e.addr)
	c.send(t, "POST /public/a HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"+
		"\r\n"+ // tolerated after a POST (RFC 9112 §2.2)
		"GET /public/b HTTP/1.1\r\nHost: app.test\r\n\r\n"+
		"POST /public/c HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc"+
		"PUT /public/d HTTP/1.1\r\nHost: app.test\r\nContent-Length: "+fmt.Sprint(len(big))+"\r\n\r\n"+big+
		"POST /public/e HTTP/1.1\r\nHost: app.test\r\ntransfer-encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"+
		"GET /public/f HTTP/1.1\r\nHost: app.test\r\nX-Big: "+strings.Repeat("c", 31<<10)+"\r\n\r\n"+ // under 32 KiB
		"GET /public/g HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
	wantBodies := []string{"ok 11", "ok 0", "ok 3", fmt.Sprintf("ok %d", len(big)), "ok 2", "ok 0", "ok 0"}
	for i, want := range wantBodies {
		resp, body := c.response(t)
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("response %d: %d %q, want 200 %q", i+1, resp.StatusCode, body, want)
		}
	}
	c.closed(t)
	got := e.up.got()
	if len(got) != len(wantBodies) || got[0].body != "hello world" || got[3].body != big {
		t.Fatalf("upstream received %d requests", len(got))
	}
}

// TestExpectContinue: Go's client waits for 100 Continue before its body.
func TestExpectContinue(t *testing.T) {
	e := startEdge(t, "", "")
	c := dialRaw(t, e.addr)
	c.send(t, "POST /public/x HTTP/1.1\r\nHost: app.test\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
	resp, _ := c.response(t)
	if resp.StatusCode != 100 {
		t.Fatalf("status %d, want 100 Continue", resp.StatusCode)
	}
	c.send(t, "body")
	resp, body := c.response(t)
	if resp.StatusCode != 200 || body != "ok 4" {
		t.Fatalf("final response %d %q", resp.StatusCode, body)
	}
}
