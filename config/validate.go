package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/claim"
)

// Algorithms lists the signing algorithms a key may be pinned to.
var Algorithms = []string{"ES256", "ES384", "RS256", "PS256", "EdDSA", "HS256"}

// minHMACSecret is the shortest HS256 secret production accepts: RFC 7518
// §3.2 requires a key at least as long as the hash output (256 bits).
const minHMACSecret = 32

// ExampleSecretHashes are the bcrypt hashes published in config.example.yaml
// and the README; anyone can read them, so production refuses them.
var ExampleSecretHashes = []string{
	"$2a$12$Ya7J6aTNAQbHo1nfrgI5DetywvkEejT7HKPLFdaObsVeAmNr6l0Py",
}

// ExampleHMACSecrets are HS256 secrets published in the repository.
var ExampleHMACSecrets = []string{"development-only-hs256-secret-change-me-now"}

// ExampleClientSecrets are plain client secrets published in the repository
// (README, deploy/); a CLIENT_SECRET equal to one is refused in production.
var ExampleClientSecrets = []string{"example-secret-change-me", "replace-me-with-at-least-32-random-bytes!!"}

type checker struct {
	errs     []error
	warnings []string
}

func (c *checker) fail(path string, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (c *checker) warn(path string, format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// validate checks a decoded config with defaults applied. It reads key files'
// metadata but changes nothing.
func validate(cfg *Config) ([]string, []error) {
	c := &checker{}
	prod := cfg.Environment == Production
	if cfg.Environment != Production && cfg.Environment != Development {
		c.fail("environment", "%q is not one of production, development", cfg.Environment)
	}
	checkAddr(c, "listen", cfg.Listen, false)
	checkAddr(c, "admin_listen", cfg.AdminAddr(), true)
	checkTLS(c, cfg.TLS)
	checkAddr(c, "grpc_listen", cfg.GRPCListen, true)
	if cfg.GRPCListen != "" && (cfg.GRPCListen == cfg.Listen || cfg.GRPCListen == cfg.AdminAddr()) {
		c.fail("grpc_listen", "%q is also listen or admin_listen; gRPC ext_authz needs a port of its own", cfg.GRPCListen)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, cfg.Log.Level) {
		c.fail("log.level", "%q is not one of debug, info, warn, error", cfg.Log.Level)
	}
	if !slices.Contains([]string{"json", "text"}, cfg.Log.Format) {
		c.fail("log.format", "%q is not one of json, text", cfg.Log.Format)
	}
	if cfg.Shutdown.Delay < 0 || cfg.Shutdown.Grace < 0 {
		c.fail("shutdown", "durations must not be negative")
	}
	if u := cfg.Upstream; u != nil {
		checkURL(c, "upstream.url", u.URL, true)
		if u.Timeout <= 0 {
			c.fail("upstream.timeout", "must be positive, got %s", u.Timeout.D())
		}
	}
	for i, p := range cfg.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			c.fail(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not an IP address or CIDR range", p)
		}
	}
	checkIssuer(c, cfg, prod)
	for i, t := range cfg.TrustedIssuers {
		p := fmt.Sprintf("trusted_issuers[%d]", i)
		checkURL(c, p+".issuer", t.Issuer, false)
		checkURL(c, p+".jwks_url", t.JWKSURL, true)
		if t.Issuer == cfg.Issuer.URL && t.Issuer != "" {
			c.fail(p+".issuer", "%q is this sidecar's own issuer.url", t.Issuer)
		}
		checkJWKSFetch(c, p, t)
		for j, a := range t.Algorithms {
			if a == "HS256" || !slices.Contains(Algorithms, a) {
				c.fail(fmt.Sprintf("%s.algorithms[%d]", p, j), "%q is not one of ES256, ES384, RS256, PS256, EdDSA", a)
			}
		}
		checkScopeClaims(c, p+".scope_claims", t.ScopeClaims)
	}
	if cfg.ClockSkew < 0 || cfg.ClockSkew.D() > 5*time.Minute {
		c.fail("clock_skew", "must be between 0s and 5m, got %s", cfg.ClockSkew.D())
	}
	for i, r := range cfg.Routes {
		checkRoute(c, fmt.Sprintf("routes[%d]", i), r)
	}
	if cfg.DefaultAction != "deny" {
		c.fail("default_action", "%q is not supported; use deny and a catch-all route {path: /}", cfg.DefaultAction)
	}
	checkLimit(c, "rate_limit.default", cfg.RateLimit.Default)
	checkLimit(c, "rate_limit.token_endpoint", cfg.RateLimit.TokenEndpoint)
	checkLimit(c, "rate_limit.new_tokens", cfg.RateLimit.NewTokens)
	if nt := cfg.RateLimit.NewTokens; nt != nil && nt.Key != "client_ip" {
		c.fail("rate_limit.new_tokens.key", "%q: new tokens are always counted per client_ip", nt.Key)
	}
	if !slices.Contains([]string{"local", "allow", "deny"}, cfg.RateLimit.OnRedisFailure) {
		c.fail("rate_limit.on_redis_failure", "%q is not one of local, allow, deny", cfg.RateLimit.OnRedisFailure)
	}
	if r := cfg.Redis; r != nil {
		switch {
		case r.URL != "" && len(r.Addrs) > 0:
			c.fail("redis", "set url or addrs, not both")
		case r.URL != "":
			if u, err := url.Parse(r.URL.Reveal()); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
				c.fail("redis.url", "want redis://host:port/db or rediss://…")
			}
		case len(r.Addrs) == 0:
			c.fail("redis", "url or addrs is required")
		}
		if r.Timeout <= 0 || r.Timeout.D() > 5*time.Second {
			c.fail("redis.timeout", "must be between 1ms and 5s, got %s", r.Timeout.D())
		}
	}
	for name, v := range cfg.SecurityHeaders {
		if !validToken(name) {
			c.fail("security_headers."+name, "not a valid header name")
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			c.fail("security_headers."+name, "value contains a control character")
		}
	}
	ih := cfg.IdentityHeaders
	for k, v := range map[string]string{"subject": ih.Subject, "client_id": ih.ClientID, "scopes": ih.Scopes, "issuer": ih.Issuer, "token_id": ih.TokenID} {
		if !validToken(v) {
			c.fail("identity_headers."+k, "%q is not a valid header name", v)
		}
	}
	checkClaimHeaders(c, ih, cfg.SecurityHeaders)
	checkReload(c, cfg.Reload)
	slices.Sort(c.warnings)
	return c.warnings, c.errs
}

