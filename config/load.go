package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// Environment names.
const (
	Development = "development"
	Production  = "production"
)

// DefaultBcryptCost is used when BCRYPT_COST is unset.
const DefaultBcryptCost = 12

// maxConfigBytes bounds the file read: a config is a few KiB, and reading an
// arbitrary file (say a device) whole would be a way to hang startup.
const maxConfigBytes = 4 << 20

// Load reads the file at path and returns the validated configuration, the
// warnings that do not stop startup, and an error joining every problem found.
// Relative file paths inside the config are resolved against its directory.
func Load(path string, getenv func(string) string) (*Config, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, nil, fmt.Errorf("reading config %s: larger than %d bytes", path, maxConfigBytes)
	}
	return Parse(data, filepath.Dir(path), getenv)
}

// Parse decodes YAML, expands ${VAR} and ${VAR:-default} from getenv, applies
// the environment overrides, fills defaults and validates. dir anchors
// relative paths. It reads key files to check them but changes nothing.
func Parse(data []byte, dir string, getenv func(string) string) (*Config, []string, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, nil, fmt.Errorf("config is not valid YAML: %w", err)
	}
	cfg := &Config{}
	d := &decoder{getenv: getenv}
	if root.Kind != 0 {
		d.decode(&root, reflect.ValueOf(cfg).Elem(), "")
	}
	applyEnvKeyFile(cfg, getenv)
	d.errs = append(d.errs, applyEnv(cfg, getenv)...)
	// Validate even after decode errors, so one run reports every problem;
	// a value that failed to decode is left at its default and raises no
	// second complaint.
	applyDefaults(cfg)
	resolvePaths(cfg, dir)
	warnings, errs := validate(cfg)
	if errs = append(d.errs, errs...); len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return cfg, warnings, nil
}

func resolvePaths(cfg *Config, dir string) {
	resolveTLSPaths(cfg, dir)
	for i, k := range cfg.Issuer.Keys {
		if k.PrivateKeyFile != "" && !filepath.IsAbs(k.PrivateKeyFile) {
			cfg.Issuer.Keys[i].PrivateKeyFile = filepath.Join(dir, k.PrivateKeyFile)
		}
	}
	for i := range cfg.TrustedIssuers {
		for _, f := range []*string{&cfg.TrustedIssuers[i].CAFile, &cfg.TrustedIssuers[i].BearerTokenFile} {
			if *f != "" && !filepath.IsAbs(*f) {
				*f = filepath.Join(dir, *f)
			}
		}
	}
}

// applyEnv applies the environment variables that override the file.
func applyEnv(cfg *Config, getenv func(string) string) []error {
	var errs []error
	bad := func(name, v, want string) {
		errs = append(errs, fmt.Errorf("environment %s=%q: %s", name, v, want))
	}
	if v := getenv("BIND_ADDR"); v != "" {
		cfg.Listen = v
	}
	if v, ok := lookup(getenv, "ADMIN_BIND_ADDR"); ok {
		cfg.AdminListen = &v
	}
	if v, ok := lookup(getenv, "GRPC_BIND_ADDR"); ok {
		cfg.GRPCListen = v
	}
	if v := getenv("ENVIRONMENT"); v != "" {
		cfg.Environment = v
	}
	if v := getenv("LOG_LEVEL"); v != "" {
		cfg.Log.Level = strings.ToLower(v)
	}
	if v := getenv("SECURITY_EVENTS_LOG"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("SECURITY_EVENTS_LOG", v, "want true or false")
		} else {
			cfg.Log.SecurityEvents = &b
		}
	}
	applyEnvKey(cfg, getenv)
	if v := getenv("JWT_EXPIRATION_HOURS"); v != "" {
		h, err := strconv.ParseFloat(v, 64)
		if err != nil || h <= 0 {
			bad("JWT_EXPIRATION_HOURS", v, "want a positive number of hours")
		} else {
			cfg.Issuer.TokenTTL = Duration(time.Duration(h * float64(time.Hour)))
		}
	}
	cost, err := BcryptCost(getenv)
	if err != nil {
		errs = append(errs, err)
	}
	if v := getenv("REDIS_URL"); v != "" {
		if cfg.Redis == nil {
			cfg.Redis = &Redis{}
		}
		cfg.Redis.URL = Secret(v)
		cfg.Redis.Addrs = nil
	}
	if v := getenv("RATE_LIMIT_REQUESTS_PER_MINUTE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			bad("RATE_LIMIT_REQUESTS_PER_MINUTE", v, "want a positive whole number")
		} else {
			l := Limit{Requests: n, Per: Duration(time.Minute)}
			if cfg.RateLimit.Default != nil {
				l.Key, l.Burst = cfg.RateLimit.Default.Key, cfg.RateLimit.Default.Burst
			}
			cfg.RateLimit.Default = &l
		}
	}
	if v := getenv("DISABLE_RATE_LIMIT"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad("DISABLE_RATE_LIMIT", v, "want true or false")
		} else {
			enabled := !b
			cfg.RateLimit.Enabled = &enabled
		}
	}
	if id := getenv("CLIENT_ID"); id != "" || getenv("CLIENT_SECRET") != "" {
		secret := getenv("CLIENT_SECRET")
		switch {
		case id == "" || secret == "":
			errs = append(errs, errors.New("environment CLIENT_ID and CLIENT_SECRET: set both or neither"))
		case len(secret) > 72:
			bad("CLIENT_SECRET", "[redacted]", "longer than 72 bytes, which bcrypt cannot check")
		default:
			hash, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
			if err != nil {
				errs = append(errs, fmt.Errorf("environment CLIENT_SECRET: hashing: %w", err))
				break
			}
			cfg.Issuer.Clients = append(cfg.Issuer.Clients, Client{
				ID: id, SecretHash: Secret(hash), Scopes: strings.Fields(getenv("CLIENT_SCOPES")),
				envSecretLen: len(secret), envSecretExample: slices.Contains(ExampleClientSecrets, secret),
			})
		}
	}
	return errs
}

