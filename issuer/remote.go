package issuer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/config"
)

// JWKS refresh bounds: an IdP's Cache-Control max-age is honoured within
// these, so a max-age of 0 cannot make us poll in a loop and a max-age of a
// week cannot leave a rotated key unknown for days.
const (
	jwksMinRefresh     = time.Minute
	jwksMaxRefresh     = time.Hour
	jwksDefaultRefresh = 5 * time.Minute
	jwksRetry          = 30 * time.Second
	// jwksMaxBytes bounds a JWKS document read: real sets are a few KiB,
	// and a hostile or broken endpoint must not grow the process.
	jwksMaxBytes = 1 << 20
	// jwksFetchTimeout bounds a whole fetch, headers and body, so a
	// trickling endpoint cannot hold a request waiting on an unknown kid.
	jwksFetchTimeout = 5 * time.Second
	// unknownKidRefetch limits refetches triggered by an unknown kid, so a
	// flood of tokens with random kids cannot turn into a flood at the IdP.
	unknownKidRefetch = time.Minute
	// maxBearerTokenBytes bounds a bearer_token_file (Kubernetes tokens are
	// about 1 KiB).
	maxBearerTokenBytes = 64 << 10
)

// jwksSource is one remote key set: a trusted issuer's or a jwks_url
// client's. Keys are swapped atomically and a failed fetch keeps the last
// good set. An unknown kid triggers one fetch at once, then at most one
// such fetch per unknownKidRefetch, shared by every caller waiting for it.
// Safe for concurrent use.
type jwksSource struct {
	name       string // for logs: the issuer or client it belongs to
	url        string
	algorithms []string
	tokenFile  string
	client     *http.Client
	log        *slog.Logger
	now        func() time.Time

	keys    atomic.Pointer[map[string]*Key]
	fetched atomic.Bool // the first fetch has finished, well or badly
	fetchMu sync.Mutex  // one fetch at a time

	kidMu      sync.Mutex
	kidFetch   time.Time     // when the last unknown-kid fetch started
	kidWaiting chan struct{} // closed when the running unknown-kid fetch ends
}

// sourceOptions are what a jwksSource needs besides its URL.
type sourceOptions struct {
	name       string
	algorithms []string
	caFile     string
	tokenFile  string
	client     *http.Client
	log        *slog.Logger
	now        func() time.Time
}

func newSource(url string, o sourceOptions) (*jwksSource, error) {
	client := o.client
	if o.caFile != "" {
		var err error
		if client, err = clientWithRoots(o.client, o.caFile); err != nil {
			return nil, err
		}
	}
	s := &jwksSource{
		name: o.name, url: url, algorithms: o.algorithms, tokenFile: o.tokenFile,
		client: client, log: o.log, now: o.now,
	}
	empty := map[string]*Key{}
	s.keys.Store(&empty)
	return s, nil
}

// clientWithRoots copies base with a transport that trusts only the PEM
// roots in caFile.
func clientWithRoots(base *http.Client, caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
	}
	var tr *http.Transport
	if t, ok := base.Transport.(*http.Transport); ok {
		tr = t.Clone()
	} else {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	c := *base
	c.Transport = tr
	return &c, nil
}

// ready reports whether the first fetch has finished (or failed).
func (s *jwksSource) ready() bool { return s.fetched.Load() }

// key returns the key for kid. An unknown kid (the owner may have rotated)
// starts a fetch at once if none started within unknownKidRefetch, or waits
// for the one running; otherwise it is unknown until the next refresh.
func (s *jwksSource) key(kid string) *Key {
	if k := (*s.keys.Load())[kid]; k != nil {
		return k
	}
	s.kidMu.Lock()
	wait := s.kidWaiting
	if wait == nil {
		if s.now().Sub(s.kidFetch) < unknownKidRefetch && !s.kidFetch.IsZero() {
			s.kidMu.Unlock()
			return nil
		}
		s.kidFetch = s.now()
		wait = make(chan struct{})
		s.kidWaiting = wait
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), jwksFetchTimeout)
			defer cancel()
			if _, err := s.fetch(ctx); err != nil {
				s.log.Warn("refetching JWKS for an unknown kid failed", "source", s.name, "error", err)
			}
			s.kidMu.Lock()
			s.kidWaiting = nil
			s.kidMu.Unlock()
			close(wait)
		}()
	}
	s.kidMu.Unlock()
	<-wait // bounded by jwksFetchTimeout
	return (*s.keys.Load())[kid]
}

// fetch downloads the key set and returns how long it may be cached.
func (s *jwksSource) fetch(ctx context.Context) (time.Duration, error) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	if s.tokenFile != "" {
		// Re-read every time: a projected service-account token is
		// rotated by the kubelet while the process runs.
		tok, err := readBearerToken(s.tokenFile)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetching %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetching %s: status %d", s.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", s.url, err)
	}
	if len(body) > jwksMaxBytes {
		return 0, fmt.Errorf("JWKS at %s is larger than %d bytes", s.url, jwksMaxBytes)
	}
	keys, err := parseJWKS(body, s.algorithms)
	if err != nil {
		return 0, fmt.Errorf("JWKS at %s: %w", s.url, err)
	}
	s.keys.Store(&keys)
	return refreshInterval(resp.Header.Get("Cache-Control")), nil
}

func readBearerToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("reading bearer_token_file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxBearerTokenBytes+1))
	if err != nil {
		return "", fmt.Errorf("reading bearer_token_file %s: %w", path, err)
	}
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > maxBearerTokenBytes:
		return "", fmt.Errorf("bearer_token_file %s is larger than %d bytes", path, maxBearerTokenBytes)
	case len(b) == 0:
		return "", fmt.Errorf("bearer_token_file %s is empty", path)
	case bytes.ContainsAny(b, "\r\n\x00 "):
		return "", errors.New("bearer_token_file " + path + " holds more than one token")
	}
	return string(b), nil
}

// run keeps the key set fresh until ctx ends.
func (s *jwksSource) run(ctx context.Context) {
	for {
		wait, err := s.fetch(ctx)
		s.fetched.Store(true)
		if err != nil {
			s.log.Warn("JWKS refresh failed; keeping the last good keys", "source", s.name, "error", err)
			wait = jwksRetry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func refreshInterval(cacheControl string) time.Duration {
	d := jwksDefaultRefresh
	for _, part := range strings.Split(cacheControl, ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		if strings.EqualFold(name, "max-age") {
			if s, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil {
				d = time.Duration(s) * time.Second
			}
		}
	}
	return min(max(d, jwksMinRefresh), jwksMaxRefresh)
}

// remoteIssuer is a trusted external issuer: its key source and how its
// tokens are checked. Safe for concurrent use.
type remoteIssuer struct {
	*jwksSource
	issuer      string
	audience    []string
	requireType bool
}

func newRemote(t config.TrustedIssuer, client *http.Client, log *slog.Logger, now func() time.Time) (*remoteIssuer, error) {
	src, err := newSource(t.JWKSURL, sourceOptions{
		name: t.Issuer, algorithms: t.Algorithms, caFile: t.CAFile, tokenFile: t.BearerTokenFile,
		client: client, log: log, now: now,
	})
	if err != nil {
		return nil, err
	}
	return &remoteIssuer{
		jwksSource: src, issuer: t.Issuer, audience: t.Audience,
		requireType: t.RequireType != nil && *t.RequireType,
	}, nil
}
