// Package config defines Portcullis's YAML schema and loads it: environment
// expansion, environment overrides, defaults and validation, reporting every
// problem at once with its key path. Loading is free of side effects, so tests
// and -check-config call it directly.
package config

import (
	"fmt"
	"time"
)

// Config is the whole configuration file after defaults and overrides.
// A loaded Config is never mutated; it is safe for concurrent reads.
type Config struct {
	Listen               string            `yaml:"listen"`
	AdminListen          *string           `yaml:"admin_listen"`
	TLS                  *TLS              `yaml:"tls"`
	GRPCListen           string            `yaml:"grpc_listen"`
	Environment          string            `yaml:"environment"`
	Log                  Log               `yaml:"log"`
	Shutdown             Shutdown          `yaml:"shutdown"`
	Upstream             *Upstream         `yaml:"upstream"`
	TrustedProxies       []string          `yaml:"trusted_proxies"`
	Issuer               Issuer            `yaml:"issuer"`
	TrustedIssuers       []TrustedIssuer   `yaml:"trusted_issuers"`
	Audience             []string          `yaml:"audience"`
	ClockSkew            Duration          `yaml:"clock_skew"`
	ForwardAuthorization bool              `yaml:"forward_authorization"`
	Routes               []Route           `yaml:"routes"`
	DefaultAction        string            `yaml:"default_action"`
	RateLimit            RateLimit         `yaml:"rate_limit"`
	Redis                *Redis            `yaml:"redis"`
	SecurityHeaders      map[string]string `yaml:"security_headers"`
	IdentityHeaders      IdentityHeaders   `yaml:"identity_headers"`
	Admin                Admin             `yaml:"admin"`
	Reload               Reload            `yaml:"reload"`
}

// Log configures structured logging.
type Log struct {
	Level          string `yaml:"level"`
	Format         string `yaml:"format"`
	SecurityEvents *bool  `yaml:"security_events"`
}

// Shutdown configures the SIGTERM sequence.
type Shutdown struct {
	Delay Duration `yaml:"delay"`
	Grace Duration `yaml:"grace"`
}

// Upstream is the protected application.
type Upstream struct {
	URL     string   `yaml:"url"`
	Timeout Duration `yaml:"timeout"`
}

// Issuer configures the token endpoint and the keys that sign and verify.
type Issuer struct {
	URL      string   `yaml:"url"`
	TokenTTL Duration `yaml:"token_ttl"`
	Keys     []Key    `yaml:"keys"`
	Clients  []Client `yaml:"clients"`
}

// Key is one signing or verification key; its algorithm is pinned.
type Key struct {
	ID             string `yaml:"id"`
	Algorithm      string `yaml:"algorithm"`
	PrivateKeyFile string `yaml:"private_key_file"`
	Secret         Secret `yaml:"secret"`
	// PublishOnly keys are in the JWKS and verify tokens but never sign:
	// the first step of a rotation announces the next key this way.
	PublishOnly bool `yaml:"publish_only"`

	// env names the environment variable this key came from (JWT_SECRET_KEY,
	// JWT_PRIVATE_KEY_FILE), so problems name what the user actually set.
	env string
}

// Client is an OAuth 2.0 client allowed to use the client credentials grant.
// It authenticates with exactly one of SecretHash, JWKS, JWKSURL or
// Federated.
type Client struct {
	ID         string   `yaml:"id"`
	SecretHash Secret   `yaml:"secret_hash"`
	Scopes     []string `yaml:"scopes"`
	Audience   []string `yaml:"audience"`
	// JWKS and JWKSURL hold the client's public keys for private_key_jwt
	// (RFC 7523 §2.2 client assertions signed by the client's own key).
	JWKS    *JWKSet `yaml:"jwks"`
	JWKSURL string  `yaml:"jwks_url"`
	// Federated accepts a trusted issuer's token for one subject as the
	// client's credential (workload identity).
	Federated *Federated `yaml:"federated"`

	// envSecretLen is the length of a CLIENT_SECRET from the environment,
	// kept so production can refuse a short one after hashing.
	envSecretLen     int
	envSecretExample bool
}

// TrustedIssuer is an external identity provider whose tokens are accepted.
type TrustedIssuer struct {
	Issuer      string   `yaml:"issuer"`
	JWKSURL     string   `yaml:"jwks_url"`
	Algorithms  []string `yaml:"algorithms"`
	Audience    []string `yaml:"audience"`
	RequireType *bool    `yaml:"require_type"`
	// ScopeClaims names the claims that carry scopes, tried in order: the
	// first present and not null is read (default [scope, scp]).
	ScopeClaims []string `yaml:"scope_claims"`
	// CAFile holds PEM roots for fetching JWKSURL; "" uses the system roots.
	CAFile string `yaml:"ca_file"`
	// BearerTokenFile is sent as Authorization: Bearer when fetching
	// JWKSURL and re-read on every fetch (a pod's own token rotates).
	BearerTokenFile string `yaml:"bearer_token_file"`
}

