package server

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// refusedMethod marks the stand-in request a guard hands net/http in place
// of a refused one. A client cannot send it: the guard refuses it too.
const refusedMethod = "PORTCULLIS-REFUSED"

// refusedRequest is the stand-in: no body framing at all, and it asks for
// the connection to close after the answer.
const refusedRequest = refusedMethod + " / HTTP/1.1\r\nHost: portcullis.invalid\r\nConnection: close\r\n\r\n"

// After refusing, the guard stops reading requests but drains what the
// client is still sending for a moment before closing, so the kernel does
// not answer unread bytes with a reset that destroys our response.
const (
	lingerTimeout = 500 * time.Millisecond
	lingerBytes   = 256 << 10
)

// guardBufSize is the initial read buffer of a guarded connection; it grows
// up to one whole head (maxHeadBytes) only for clients that send one.
const guardBufSize = 4 << 10

type phase uint8

const (
	phHead    phase = iota // reading and checking a request head
	phRelease              // handing an accepted head to net/http
	phLength               // a Content-Length body
	phChunked              // a chunked body
	phStandIn              // handing the stand-in for a refused request
	phEOF                  // nothing more is read from this connection
)

// guardConn sits between the socket and net/http's HTTP/1.x parser and
// checks each request head before net/http sees a byte of it (see
// framing.go). Bodies pass through unbuffered; only heads are held. It is
// read by one goroutine at a time, as net/http does; Close may come from
// another.
type guardConn struct {
	net.Conn
	st connState

	buf     []byte // bytes read but not yet released: buf[r:w]
	r, w    int
	rerr    error // a read error held back while buffered bytes remain
	phase   phase
	next    phase // after phRelease
	left    int   // phRelease: head bytes still to hand over
	scan    int   // phHead: where findHeadEnd resumes (relative to r)
	remain  int64 // phLength: body bytes left
	chunks  chunkScanner
	standIn string
	bufs    *sync.Pool // of *[]byte, guardBufSize each
	bufp    *[]byte    // where buf came from, to give it back

	closeOnce sync.Once
	closeErr  error
}

func newGuard(c net.Conn, bufs *sync.Pool) *guardConn { return &guardConn{Conn: c, bufs: bufs} }

var errMalformedBody = errors.New("malformed chunked request body")

// Read hands net/http the next bytes of the stream: request heads only
// once checked whole, bodies as they come, and after a refusal the
// stand-in request followed by end of stream.
func (g *guardConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if g.st.passthrough.Load() {
		return g.readPassthrough(p)
	}
	for {
		switch g.phase {
		case phHead:
			if g.r == g.w && g.scan == 0 {
				// Idle between requests: wait in the caller's buffer and
				// take a head buffer only once bytes arrive.
				g.putBuf()
				n, err := g.Conn.Read(p[:min(len(p), guardBufSize)])
				if n == 0 {
					if err == nil {
						err = io.ErrNoProgress
					}
					return 0, err
				}
				g.getBuf()
				g.w = copy(g.buf, p[:n])
				g.rerr = err
			}
			if err := g.readHead(); err != nil {
				return 0, err
			}
		case phRelease:
			n := copy(p, g.buf[g.r:g.r+g.left])
			g.r += n
			g.left -= n
			if g.left == 0 {
				g.phase = g.next
			}
			return n, nil
		case phLength:
			if int64(len(p)) > g.remain {
				p = p[:g.remain]
			}
			n, _, err := g.readBody(p)
			g.remain -= int64(n)
			if g.remain == 0 {
				g.phase = phHead
			}
			return n, err
		case phChunked:
			n, fromBuf, err := g.readBody(p)
			used, res := g.chunks.feed(p[:n])
			switch res {
			case chunkDone:
				g.unread(p[used:n], fromBuf)
				g.phase = phHead
				return used, nil
			case chunkBad:
				// net/http's reader might resynchronise somewhere else;
				// the stream ends here instead (RFC 9112 §7.1).
				g.phase = phEOF
				if used == 0 {
					return 0, errMalformedBody
				}
				return used, nil
			}
			return n, err
		case phStandIn:
			n := copy(p, g.standIn)
			g.standIn = g.standIn[n:]
			if g.standIn == "" {
				g.phase = phEOF
			}
			return n, nil
		default:
			return 0, io.EOF
		}
	}
}

// readHead reads until the buffer holds a whole head, then decides it.
// It returns only read errors; a decision changes g.phase.
func (g *guardConn) readHead() error {
	for timed := false; ; {
		// Empty lines before a request line are skipped (RFC 9112 §2.2);
		// they never reach net/http, which would read them differently.
		if g.scan == 0 {
			for skipped := 0; g.w-g.r >= 2 && g.buf[g.r] == '\r' && g.buf[g.r+1] == '\n'; skipped++ {
				if skipped == maxLeadingCRLF {
					g.refuse(refuseMalformed)
					return nil
				}
				g.r += 2
			}
		}
		b := g.buf[g.r:g.w]
		end, next := findHeadEnd(b, g.scan)
		if end > maxHeadBytes || (end == 0 && len(b) > maxHeadBytes) {
			g.refuse(refuseTooLarge)
			return nil
		}
		if end > 0 {
			h, ref := parseHead(b[:end])
			if ref.status != 0 {
				g.refuse(ref)
				return nil
			}
			g.scan, g.left, g.phase = 0, end, phRelease
			switch h.body {
			case bodyLength:
				g.next, g.remain = phLength, h.length
			case bodyChunked:
				g.next = phChunked
			default:
				g.next = phHead
			}
			return nil
		}
		g.scan = next
		if !timed && g.w > g.r {
			// The head has begun but not arrived whole. net/http would
			// now allow it readHeaderTimeout, but it cannot see the head
			// yet, so the guard sets that deadline (net/http resets it).
			_ = g.Conn.SetReadDeadline(time.Now().Add(readHeaderTimeout))
			timed = true
		}
		if err := g.fill(); err != nil {
			return err
		}
	}
}

