package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/metrics"
	"github.com/portcullis/portcullis/revocation"
)

// Options are an Issuer's dependencies.
type Options struct {
	Config      *config.Config
	Logger      *slog.Logger
	Metrics     *metrics.Metrics
	Revocations *revocation.Store // nil: revocation is not checked
	// HTTPClient fetches trusted issuers' and jwks_url clients' JWKS; nil
	// uses a client with a 5 s timeout (never http.DefaultClient). A
	// ca_file gives a copy of it whose transport trusts only those roots.
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AdmitToken runs on /token after the client id is known and before any
	// bcrypt work. It returns false after writing a refusal (a 429).
	AdmitToken func(w http.ResponseWriter, r *http.Request, clientID string) bool
	// SecurityLog reports security events (failed client authentication);
	// nil logs nothing.
	SecurityLog func(r *http.Request, msg string, args ...any)
	// Replay records the jti of accepted client assertions; it should
	// outlive a reload. nil: a new in-memory cache for this Issuer.
	Replay *ReplayCache
	// Ephemeral is the development key to reuse when no key is configured
	// (see Issuer.Ephemeral): a reload must not invalidate every token
	// minted so far by generating a new one. nil generates a key.
	Ephemeral *Key
}

// Issuer mints and verifies tokens. It is built once per configuration and is
// safe for concurrent use; a new configuration means a new Issuer, which also
// drops the credential and token caches.
type Issuer struct {
	url      string
	ttl      time.Duration
	skew     time.Duration
	audience []string
	signing  *Key
	keys     []*Key
	keysByID map[string]*Key
	algs     map[string]bool // every algorithm some key is pinned to
	remotes  map[string]*remoteIssuer
	parser   *jwt.Parser
	cache    *tokenCache
	clients  *clientAuth
	revoked  *revocation.Store
	admin    string

	// How claims are read (see tokenclaims.go).
	scopeClaims  map[string][]string // trusted issuer URL → its scope_claims
	claimNames   []string            // claims routes and headers refer to
	claimHeaders []claimHeader       // identity_headers.claims, by header name

	log         *slog.Logger
	secLog      func(*http.Request, string, ...any)
	metrics     *metrics.Metrics
	now         func() time.Time
	admitToken  func(http.ResponseWriter, *http.Request, string) bool
	maxLifetime time.Duration
	assertions  *assertionVerifier
	ephemeral   bool // signing was generated: no key is configured
}

