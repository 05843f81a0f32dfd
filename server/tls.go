package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/config"
)

// tlsHandshakeTimeout bounds a handshake, as readHeaderTimeout bounds a
// request head: a client that never finishes one holds a goroutine only
// this long.
const tlsHandshakeTimeout = readHeaderTimeout

// alpnProtocols: HTTP/2 first, HTTP/1.1 for clients without it.
var alpnProtocols = []string{"h2", "http/1.1"}

// certSource holds the serving certificate (and client CA pool) and swaps
// them when their files change. Every handshake takes the current set;
// connections already open keep theirs. Safe for concurrent use.
type certSource struct {
	cfg    config.TLS
	log    *slog.Logger
	expiry prometheus.Gauge

	mu  sync.Mutex // serialises Reload
	cur atomic.Pointer[loadedTLS]
}

// loadedTLS is one loaded set of files.
type loadedTLS struct {
	sum      [sha256.Size]byte // of the files' contents
	config   *tls.Config
	cert     *tls.Certificate
	notAfter time.Time
}

// newCertSource loads the files once; a problem is an error naming the key.
func newCertSource(c config.TLS, log *slog.Logger, expiry prometheus.Gauge) (*certSource, error) {
	s := &certSource{cfg: c, log: log, expiry: expiry}
	lt, err := s.load()
	if err != nil {
		return nil, err
	}
	s.install(lt)
	return s, nil
}

// Reload re-reads the certificate, key and client CA files. Unchanged
// contents change nothing; a new set that does not load keeps the old one
// serving, is logged, and is returned as the error.
func (s *certSource) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lt, err := s.load()
	if err != nil {
		s.log.Error("TLS certificate not reloaded; the previous one keeps serving", "error", err)
		return err
	}
	if lt == s.cur.Load() {
		return nil
	}
	s.install(lt)
	s.log.Info("TLS certificate reloaded", "not_after", lt.notAfter.UTC().Format(time.RFC3339))
	return nil
}

// Configure switches to the files and minimum version of a reloaded
// configuration (client_auth needs a restart and is kept). Like Reload, a
// set that does not load changes nothing and is returned as the error.
func (s *certSource) Configure(c config.TLS) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.cfg
	c.ClientAuth = prev.ClientAuth
	s.cfg = c
	lt, err := s.load()
	if err != nil {
		s.cfg = prev
		s.log.Error("TLS configuration not applied; the previous certificate keeps serving", "error", err)
		return err
	}
	if lt != s.cur.Load() {
		s.install(lt)
		s.log.Info("TLS certificate reloaded", "not_after", lt.notAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func (s *certSource) install(lt *loadedTLS) {
	s.cur.Store(lt)
	s.expiry.Set(float64(lt.notAfter.Unix()))
}

// GetCertificate returns the current serving certificate.
func (s *certSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load().cert, nil
}

// serverConfig is the listener's configuration: each handshake uses the set
// current at that moment.
func (s *certSource) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12, // the per-handshake config decides
		NextProtos: alpnProtocols,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().config, nil
		},
	}
}

// load reads the files and returns the current set when they are unchanged.
func (s *certSource) load() (*loadedTLS, error) {
	certPEM, err := os.ReadFile(s.cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(s.cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tls.key_file: %w", err)
	}
	var caPEM []byte
	if s.cfg.ClientCAFile != "" {
		if caPEM, err = os.ReadFile(s.cfg.ClientCAFile); err != nil {
			return nil, fmt.Errorf("tls.client_ca_file: %w", err)
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s:", s.cfg.MinVersion)
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if cur := s.cur.Load(); cur != nil && cur.sum == sum {
		return cur, nil
	}
	// Clear the key bytes once parsed; the parsed key lives on in cert.
	defer clear(keyPEM)

	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s / tls.key_file %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls.cert_file %s: %w", s.cfg.CertFile, err)
		}
	}
	cfg := &tls.Config{
		MinVersion:   tlsVersion(s.cfg.MinVersion),
		NextProtos:   alpnProtocols,
		Certificates: []tls.Certificate{cert},
	}
	if caPEM != nil {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("tls.client_ca_file %s: no PEM certificate found", s.cfg.ClientCAFile)
		}
		cfg.ClientCAs = pool
		// A presented certificate must verify in both modes; required
		// also refuses a handshake without one.
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if s.cfg.ClientAuth == config.ClientAuthRequired {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	if time.Now().After(leaf.NotAfter) {
		s.log.Warn("the TLS certificate has expired", "cert_file", s.cfg.CertFile, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return &loadedTLS{sum: sum, config: cfg, cert: &cfg.Certificates[0], notAfter: leaf.NotAfter}, nil
}

func tlsVersion(v string) uint16 {
	if v == config.TLSVersion13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// tlsListener completes each TLS handshake itself, off the accept path, so
// it can hand net/http each connection in the right form: an HTTP/2 one as
// the *tls.Conn (net/http serves it with its HTTP/2 server), an HTTP/1.1 one
// behind the framing guard, which needs the plaintext.
type tlsListener struct {
	net.Listener
	config *tls.Config
	log    *slog.Logger
	bufs   *sync.Pool // head buffers of the guarded HTTP/1.1 connections

	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	err       atomic.Pointer[error]
}

func newTLSListener(inner net.Listener, cfg *tls.Config, log *slog.Logger) *tlsListener {
	l := &tlsListener{Listener: inner, config: cfg, log: log, bufs: newGuardBufs(), conns: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *tlsListener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.stop(err)
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", "error", err, "delay", delay.String())
			select {
			case <-time.After(delay):
				continue
			case <-l.done:
				return
			}
		}
		delay = 0
		go l.handshake(c)
	}
}

func (l *tlsListener) handshake(raw net.Conn) {
	tc := tls.Server(raw, l.config)
	ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// An unverifiable client certificate ends here too; at debug
		// level, as scanners and health checkers produce these all day.
		l.log.Debug("TLS handshake failed", "remote", raw.RemoteAddr().String(), "error", err)
		raw.Close()
		return
	}
	var c net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		c = &tlsGuardConn{guardConn: newGuard(tc, l.bufs), tls: tc}
	}
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection whose handshake completed.
func (l *tlsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		if err := l.err.Load(); err != nil {
			return nil, *err
		}
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) stop(err error) {
	l.closeOnce.Do(func() {
		l.err.Store(&err)
		close(l.done)
	})
}

// Close stops accepting; handshakes in progress are dropped.
func (l *tlsListener) Close() error {
	l.stop(net.ErrClosed)
	return l.Listener.Close()
}