func checkIssuer(c *checker, cfg *Config, prod bool) {
	iss := cfg.Issuer
	checkURL(c, "issuer.url", iss.URL, false)
	if iss.TokenTTL <= 0 || iss.TokenTTL.D() > 30*24*time.Hour {
		c.fail("issuer.token_ttl", "must be between 1s and 720h, got %s", iss.TokenTTL.D())
	}
	if len(iss.Keys) == 0 {
		if prod {
			c.fail("issuer.keys", "no key configured; production needs at least one (development generates an ephemeral one)")
		} else {
			c.warn("issuer.keys", "no key configured: an ephemeral ES256 key will be generated; tokens will not survive a restart")
		}
	}
	ids := map[string]bool{}
	for i, k := range iss.Keys {
		p := fmt.Sprintf("issuer.keys[%d]", i)
		if k.ID == "" {
			c.fail(p+".id", "required")
		} else if ids[k.ID] {
			c.fail(p+".id", "duplicate key id %q", k.ID)
		}
		ids[k.ID] = true
		if !slices.Contains(Algorithms, k.Algorithm) {
			c.fail(keyPath(p+".algorithm", k), "%q is not one of %s", k.Algorithm, strings.Join(Algorithms, ", "))
			continue
		}
		if k.Algorithm == "HS256" {
			if k.PrivateKeyFile != "" {
				c.fail(p+".private_key_file", "HS256 takes secret, not a key file")
			}
			switch {
			case k.Secret == "":
				c.fail(p+".secret", "required for HS256")
			case prod && len(k.Secret) < minHMACSecret:
				c.fail(keyPath(p+".secret", k), "HS256 secret must be at least %d bytes in production (got %d)", minHMACSecret, len(k.Secret))
			case prod && slices.Contains(ExampleHMACSecrets, k.Secret.Reveal()):
				c.fail(keyPath(p+".secret", k), "this is the example secret published in the repository; generate your own")
			}
			continue
		}
		if k.Secret != "" {
			c.fail(p+".secret", "%s takes private_key_file, not a secret", k.Algorithm)
		}
		if k.PrivateKeyFile == "" {
			c.fail(p+".private_key_file", "required for %s", k.Algorithm)
			continue
		}
		st, err := os.Stat(k.PrivateKeyFile)
		switch {
		case err != nil:
			c.fail(keyPath(p+".private_key_file", k), "cannot read %s: %v", k.PrivateKeyFile, unwrapPathErr(err))
		case st.IsDir():
			c.fail(keyPath(p+".private_key_file", k), "%s is a directory", k.PrivateKeyFile)
		case prod:
			if problem := keyFileProblem(k.PrivateKeyFile, st, currentIdentity()); problem != "" {
				c.fail(keyPath(p+".private_key_file", k), "%s", problem)
			}
		}
	}
	checkSigningKey(c, iss.Keys)
	cids := map[string]bool{}
	for i, cl := range iss.Clients {
		p := fmt.Sprintf("issuer.clients[%d]", i)
		if cl.ID == "" {
			c.fail(p+".id", "required")
		} else if cids[cl.ID] {
			c.fail(p+".id", "duplicate client id %q", cl.ID)
		}
		cids[cl.ID] = true
		checkClientAuth(c, cfg, i, cl, prod)
		if prod && cl.envSecretLen > 0 && cl.envSecretLen < minHMACSecret {
			c.fail("CLIENT_SECRET", "must be at least %d bytes in production (got %d)", minHMACSecret, cl.envSecretLen)
		}
		if prod && cl.envSecretExample {
			c.fail("CLIENT_SECRET", "this is an example secret published in the repository; generate your own (openssl rand -base64 36)")
		}
		for j, s := range cl.Scopes {
			if !validScope(s) {
				c.fail(fmt.Sprintf("%s.scopes[%d]", p, j), "%q is not a valid scope (RFC 6749 §3.3)", s)
			}
		}
	}
}

