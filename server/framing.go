package server

import (
	"net/http"
	"net/url"
)

// Request framing, decided on the bytes of the connection (RFC 9112 §6.3).
//
// net/http is lenient where a gate must not be: it drops Content-Length when
// Transfer-Encoding: chunked is present, reads bare LF as a line end, ignores
// Transfer-Encoding on HTTP/1.0, and answers its own 400/431/501 without our
// security headers. An upstream that frames the same bytes differently would
// see a second request that was never decided (request smuggling). So every
// request head is checked here first, strictly, and a head that could mean
// two things is refused: net/http gets a neutral stand-in request instead,
// which our handler answers, and then end of stream.

// maxHeadBytes bounds a request head (request line, fields and the empty
// line): the server's one header limit. Beyond it: 431.
const maxHeadBytes = maxHeaderBytes

// maxLeadingCRLF is how many empty lines before a request line are skipped
// (RFC 9112 §2.2: old clients send one after a POST body).
const maxLeadingCRLF = 2

// refusal is why a request is answered by Portcullis itself and the
// connection closed. status 0 means the request is accepted.
type refusal struct {
	status int
	reason string // fixed text for the client and the log; never request data
}

// Refusals. Each is a constant text: nothing from the request is echoed.
var (
	refuseMalformed  = refusal{http.StatusBadRequest, "malformed request head"}
	refuseBareLF     = refusal{http.StatusBadRequest, "line ending without CR (RFC 9112 §2.2)"}
	refuseObsFold    = refusal{http.StatusBadRequest, "folded header line (RFC 9112 §5.2)"}
	refuseFieldName  = refusal{http.StatusBadRequest, "invalid header field name (RFC 9112 §5.1)"}
	refuseFieldValue = refusal{http.StatusBadRequest, "invalid header field value"}
	refuseVersion    = refusal{http.StatusBadRequest, "unsupported HTTP version"}
	refusePreface    = refusal{http.StatusBadRequest, "HTTP/2 connection preface is not accepted on this connection"}
	refuseHost       = refusal{http.StatusBadRequest, "missing, repeated or malformed Host (RFC 9112 §3.2)"}
	refuseCLTE       = refusal{http.StatusBadRequest, "both Content-Length and Transfer-Encoding (RFC 9112 §6.3)"}
	refuseTE         = refusal{http.StatusBadRequest, "Transfer-Encoding other than chunked (RFC 9112 §6.3)"}
	refuseTE10       = refusal{http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)"}
	refuseCL         = refusal{http.StatusBadRequest, "invalid or repeated Content-Length (RFC 9112 §6.3)"}
	refuseAlias      = refusal{http.StatusBadRequest, "framing header spelled with '_'"}
	refuseReserved   = refusal{http.StatusBadRequest, "reserved method"}
	refuseExpect     = refusal{http.StatusExpectationFailed, "unsupported Expect (RFC 9110 §10.1.1)"}
	refuseTooLarge   = refusal{http.StatusRequestHeaderFieldsTooLarge, "request headers exceed 32 KiB"}
)

// bodyKind is how a request's body is delimited.
type bodyKind uint8

const (
	bodyNone    bodyKind = iota // no body (RFC 9112 §6.3 rule 7 for requests)
	bodyLength                  // Content-Length bytes
	bodyChunked                 // chunked transfer coding
)

// head is what the guard needs to know about an accepted request head.
type head struct {
	body   bodyKind
	length int64 // bodyLength: the Content-Length
}

// findHeadEnd returns the length of the request head at the start of b
// (through its empty line), or 0 when b does not hold a whole head yet. from
// is where the previous call stopped (a line start), so a slow client's head
// is not rescanned; next is where to resume. A bare LF ends a line here, so a
// head using it is complete (and refused by parseHead) without waiting.
func findHeadEnd(b []byte, from int) (end, next int) {
	for {
		i := indexLF(b[from:])
		if i < 0 {
			return 0, from
		}
		line := b[from : from+i]
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			if from > 0 { // an empty line after the request line ends the head
				return from + i + 1, from + i + 1
			}
		}
		from += i + 1
	}
}

