package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// headCases are request heads and how the guard must frame them; they also
// seed FuzzParseHead.
var headCases = []struct {
	name   string
	head   string
	status int // 0: accepted
	body   bodyKind
	length int64
}{
	{"plain GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, bodyNone, 0},
	{"content length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n", 0, bodyLength, 12},
	{"content length zero", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0, bodyNone, 0},
	{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 0, bodyChunked, 0},
	{"chunked any case", "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: CHUNKED \r\n\r\n", 0, bodyChunked, 0},
	{"HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0, bodyNone, 0},
	{"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\n\r\n", 0, bodyNone, 0},
	{"expect continue", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", 0, bodyLength, 1},
	{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, 0},
	{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, 0, 0},
	{"TE list", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400, 0, 0},
	{"TE twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, 0},
	{"TE tab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n", 400, 0, 0},
	{"TE xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 400, 0, 0},
	{"TE on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, 0, 0},
	{"TE space before colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", 400, 0, 0},
	{"TE alias", "POST / HTTP/1.1\r\nHost: a\r\nTRANSFER_ENCODING: chunked\r\n\r\n", 400, 0, 0},
	{"CL twice", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400, 0, 0},
	{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3,3\r\n\r\n", 400, 0, 0},
	{"CL too long", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n", 400, 0, 0},
	{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400, 0, 0},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400, 0, 0},
	{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400, 0, 0},
	{"bare CR", "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400, 0, 0},
	{"control in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: \x01\r\n\r\n", 400, 0, 0},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", 400, 0, 0},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400, 0, 0},
	{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, 0, 0},
	{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0, 0},
	{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, 0, 0},
	{"preface", "PRI * HTTP/2.0\r\n\r\n", 400, 0, 0},
	{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400, 0, 0},
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, 0, 0},
	{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0},
	{"reserved method", refusedMethod + " / HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0},
	{"expect other", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", 417, 0, 0},
}

func TestParseHead(t *testing.T) {
	t.Parallel()
	for _, tc := range headCases {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.head)
			end, _ := findHeadEnd(b, 0)
			if end != len(b) {
				t.Fatalf("head end %d, want %d", end, len(b))
			}
			h, ref := parseHead(b)
			if ref.status != tc.status {
				t.Fatalf("status %d (%s), want %d", ref.status, ref.reason, tc.status)
			}
			if tc.status == 0 && (h.body != tc.body || h.length != tc.length) {
				t.Errorf("framing %v/%d, want %v/%d", h.body, h.length, tc.body, tc.length)
			}
		})
	}
}

func TestParseHeadAllocatesNothing(t *testing.T) {
	b := []byte("POST /orders/1?x=y HTTP/1.1\r\nHost: app.test\r\nAuthorization: Bearer abc.def.ghi\r\n" +
		"Content-Type: application/json\r\nContent-Length: 17\r\nAccept: */*\r\n\r\n")
	if n := testing.AllocsPerRun(100, func() { parseHead(b) }); n != 0 {
		t.Errorf("parseHead allocates %v times", n)
	}
}

// FuzzParseHead checks the guard against net/http: a head the guard
// accepts, net/http reads too, with the same body framing. (The guard may
// refuse what net/http accepts; never the reverse.)
func FuzzParseHead(f *testing.F) {
	for _, tc := range headCases {
		f.Add([]byte(tc.head))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end, _ := findHeadEnd(b, 0)
		if end == 0 {
			return
		}
		h, ref := parseHead(b[:end])
		if ref.status != 0 {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:end])))
		if err != nil {
			t.Fatalf("guard accepted a head net/http refuses (%v): %q", err, b[:end])
		}
		chunked := len(req.TransferEncoding) == 1 && req.TransferEncoding[0] == "chunked"
		switch h.body {
		case bodyChunked:
			if !chunked {
				t.Fatalf("guard: chunked; net/http: %v %d", req.TransferEncoding, req.ContentLength)
			}
		case bodyLength:
			if chunked || req.ContentLength != h.length {
				t.Fatalf("guard: length %d; net/http: %v %d", h.length, req.TransferEncoding, req.ContentLength)
			}
		default:
			if chunked || req.ContentLength > 0 {
				t.Fatalf("guard: no body; net/http: %v %d", req.TransferEncoding, req.ContentLength)
			}
		}
	})
}

var chunkCases = []struct {
	name string
	body string
	end  int // 0: malformed; -1: incomplete
}{
	{"one chunk", "5\r\nhello\r\n0\r\n\r\nGET", 15},
	{"extension", "5;a=b\r\nhello\r\n0;c\r\n\r\n", 21},
	{"trailer", "1\r\nx\r\n0\r\nX-T: 1\r\n\r\n", 19},
	{"upper hex", "A\r\n0123456789\r\n0\r\n\r\n", 20},
	{"incomplete", "5\r\nhel", -1},
	{"size space", "5 \r\nhello\r\n0\r\n\r\n", 0},
	{"bare LF size", "5\nhello\r\n0\r\n\r\n", 0},
	{"data overrun", "3\r\nhello\r\n0\r\n\r\n", 0},
	{"no digits", ";x\r\n", 0},
	{"too many digits", "0000000000000001\r\nx\r\n0\r\n\r\n", 0},
	{"trailer fold", "0\r\nX: a\r\n b\r\n\r\n", 0},
	{"trailer without colon", "0\r\nGET / HTTP/1.1\r\n\r\n", 0},
	{"bare LF end", "0\r\n\n", 0},
}

func TestChunkScanner(t *testing.T) {
	t.Parallel()
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{len(tc.body), 1, 2} {
				var s chunkScanner
				n, res := 0, chunkMore
				for i := 0; i < len(tc.body) && res == chunkMore; i += step {
					k, r := s.feed([]byte(tc.body[i:min(i+step, len(tc.body))]))
					n, res = i+k, r
				}
				switch {
				case tc.end == -1 && res != chunkMore:
					t.Errorf("step %d: result %d, want more", step, res)
				case tc.end == 0 && res != chunkBad:
					t.Errorf("step %d: result %d, want malformed", step, res)
				case tc.end > 0 && (res != chunkDone || n != tc.end):
					t.Errorf("step %d: result %d at %d, want done at %d", step, res, n, tc.end)
				}
			}
		})
	}
}