func checkRoute(c *checker, p string, r Route) {
	if !strings.HasPrefix(r.Path, "/") {
		c.fail(p+".path", "%q must start with /", r.Path)
	}
	for j, m := range r.Methods {
		if !validToken(m) {
			c.fail(fmt.Sprintf("%s.methods[%d]", p, j), "%q is not an HTTP method", m)
		}
	}
	switch r.Auth {
	case "none":
		if len(r.Scopes) > 0 {
			c.fail(p+".scopes", "auth: none ignores tokens, so scopes can never be checked; use auth: required")
		}
	case "optional", "required":
	default:
		c.fail(p+".auth", "%q is not one of none, optional, required", r.Auth)
	}
	for j, s := range r.Scopes {
		if !validScope(s) {
			c.fail(fmt.Sprintf("%s.scopes[%d]", p, j), "%q is not a valid scope", s)
		}
	}
	checkLimit(c, p+".rate_limit", r.RateLimit)
	checkRouteClaims(c, p, r)
}

func checkLimit(c *checker, p string, l *Limit) {
	if l == nil {
		return
	}
	if l.Requests <= 0 {
		c.fail(p+".requests", "must be positive, got %d", l.Requests)
	}
	if l.Per <= 0 {
		c.fail(p+".per", "must be a positive duration, got %s", l.Per.D())
	}
	if l.Burst < 0 {
		c.fail(p+".burst", "must not be negative, got %d", l.Burst)
	}
	switch {
	case l.Key == "subject", l.Key == "client_id", l.Key == "client_ip":
	case strings.HasPrefix(l.Key, "header:") && validToken(strings.TrimPrefix(l.Key, "header:")):
	default:
		c.fail(p+".key", "%q is not one of subject, client_id, client_ip, header:NAME", l.Key)
	}
}

func checkAddr(c *checker, p, addr string, emptyOK bool) {
	if addr == "" && emptyOK {
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		c.fail(p, "%q is not host:port (for example :8080 or 127.0.0.1:8080)", addr)
	}
}

func checkURL(c *checker, p, raw string, needHTTP bool) {
	if raw == "" {
		c.fail(p, "required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		c.fail(p, "%q is not an absolute http(s) URL", raw)
		return
	}
	if needHTTP && u.Fragment != "" {
		c.fail(p, "%q must not have a fragment", raw)
	}
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// ParsePrefix accepts an IP address or a CIDR range.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// validToken reports whether s is an RFC 9110 token (header names, methods).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// validScope reports whether s is a scope-token (RFC 6749 §3.3); the one
// definition lives in package claim, beside the parser tokens go through.
func validScope(s string) bool { return claim.ValidScope(s) }