// fill reads more of the stream into the buffer, growing it only as far as
// one head can need.
func (g *guardConn) fill() error {
	if g.rerr != nil {
		err := g.rerr
		g.rerr = nil
		return err
	}
	if g.buf == nil {
		g.getBuf()
	}
	if g.w == len(g.buf) {
		g.compact()
	}
	if g.w == len(g.buf) {
		nb := make([]byte, min(2*len(g.buf), maxHeadBytes+2*maxLeadingCRLF+1))
		copy(nb, g.buf[g.r:g.w])
		g.w -= g.r
		g.r = 0
		g.swapBuf(nb)
	}
	n, err := g.Conn.Read(g.buf[g.w:])
	g.w += n
	if n > 0 {
		g.rerr = err
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// getBuf takes an empty head buffer from the pool.
func (g *guardConn) getBuf() {
	if g.bufs == nil {
		g.bufs = newGuardBufs()
	}
	g.bufp = g.bufs.Get().(*[]byte)
	g.buf = *g.bufp
	g.r, g.w = 0, 0
}

// putBuf returns the buffer once it holds nothing; only the reading
// goroutine calls it (never Close, which may run concurrently).
func (g *guardConn) putBuf() {
	if g.buf == nil || g.r != g.w {
		return
	}
	if g.bufp != nil && len(g.buf) == guardBufSize { // not a grown one
		g.bufs.Put(g.bufp)
	}
	g.buf, g.bufp, g.r, g.w = nil, nil, 0, 0
}

// swapBuf replaces the buffer with a larger one (its contents copied
// already), giving a pooled one back.
func (g *guardConn) swapBuf(nb []byte) {
	if g.bufp != nil {
		g.bufs.Put(g.bufp)
		g.bufp = nil
	}
	g.buf = nb
}

// compact moves unread bytes to the front of the buffer.
func (g *guardConn) compact() {
	if g.r == 0 {
		return
	}
	g.w = copy(g.buf, g.buf[g.r:g.w])
	g.r = 0
}

// readBody reads body bytes: buffered ones first, else straight from the
// socket into p (no copy).
func (g *guardConn) readBody(p []byte) (n int, fromBuf bool, err error) {
	if g.r < g.w {
		n = copy(p, g.buf[g.r:g.w])
		g.r += n
		return n, true, nil
	}
	if g.rerr != nil {
		err, g.rerr = g.rerr, nil
		return 0, false, err
	}
	n, err = g.Conn.Read(p)
	return n, false, err
}

// unread gives back bytes past the end of a body: they start the next
// request and must be checked as a head.
func (g *guardConn) unread(b []byte, fromBuf bool) {
	if len(b) == 0 {
		return
	}
	if fromBuf { // still in the buffer, just before g.r
		g.r -= len(b)
		return
	}
	if g.buf == nil {
		g.getBuf()
	}
	g.compact()
	if len(g.buf)-g.w < len(b) {
		nb := make([]byte, g.w+len(b))
		copy(nb, g.buf[:g.w])
		g.swapBuf(nb)
	}
	// b goes before anything buffered (nothing is, when the body was read
	// straight from the socket).
	copy(g.buf[len(b):], g.buf[:g.w])
	copy(g.buf, b)
	g.w += len(b)
}

// refuse records the refusal for the handler and switches to the stand-in.
func (g *guardConn) refuse(r refusal) {
	g.st.refuse(r)
	g.phase, g.standIn = phStandIn, refusedRequest
}

// readPassthrough serves a hijacked connection (a WebSocket after 101):
// whatever was buffered, then the socket itself. A connection that has
// refused a request passes nothing more.
func (g *guardConn) readPassthrough(p []byte) (int, error) {
	if _, refused := g.st.refusal(); refused {
		return 0, io.EOF
	}
	if g.r < g.w {
		n := copy(p, g.buf[g.r:g.w])
		g.r += n
		return n, nil
	}
	return g.Conn.Read(p)
}

// Close closes the connection; after a refusal it first drains the client
// for a moment (see lingerTimeout).
func (g *guardConn) Close() error {
	g.closeOnce.Do(func() {
		if _, refused := g.st.refusal(); refused && !g.st.passthrough.Load() {
			go func() { // bounded by lingerTimeout; net/http need not wait
				g.linger()
				g.Conn.Close()
			}()
			return
		}
		g.closeErr = g.Conn.Close()
	})
	return g.closeErr
}

func (g *guardConn) linger() {
	cw, ok := g.Conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = g.Conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	var sink [1024]byte
	for n := 0; n < lingerBytes; {
		k, err := g.Conn.Read(sink[:])
		n += k
		if err != nil {
			return
		}
	}
}
