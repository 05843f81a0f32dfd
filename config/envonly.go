package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultEnvKeyAlgorithm is the algorithm of a JWT_PRIVATE_KEY_FILE key
// when JWT_KEY_ALGORITHM is unset.
const DefaultEnvKeyAlgorithm = "ES256"

// FromEnv builds the configuration from the defaults and the environment
// alone, for deployments that configure everything through variables (a
// twelve-factor .env file, a Kubernetes Secret) and pass no file:
// ISSUER_URL (required), UPSTREAM_URL, AUDIENCE (space-separated; default
// the issuer URL), one route {path: /}, JWT_PRIVATE_KEY_FILE with
// JWT_KEY_ALGORITHM or else JWT_SECRET_KEY, CLIENT_ID/CLIENT_SECRET/
// CLIENT_SCOPES, and every override a file accepts. It validates like Parse.
func FromEnv(getenv func(string) string) (*Config, []string, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var errs []error
	cfg := &Config{Routes: []Route{{Path: "/"}}}
	cfg.Issuer.URL = getenv("ISSUER_URL")
	if cfg.Issuer.URL == "" {
		errs = append(errs, errors.New("environment ISSUER_URL: required when no configuration file is given (-config or PORTCULLIS_CONFIG)"))
	}
	if u := getenv("UPSTREAM_URL"); u != "" {
		cfg.Upstream = &Upstream{URL: u}
	}
	cfg.Audience = splitSpaces(getenv("AUDIENCE"))
	applyEnvKeyFile(cfg, getenv)
	errs = append(errs, applyEnv(cfg, getenv)...)
	applyDefaults(cfg)
	warnings, verrs := validate(cfg)
	for _, err := range verrs {
		// "issuer.url: required" would repeat the ISSUER_URL error above.
		if cfg.Issuer.URL == "" && err.Error() == "issuer.url: required" {
			continue
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return cfg, warnings, nil
}

// splitSpaces splits on the ASCII space only, ignoring empty pieces, as
// scope strings are split.
func splitSpaces(s string) []string {
	var out []string
	for _, f := range strings.Split(s, " ") {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// applyEnvKeyFile makes JWT_PRIVATE_KEY_FILE the signing key when nothing
// else configured one. It runs before applyEnv, so a key file wins over
// JWT_SECRET_KEY.
func applyEnvKeyFile(cfg *Config, getenv func(string) string) {
	if len(cfg.Issuer.Keys) > 0 {
		return // looked up only when used, so IgnoredEnv can report it
	}
	file := getenv("JWT_PRIVATE_KEY_FILE")
	if file == "" {
		return
	}
	// The variable is relative to the working directory, not to a config
	// file's directory as private_key_file is.
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	alg := getenv("JWT_KEY_ALGORITHM")
	if alg == "" {
		alg = DefaultEnvKeyAlgorithm
	}
	cfg.Issuer.Keys = []Key{{ID: envKeyID(file), Algorithm: alg, PrivateKeyFile: file, env: "JWT_PRIVATE_KEY_FILE"}}
}

// envKeyID names a key that came without an id: the same file gives the
// same kid in every replica and across restarts, and a new key gets a new
// kid, so relying parties that cache the JWKS by kid refetch it. The hash
// is truncated and reveals nothing usable about the key.
func envKeyID(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return "env" // validation reports the unreadable file
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.LimitReader(f, maxConfigBytes)); err != nil {
		return "env"
	}
	return "env-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// keyPath is a key's config path, prefixed with the environment variable it
// came from, if any.
func keyPath(path string, k Key) string {
	if k.env == "" {
		return path
	}
	name := k.env
	if k.env == "JWT_PRIVATE_KEY_FILE" && strings.HasSuffix(path, ".algorithm") {
		name = "JWT_KEY_ALGORITHM"
	}
	return fmt.Sprintf("environment %s (%s)", name, path)
}

// unusedEnv are variables that older auth services read and Portcullis has
// no use for, with the reason it has none; a user migrating a .env file is
// told instead of left guessing.
var unusedEnv = []struct{ name, why string }{
	{"DATABASE_URL", "Portcullis is stateless: clients come from the configuration, tokens are self-contained JWTs, and revocations and rate limits live in memory or in Redis (REDIS_URL)"},
	{"TOKEN_BINDING_SALT", "sender-constrained (bound) tokens are not configured through this variable; Portcullis issues bearer tokens"},
	{"JWT_REFRESH_EXPIRATION_DAYS", "the client credentials grant issues no refresh tokens; JWT_EXPIRATION_HOURS sets the access token lifetime"},
	{"REFRESH_TOKEN_EXPIRATION_DAYS", "the client credentials grant issues no refresh tokens; JWT_EXPIRATION_HOURS sets the access token lifetime"},
	{"SESSION_SECRET", "Portcullis keeps no sessions or cookies"},
	{"JWT_ALGORITHM", "the algorithm of a JWT_PRIVATE_KEY_FILE key is JWT_KEY_ALGORITHM; JWT_SECRET_KEY is always HS256"},
	{"PORT", "the listen address is BIND_ADDR (host:port, for example :8080)"},
}

// envOnlyVars are read only in some cases; when set and not read, the
// reason says when they apply.
var envOnlyVars = []struct{ name, why string }{
	{"ISSUER_URL", "it applies only without a configuration file; with one, issuer.url applies (write ${ISSUER_URL} in the file to use the variable)"},
	{"UPSTREAM_URL", "it applies only without a configuration file; with one, upstream.url applies (write ${UPSTREAM_URL} in the file to use the variable)"},
	{"AUDIENCE", "it applies only without a configuration file; with one, audience applies (write ${AUDIENCE} in the file to use the variable)"},
	{"JWT_PRIVATE_KEY_FILE", "it applies only when the configuration names no key in issuer.keys"},
	{"JWT_KEY_ALGORITHM", "it applies only to a JWT_PRIVATE_KEY_FILE key, and none is in use"},
}

// IgnoredEnv returns, for each environment variable that is set but that
// this configuration does not use, a warning naming it and saying why.
// used reports whether loading the configuration read a variable (see
// RecordLookups): with a file, ISSUER_URL and the like are unused unless the
// file expands them as ${ISSUER_URL}.
func IgnoredEnv(getenv func(string) string, used func(name string) bool) []string {
	var out []string
	for _, v := range unusedEnv {
		if getenv(v.name) != "" {
			out = append(out, fmt.Sprintf("environment %s is set but not used: %s", v.name, v.why))
		}
	}
	for _, v := range envOnlyVars {
		if getenv(v.name) != "" && !used(v.name) {
			out = append(out, fmt.Sprintf("environment %s is set but not used: %s", v.name, v.why))
		}
	}
	return out
}

// RecordLookups wraps getenv and reports which names it was asked for. It
// is not safe for concurrent use: wrap one load.
func RecordLookups(getenv func(string) string) (wrapped func(string) string, used func(string) bool) {
	var seen []string
	wrapped = func(name string) string {
		if !slices.Contains(seen, name) {
			seen = append(seen, name)
		}
		return getenv(name)
	}
	return wrapped, func(name string) bool { return slices.Contains(seen, name) }
}