// New loads keys and clients. With no key configured (allowed only in
// development) it generates an ephemeral ES256 key and logs a warning.
func New(o Options) (*Issuer, error) {
	cfg := o.Config
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: jwksFetchTimeout}
	}
	if o.SecurityLog == nil {
		o.SecurityLog = func(*http.Request, string, ...any) {}
	}
	keys, err := loadKeys(cfg.Issuer.Keys)
	if err != nil {
		return nil, err
	}
	signing := -1
	if len(keys) == 0 {
		if cfg.Environment != config.Development {
			return nil, errors.New("issuer.keys: no key configured")
		}
		k := o.Ephemeral
		if k == nil {
			if k, err = ephemeralKey(); err != nil {
				return nil, err
			}
			o.Logger.Warn("no signing key configured: generated an ephemeral ES256 key; tokens will not survive a restart (development only)", "kid", k.ID)
		}
		keys, signing = []*Key{k}, 0
	} else if signing = config.SigningKey(cfg.Issuer.Keys); signing < 0 {
		return nil, errors.New("issuer.keys: every key is publish_only; one must sign")
	}
	if o.Replay == nil {
		o.Replay = NewReplayCache(nil, 0, o.Logger)
	}
	clients, err := newClientAuth(cfg.Issuer.Clients, sourceOptions{client: o.HTTPClient, log: o.Logger, now: o.Now})
	if err != nil {
		return nil, err
	}
	assertions, err := newAssertionVerifier(cfg.Issuer.URL, cfg.ClockSkew.D(), o.Now, o.Replay)
	if err != nil {
		return nil, err
	}
	iss := &Issuer{
		url: cfg.Issuer.URL, ttl: cfg.Issuer.TokenTTL.D(), skew: cfg.ClockSkew.D(),
		audience: cfg.Audience, signing: keys[signing], keys: keys, keysByID: map[string]*Key{},
		remotes: map[string]*remoteIssuer{}, cache: newTokenCache(), clients: clients,
		revoked: o.Revocations, admin: cfg.Admin.Scope, log: o.Logger, secLog: o.SecurityLog,
		metrics: o.Metrics, now: o.Now, admitToken: o.AdmitToken,
		maxLifetime: MaxTokenLifetime(cfg), assertions: assertions, ephemeral: len(cfg.Issuer.Keys) == 0,
	}
	algs := map[string]bool{}
	for _, k := range keys {
		iss.keysByID[k.ID] = k
		algs[k.Alg] = true
	}
	for i, t := range cfg.TrustedIssuers {
		r, err := newRemote(t, o.HTTPClient, o.Logger, o.Now)
		if err != nil {
			return nil, fmt.Errorf("trusted_issuers[%d]: %w", i, err)
		}
		iss.remotes[t.Issuer] = r
		for _, a := range t.Algorithms {
			algs[a] = true
		}
	}
	iss.algs = algs
	iss.scopeClaims = map[string][]string{}
	for _, t := range cfg.TrustedIssuers {
		iss.scopeClaims[t.Issuer] = t.ScopeClaims
		if len(t.ScopeClaims) == 0 {
			iss.scopeClaims[t.Issuer] = defaultScopeClaims
		}
	}
	iss.claimNames = cfg.ReferencedClaims()
	for _, name := range slices.Sorted(maps.Keys(cfg.IdentityHeaders.Claims)) {
		iss.claimHeaders = append(iss.claimHeaders, claimHeader{header: http.CanonicalHeaderKey(name), claim: cfg.IdentityHeaders.Claims[name]})
	}
	methods := make([]string, 0, len(algs))
	for a := range algs {
		methods = append(methods, a)
	}
	iss.parser = jwt.NewParser(
		jwt.WithValidMethods(methods),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(iss.skew),
		jwt.WithTimeFunc(o.Now),
	)
	return iss, nil
}

// ClaimHeaderNames lists the canonical names of the identity headers that
// carry claims (identity_headers.claims), in the order of
// Principal.ClaimHeaderValues.
func (iss *Issuer) ClaimHeaderNames() []string {
	names := make([]string, len(iss.claimHeaders))
	for i, h := range iss.claimHeaders {
		names[i] = h.header
	}
	return names
}

// MaxTokenLifetime is how long a revocation must be remembered: the longest
// a token accepted here can stay valid. Own tokens live token_ttl; trusted
// issuers' lifetimes are unknown, so at least a day is assumed. Clock skew
// is added because expiry is checked with that leeway.
func MaxTokenLifetime(cfg *config.Config) time.Duration {
	return max(cfg.Issuer.TokenTTL.D(), 24*time.Hour) + cfg.ClockSkew.D()
}

// Start fetches the trusted issuers' and jwks_url clients' key sets and
// keeps them fresh until ctx ends. A failed first fetch is logged, not
// fatal: the IdP may come up later.
func (iss *Issuer) Start(ctx context.Context) {
	for _, r := range iss.remotes {
		go r.run(ctx)
	}
	for _, s := range iss.clients.sources {
		go s.run(ctx)
	}
}

// Ready reports whether every remote key set (trusted issuers' and jwks_url
// clients') has been fetched once, or its first fetch has failed or timed
// out: before that, valid tokens and assertions would be refused.
func (iss *Issuer) Ready() bool {
	for _, r := range iss.remotes {
		if !r.ready() {
			return false
		}
	}
	for _, s := range iss.clients.sources {
		if !s.ready() {
			return false
		}
	}
	return true
}

// Ephemeral returns the generated development key this issuer signs with,
// or nil when keys are configured.
func (iss *Issuer) Ephemeral() *Key {
	if iss.ephemeral {
		return iss.signing
	}
	return nil
}

// Sign mints a token for the given claims with the signing key; tests and
// the benchmark use it too.
func (iss *Issuer) Sign(c Claims) (string, error) {
	t := jwt.NewWithClaims(iss.signing.method, c)
	t.Header["kid"] = iss.signing.ID
	t.Header["typ"] = "at+jwt"
	s, err := t.SignedString(iss.signing.signer)
	if err != nil {
		return "", fmt.Errorf("signing with key %q: %w", iss.signing.ID, err)
	}
	return s, nil
}