// applyEnvKey makes JWT_SECRET_KEY the one signing key when the file has
// none; with keys in the file it is only what ${JWT_SECRET_KEY} expands to.
func applyEnvKey(cfg *Config, getenv func(string) string) {
	if v := getenv("JWT_SECRET_KEY"); v != "" && len(cfg.Issuer.Keys) == 0 {
		// With keys in the file, JWT_SECRET_KEY is only what ${JWT_SECRET_KEY}
		// expands to; without, it is the one signing key.
		cfg.Issuer.Keys = []Key{{ID: "hs256", Algorithm: "HS256", Secret: Secret(v), env: "JWT_SECRET_KEY"}}
	}
}

// BcryptCost is the cost for hashing secrets: BCRYPT_COST, or
// DefaultBcryptCost when it is unset. -hash-secret and CLIENT_SECRET share it.
func BcryptCost(getenv func(string) string) (int, error) {
	v := getenv("BCRYPT_COST")
	if v == "" {
		return DefaultBcryptCost, nil
	}
	c, err := strconv.Atoi(v)
	if err != nil || c < bcrypt.MinCost || c > bcrypt.MaxCost {
		return DefaultBcryptCost, fmt.Errorf("environment BCRYPT_COST=%q: want a whole number from %d to %d", v, bcrypt.MinCost, bcrypt.MaxCost)
	}
	return c, nil
}

func lookup(getenv func(string) string, name string) (string, bool) {
	// getenv cannot tell unset from empty; ADMIN_BIND_ADDR="" is meaningful
	// ("admin endpoints on listen"), so a sentinel form is accepted too.
	v := getenv(name)
	if v == "" {
		return "", false
	}
	if v == `""` || v == "none" {
		return "", true
	}
	return v, true
}

// DefaultSecurityHeaders are added to every response unless overridden.
func DefaultSecurityHeaders() map[string]string {
	return map[string]string{
		"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
		"X-Frame-Options":           "DENY",
		"X-Content-Type-Options":    "nosniff",
		"Content-Security-Policy":   "default-src 'self'",
		"Referrer-Policy":           "no-referrer",
	}
}

func applyDefaults(c *Config) {
	defaultTLS(c)
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if c.Environment == "" {
		c.Environment = Production
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Shutdown.Grace == 0 {
		c.Shutdown.Grace = Duration(30 * time.Second)
	}
	if c.Upstream != nil && c.Upstream.Timeout == 0 {
		c.Upstream.Timeout = Duration(30 * time.Second)
	}
	if c.Issuer.TokenTTL == 0 {
		c.Issuer.TokenTTL = Duration(time.Hour)
	}
	if len(c.Audience) == 0 && c.Issuer.URL != "" {
		c.Audience = []string{c.Issuer.URL}
	}
	for i := range c.TrustedIssuers {
		t := &c.TrustedIssuers[i]
		if len(t.Algorithms) == 0 {
			t.Algorithms = []string{"RS256", "ES256"}
		}
		if len(t.Audience) == 0 {
			t.Audience = c.Audience
		}
		if len(t.ScopeClaims) == 0 {
			t.ScopeClaims = []string{"scope", "scp"}
		}
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = Duration(30 * time.Second)
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Auth == "" {
			r.Auth = "required"
		}
		for j, m := range r.Methods {
			r.Methods[j] = strings.ToUpper(m)
		}
		defaultLimit(r.RateLimit, "subject")
	}
	if c.DefaultAction == "" {
		c.DefaultAction = "deny"
	}
	defaultLimit(c.RateLimit.Default, "subject")
	if c.RateLimit.TokenEndpoint == nil {
		c.RateLimit.TokenEndpoint = &Limit{Requests: 20, Per: Duration(time.Minute), Burst: 5, Key: "client_ip"}
	}
	defaultLimit(c.RateLimit.TokenEndpoint, "client_ip")
	if c.RateLimit.NewTokens == nil {
		// ~100 ES256 checks a second cost under 1% of a core per address.
		c.RateLimit.NewTokens = &Limit{Requests: 100, Per: Duration(time.Second), Burst: 200, Key: "client_ip"}
	}
	defaultLimit(c.RateLimit.NewTokens, "client_ip")
	if c.RateLimit.OnRedisFailure == "" {
		c.RateLimit.OnRedisFailure = "local"
	}
	if c.Redis != nil && c.Redis.Timeout == 0 {
		c.Redis.Timeout = Duration(50 * time.Millisecond)
	}
	h := DefaultSecurityHeaders()
	for k, v := range c.SecurityHeaders {
		delete(h, canonicalCase(h, k))
		h[k] = v
	}
	c.SecurityHeaders = h
	ih := &c.IdentityHeaders
	setDefault(&ih.Subject, "X-Auth-Subject")
	setDefault(&ih.ClientID, "X-Auth-Client-Id")
	setDefault(&ih.Scopes, "X-Auth-Scopes")
	setDefault(&ih.Issuer, "X-Auth-Issuer")
	setDefault(&ih.TokenID, "X-Auth-Token-Id")
	setDefault(&c.Admin.Scope, "portcullis:admin")
}

func canonicalCase(m map[string]string, k string) string {
	for existing := range m {
		if strings.EqualFold(existing, k) {
			return existing
		}
	}
	return k
}

func defaultLimit(l *Limit, key string) {
	if l == nil {
		return
	}
	if l.Burst == 0 {
		l.Burst = l.Requests
	}
	if l.Key == "" {
		l.Key = key
	}
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}
