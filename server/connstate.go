package server

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// connState is what a connection's guard shares with the handler, through
// the request context. Safe for concurrent use.
type connState struct {
	refusedStatus atomic.Int32 // 0: nothing refused
	refusedReason atomic.Pointer[string]
	passthrough   atomic.Bool // hijacked (WebSocket): bytes pass unparsed
}

func (s *connState) refuse(r refusal) {
	s.refusedReason.Store(&r.reason)
	s.refusedStatus.Store(int32(r.status))
}

// refusal returns what the guard refused, if anything.
func (s *connState) refusal() (refusal, bool) {
	st := s.refusedStatus.Load()
	if st == 0 {
		return refusal{}, false
	}
	return refusal{status: int(st), reason: *s.refusedReason.Load()}, true
}

type connStateKey struct{}

// connStateFrom returns the guard state of r's connection, or nil (HTTP/2,
// tests that use httptest without a guard).
func connStateFrom(ctx context.Context) *connState {
	st, _ := ctx.Value(connStateKey{}).(*connState)
	return st
}

// connContext is http.Server.ConnContext: it hands each guarded
// connection's state to its requests.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if g := asGuard(c); g != nil {
		return context.WithValue(ctx, connStateKey{}, &g.st)
	}
	return ctx
}

func asGuard(c net.Conn) *guardConn {
	switch c := c.(type) {
	case *guardConn:
		return c
	case *tlsGuardConn:
		return c.guardConn
	}
	return nil
}

// guardListener wraps every accepted connection in a guardConn.
type guardListener struct {
	net.Listener
	bufs *sync.Pool
}

func newGuardListener(ln net.Listener) guardListener {
	return guardListener{Listener: ln, bufs: newGuardBufs()}
}

func (l guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newGuard(c, l.bufs), nil
}

// newGuardBufs pools head buffers: a connection holds one only while a
// head is arriving or buffered, never while idle, so thousands of idle
// keep-alive connections cost nothing here.
func newGuardBufs() *sync.Pool {
	return &sync.Pool{New: func() any { b := make([]byte, guardBufSize); return &b }}
}

// tlsGuardConn is a guarded HTTP/1.1-over-TLS connection. net/http reads
// ConnectionState to fill Request.TLS (it cannot see the *tls.Conn inside).
type tlsGuardConn struct {
	*guardConn
	tls *tls.Conn
}

// ConnectionState returns the TLS state of the connection.
func (c *tlsGuardConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }

// markHijacked switches a connection to passthrough when a handler takes it
// over (a WebSocket tunnel): its bytes are no longer HTTP/1.x requests.
func markHijacked(r *http.Request) {
	if st := connStateFrom(r.Context()); st != nil {
		st.passthrough.Store(true)
	}
}