// parseHead checks a whole request head (as found by findHeadEnd) and
// returns its body framing, or why it is refused. It allocates nothing.
func parseHead(b []byte) (head, refusal) {
	var (
		h                    head
		hosts, cls, tes      int
		te, cl               []byte
		http10               bool
		sawCLTab, sawTETab   bool
		expectOK, sawExpect  = true, false
		line                 []byte
		rest                 = b
		ok                   bool
		method               []byte
		versionOK, isPreface bool
		requestLine          = true
	)
	for len(rest) > 0 {
		line, rest, ok = cutLine(rest)
		if !ok {
			return h, refuseBareLF
		}
		if requestLine {
			requestLine = false
			method, versionOK, http10, isPreface = parseRequestLine(line)
			switch {
			case isPreface:
				return h, refusePreface
			case method == nil:
				return h, refuseMalformed
			case !versionOK:
				return h, refuseVersion
			case string(method) == refusedMethod:
				return h, refuseReserved
			}
			continue
		}
		if len(line) == 0 {
			break // the empty line ending the head
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold: a server MUST reject it or unfold it; unfolding is
			// where parsers disagree, so reject (RFC 9112 §5.2).
			return h, refuseObsFold
		}
		colon := indexByte(line, ':')
		if colon <= 0 || !isToken(line[:colon]) {
			// Includes "Transfer-Encoding : chunked": no whitespace is
			// allowed between name and colon (RFC 9112 §5.1).
			return h, refuseFieldName
		}
		name, raw := line[:colon], line[colon+1:]
		value := trimOWS(raw)
		if !validValue(value) {
			return h, refuseFieldValue
		}
		switch len(name) {
		case 4:
			if foldEq(name, "host", false) {
				hosts++
				if !validHost(value) {
					return h, refuseHost
				}
			}
		case 6:
			if foldEq(name, "expect", false) {
				sawExpect = true
				// net/http answers anything but 100-continue with its own
				// 417; answer it ourselves so it carries our headers.
				expectOK = expectOK && foldEq(value, "100-continue", false)
			}
		case 14:
			if foldEq(name, "content-length", true) {
				if !foldEq(name, "content-length", false) {
					return h, refuseAlias
				}
				cls++
				cl = value
				sawCLTab = sawCLTab || indexByte(raw, '\t') >= 0
			}
		case 17:
			if foldEq(name, "transfer-encoding", true) {
				if !foldEq(name, "transfer-encoding", false) {
					return h, refuseAlias
				}
				tes++
				te = value
				sawTETab = sawTETab || indexByte(raw, '\t') >= 0
			}
		}
	}
	// RFC 9112 §3.2: exactly one Host in HTTP/1.1; at most one in 1.0.
	if hosts > 1 || (!http10 && hosts == 0) {
		return h, refuseHost
	}
	switch {
	case tes > 0 && http10:
		// RFC 9112 §6.1: a 1.0 recipient cannot be relied on to honour
		// Transfer-Encoding, so a 1.0 message carrying one is faulty.
		return h, refuseTE10
	case tes > 0 && cls > 0:
		// RFC 9112 §6.3 ¶3: such a message may be an attempt at request
		// smuggling; the connection must close after it.
		return h, refuseCLTE
	case tes > 1 || (tes == 1 && (sawTETab || !foldEq(te, "chunked", false))):
		// Only one coding is understood; a list, a repeat or an unusual
		// spelling is read differently by different parsers.
		return h, refuseTE
	case tes == 1:
		h.body = bodyChunked
	case cls > 1 || (cls == 1 && sawCLTab):
		return h, refuseCL
	case cls == 1:
		n, ok := parseLength(cl)
		if !ok {
			return h, refuseCL
		}
		if n > 0 {
			h.body, h.length = bodyLength, n
		}
	}
	if sawExpect && !expectOK {
		return h, refuseExpect
	}
	return h, refusal{}
}

// parseRequestLine splits "method SP target SP version" (RFC 9112 §3) with
// exactly one space between parts. method is nil when malformed.
func parseRequestLine(line []byte) (method []byte, versionOK, http10, preface bool) {
	sp1 := indexByte(line, ' ')
	if sp1 <= 0 {
		return nil, false, false, false
	}
	rest := line[sp1+1:]
	sp2 := indexByte(rest, ' ')
	if sp2 <= 0 {
		return nil, false, false, false
	}
	m, target, version := line[:sp1], rest[:sp2], rest[sp2+1:]
	if string(m) == "PRI" && string(target) == "*" && string(version) == "HTTP/2.0" {
		return m, false, false, true
	}
	if !isToken(m) {
		return nil, false, false, false
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return nil, false, false, false
		}
	}
	if !validTarget(m, target) {
		return nil, false, false, false
	}
	switch string(version) {
	case "HTTP/1.1":
		return m, true, false, false
	case "HTTP/1.0":
		return m, true, true, false
	}
	return m, false, false, false
}

// validTarget refuses the request targets net/http would refuse itself
// (with a bare 400 and none of our headers): an origin-form path with a
// broken percent-escape, and anything url.ParseRequestURI rejects. Which
// targets are acceptable is the path firewall's business, after this.
func validTarget(method, target []byte) bool {
	switch {
	case string(target) == "*":
		return true
	case target[0] == '/':
		for i := 0; i < len(target) && target[i] != '?'; i++ {
			if target[i] == '%' {
				if i+2 >= len(target) || !isHex(target[i+1]) || !isHex(target[i+2]) {
					return false
				}
			}
		}
		return true
	case string(method) == "CONNECT":
		return true // authority-form; refused later, with our headers
	}
	_, err := url.ParseRequestURI(string(target)) // absolute-form: rare
	return err == nil
}

func isHex(c byte) bool { _, ok := hexVal(c); return ok }

// cutLine returns the line at the start of b without its CRLF. ok is false
// for a bare LF, a CR elsewhere in the line, or no line end at all.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := indexLF(b)
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	return b[:i-1], b[i+1:], true
}