// JWKSet is an inline RFC 7517 JWK Set of public keys.
type JWKSet struct {
	Keys []JWK `yaml:"keys"`
}

// JWK is one public RFC 7517 JSON Web Key. D is accepted only so that a
// private key pasted by mistake gets a clear error instead of "unknown key".
type JWK struct {
	Kty     string   `yaml:"kty"`
	Kid     string   `yaml:"kid"`
	Alg     string   `yaml:"alg"`
	Use     string   `yaml:"use"`
	KeyOps  []string `yaml:"key_ops"`
	Crv     string   `yaml:"crv"`
	X       string   `yaml:"x"`
	Y       string   `yaml:"y"`
	N       string   `yaml:"n"`
	E       string   `yaml:"e"`
	X5c     []string `yaml:"x5c"`
	X5t     string   `yaml:"x5t"`
	X5tS256 string   `yaml:"x5t#S256"`
	D       Secret   `yaml:"d"`
}

// Federated names the trusted issuer and subject whose tokens authenticate
// a client (a Kubernetes projected service-account token, for example).
type Federated struct {
	Issuer  string `yaml:"issuer"`
	Subject string `yaml:"subject"`
}

// Route is one entry of the routing table; the first match wins.
type Route struct {
	Path      string   `yaml:"path"`
	Methods   []string `yaml:"methods"`
	Host      string   `yaml:"host"`
	Auth      string   `yaml:"auth"`
	Scopes    []string `yaml:"scopes"`
	Audience  []string `yaml:"audience"`
	RateLimit *Limit   `yaml:"rate_limit"`
	// Claims requires each named claim to hold one of the listed values.
	Claims map[string]ClaimValues `yaml:"claims"`
}

// Limit is a token-bucket limit: Requests per Per sustained, Burst at once.
type Limit struct {
	Requests int      `yaml:"requests"`
	Per      Duration `yaml:"per"`
	Burst    int      `yaml:"burst"`
	Key      string   `yaml:"key"`
	Shadow   bool     `yaml:"shadow"`
}

// RateLimit holds the global rate-limit settings.
type RateLimit struct {
	Enabled       *bool  `yaml:"enabled"`
	Default       *Limit `yaml:"default"`
	TokenEndpoint *Limit `yaml:"token_endpoint"`
	// NewTokens bounds, per client IP, how many tokens not seen before may
	// have their signature checked: floods of fresh or forged tokens stop
	// before any crypto. Its key is always client_ip.
	NewTokens      *Limit `yaml:"new_tokens"`
	OnRedisFailure string `yaml:"on_redis_failure"`
}

// Redis configures the shared store; nil means everything stays in memory.
type Redis struct {
	URL        Secret   `yaml:"url"`
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	Password   Secret   `yaml:"password"`
	Timeout    Duration `yaml:"timeout"`
}

// IdentityHeaders names the headers that carry the verified identity upstream.
type IdentityHeaders struct {
	Subject  string `yaml:"subject"`
	ClientID string `yaml:"client_id"`
	Scopes   string `yaml:"scopes"`
	Issuer   string `yaml:"issuer"`
	TokenID  string `yaml:"token_id"`
	// Claims maps a header name to the claim whose value it carries.
	Claims map[string]string `yaml:"claims"`
}

// Admin configures the admin API.
type Admin struct {
	Scope string `yaml:"scope"`
}

// Reload configures how a running server notices configuration changes.
type Reload struct {
	// WatchInterval is how often the config, key and certificate files are
	// checked for changed contents; nil means DefaultWatchInterval, 0 turns
	// watching off (SIGHUP only).
	WatchInterval *Duration `yaml:"watch_interval"`
}

// DefaultWatchInterval is reload.watch_interval when it is not set.
const DefaultWatchInterval = 10 * time.Second

// Interval returns the effective watch interval; 0 means SIGHUP only.
func (r Reload) Interval() time.Duration {
	if r.WatchInterval == nil {
		return DefaultWatchInterval
	}
	return r.WatchInterval.D()
}

// Duration is a time.Duration written in Go syntax ("90s", "1h").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalText parses Go duration syntax.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use Go syntax such as 90s, 5m, 1h)", string(b))
	}
	*d = Duration(v)
	return nil
}

// Secret is a string that never prints itself, so a config dump or a log
// line cannot leak it.
type Secret string

// String redacts the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the value in %#v.
func (s Secret) GoString() string { return s.String() }

// Reveal returns the secret value; call it only where the value is used.
func (s Secret) Reveal() string { return string(s) }

// ShouldSecurityLog reports whether security events are logged (default true).
func (l Log) ShouldSecurityLog() bool { return l.SecurityEvents == nil || *l.SecurityEvents }

// LimitsEnabled reports whether rate limiting is on (default true).
func (r RateLimit) LimitsEnabled() bool { return r.Enabled == nil || *r.Enabled }

// AdminAddr returns the admin listener address; "" means the main listener.
func (c *Config) AdminAddr() string {
	if c.AdminListen == nil {
		return ":9090"
	}
	return *c.AdminListen
}