// FuzzChunkScanner: feeding a body in pieces decides exactly as feeding it
// whole, and never reads past its end.
func FuzzChunkScanner(f *testing.F) {
	for _, tc := range chunkCases {
		f.Add([]byte(tc.body), uint8(1))
	}
	f.Fuzz(func(t *testing.T, b []byte, step uint8) {
		var whole chunkScanner
		n1, r1 := whole.feed(b)
		if n1 > len(b) {
			t.Fatalf("offset %d past %d bytes", n1, len(b))
		}
		st := max(int(step), 1)
		var parts chunkScanner
		n2, r2 := 0, chunkMore
		for i := 0; i < len(b) && r2 == chunkMore; i += st {
			k, r := parts.feed(b[i:min(i+st, len(b))])
			n2, r2 = i+k, r
		}
		if n1 != n2 || r1 != r2 {
			t.Fatalf("whole: %d at %d; in steps of %d: %d at %d", r1, n1, st, r2, n2)
		}
	})
}

// memConn is a net.Conn that reads from a fixed input in small, uneven
// pieces (as a socket delivers them).
type memConn struct {
	net.Conn
	in    []byte
	piece int
}

func (c *memConn) Read(p []byte) (int, error) {
	if len(c.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.piece)], c.in)
	c.in = c.in[n:]
	c.piece = c.piece%7 + 3
	return n, nil
}
func (c *memConn) SetReadDeadline(time.Time) error { return nil }

// FuzzGuard runs a byte stream through the guard and parses what comes out
// as net/http would: every request it yields is unambiguously framed, a
// stand-in is the last thing it yields, and it invents nothing else.
func FuzzGuard(f *testing.F) {
	for _, tc := range headCases {
		f.Add([]byte(tc.head + "abc" + tc.head))
	}
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		// Socket pieces and reader buffers of sizes that vary with the input.
		g := newGuard(&memConn{in: append([]byte(nil), in...), piece: 1 + len(in)%5000}, nil)
		var out []byte
		buf := make([]byte, 1+(len(in)*7)%9000)
		for len(out) <= len(in)+len(refusedRequest) {
			n, err := g.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
		}
		if len(out) > len(in)+len(refusedRequest) {
			t.Fatalf("guard yielded %d bytes from %d", len(out), len(in))
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return // a request cut short by a refusal or the input's end
			}
			if req.Method == refusedMethod {
				if rest, _ := io.ReadAll(br); len(rest) > 0 {
					t.Fatalf("bytes after the stand-in: %q", rest)
				}
				return
			}
			if len(req.TransferEncoding) > 0 && (len(req.Header["Content-Length"]) > 0 || req.TransferEncoding[0] != "chunked") {
				t.Fatalf("ambiguous request passed: %v %v", req.TransferEncoding, req.Header)
			}
			if len(req.Header["Content-Length"]) > 1 || strings.Contains(strings.Join(req.Header["Content-Length"], ""), ",") {
				t.Fatalf("repeated Content-Length passed: %v", req.Header)
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				return
			}
		}
	})
}

// TestGuardLargeReads: a reader asking for more than the head buffer at
// once loses nothing.
func TestGuardLargeReads(t *testing.T) {
	t.Parallel()
	var in strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&in, "POST /%d HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", i)
	}
	g := newGuard(&memConn{in: []byte(in.String()), piece: 1 << 20}, nil)
	var out []byte
	buf := make([]byte, 64<<10)
	var err error
	for {
		n, rerr := g.Read(buf)
		out = append(out, buf[:n]...)
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
	}
	if err != nil || string(out) != in.String() {
		t.Fatalf("guard changed the stream (%v): %d bytes in, %d out", err, in.Len(), len(out))
	}
}
