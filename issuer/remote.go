package issuer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
	jwksMaxBytes       = 1 << 20
	jwksFetchTimeout   = 5 * time.Second
	// unknownKidRefetch limits refetches triggered by an unknown kid, so a
	// flood of tokens with random kids cannot turn into a flood at the IdP.
	unknownKidRefetch = time.Minute
)

// remoteIssuer holds a trusted external issuer's keys. Keys are swapped
// atomically; a failed fetch keeps the last good set. Safe for concurrent use.
type remoteIssuer struct {
	issuer      string
	jwksURL     string
	algorithms  []string
	audience    []string
	requireType bool
	client      *http.Client
	log         *slog.Logger
	now         func() time.Time

	keys      atomic.Pointer[map[string]*Key]
	fetchMu   sync.Mutex
	lastFetch atomic.Int64 // unix nanoseconds of the last attempt
}

func newRemote(t config.TrustedIssuer, client *http.Client, log *slog.Logger, now func() time.Time) *remoteIssuer {
	r := &remoteIssuer{
		issuer: t.Issuer, jwksURL: t.JWKSURL, algorithms: t.Algorithms, audience: t.Audience,
		requireType: t.RequireType != nil && *t.RequireType, client: client, log: log, now: now,
	}
	empty := map[string]*Key{}
	r.keys.Store(&empty)
	return r
}

// key returns the key for kid, refetching the set at most once a minute when
// the kid is unknown (the IdP may have rotated).
func (r *remoteIssuer) key(kid string) *Key {
	if k := (*r.keys.Load())[kid]; k != nil {
		return k
	}
	last := time.Unix(0, r.lastFetch.Load())
	if r.now().Sub(last) < unknownKidRefetch {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), jwksFetchTimeout)
	defer cancel()
	if _, err := r.fetch(ctx); err != nil {
		r.log.Warn("refetching JWKS for unknown kid failed", "issuer", r.issuer, "error", err)
	}
	return (*r.keys.Load())[kid]
}

// fetch downloads the key set and returns how long it may be cached.
func (r *remoteIssuer) fetch(ctx context.Context) (time.Duration, error) {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	r.lastFetch.Store(r.now().UnixNano())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.jwksURL, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("fetching %s: %w", r.jwksURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("fetching %s: status %d", r.jwksURL, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", r.jwksURL, err)
	}
	if len(body) > jwksMaxBytes {
		return 0, fmt.Errorf("JWKS at %s is larger than %d bytes", r.jwksURL, jwksMaxBytes)
	}
	keys, err := parseJWKS(body, r.algorithms)
	if err != nil {
		return 0, fmt.Errorf("JWKS at %s: %w", r.jwksURL, err)
	}
	r.keys.Store(&keys)
	return refreshInterval(resp.Header.Get("Cache-Control")), nil
}

// run keeps the key set fresh until ctx ends.
func (r *remoteIssuer) run(ctx context.Context) {
	for {
		wait, err := r.fetch(ctx)
		if err != nil {
			r.log.Warn("JWKS refresh failed; keeping the last good keys", "issuer", r.issuer, "error", err)
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
