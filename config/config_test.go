package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const minimal = `
environment: development
issuer: {url: https://auth.example.com}
`

func TestParseDefaults(t *testing.T) {
	t.Parallel()
	cfg, _, err := Parse([]byte(minimal), t.TempDir(), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen", cfg.Listen, ":8080"},
		{"admin", cfg.AdminAddr(), ":9090"},
		{"grpc off", cfg.GRPCListen, ""},
		{"ttl", cfg.Issuer.TokenTTL.D(), time.Hour},
		{"skew", cfg.ClockSkew.D(), 30 * time.Second},
		{"audience", strings.Join(cfg.Audience, ","), "https://auth.example.com"},
		{"token limit", cfg.RateLimit.TokenEndpoint.Requests, 20},
		{"failure", cfg.RateLimit.OnRedisFailure, "local"},
		{"hsts", cfg.SecurityHeaders["Strict-Transport-Security"], "max-age=31536000; includeSubDomains"},
		{"subject header", cfg.IdentityHeaders.Subject, "X-Auth-Subject"},
		{"security log", cfg.Log.ShouldSecurityLog(), true},
		{"limits on", cfg.RateLimit.LimitsEnabled(), true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func writeKey(t *testing.T, dir string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(p, []byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeKey(t, dir, 0o644)
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		want []string
	}{
		{"unknown key", minimal + "lisen: x\n", nil, []string{"lisen: unknown key"}},
		{"unknown nested key", minimal + "routes: [{path: /, metods: [GET]}]\n", nil, []string{"routes[0].metods: unknown key"}},
		{"bad duration", minimal + "clock_skew: 30 seconds\n", nil, []string{"clock_skew: invalid duration"}},
		{"bad int", minimal + "rate_limit: {default: {requests: many, per: 1s}}\n", nil, []string{"rate_limit.default.requests: expected a whole number"}},
		{"short HS secret in production", `
environment: production
issuer: {url: https://a.example, keys: [{id: h, algorithm: HS256, secret: short}]}
`, nil, []string{"issuer.keys[0].secret: HS256 secret must be at least 32 bytes"}},
		{"missing key file", `
issuer: {url: https://a.example, keys: [{id: e, algorithm: ES256, private_key_file: nope.pem}]}
`, nil, []string{"issuer.keys[0].private_key_file: cannot read"}},
		{"world-readable key in production", `
environment: production
issuer: {url: https://a.example, keys: [{id: e, algorithm: ES256, private_key_file: k.pem}]}
`, nil, []string{"issuer.keys[0].private_key_file:", "k.pem is accessible by others (mode 0644)"}},
		{"no key in production", "environment: production\nissuer: {url: https://a.example}\n", nil, []string{"issuer.keys: no key configured"}},
		{"example hash in production", `
environment: production
issuer:
  url: https://a.example
  keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]
  clients: [{id: c, secret_hash: "` + ExampleSecretHashes[0] + `"}]
`, nil, []string{"issuer.clients[0].secret_hash: this is the example client"}},
		{"bad algorithm", minimal + "trusted_issuers: [{issuer: https://i, jwks_url: https://i/j, algorithms: [HS256]}]\n", nil, []string{"trusted_issuers[0].algorithms[0]"}},
		{"bad auth", minimal + "routes: [{path: /, auth: maybe}]\n", nil, []string{"routes[0].auth"}},
		{"bad limit key", minimal + "rate_limit: {default: {requests: 1, per: 1s, key: user}}\n", nil, []string{"rate_limit.default.key"}},
		{"bad failure policy", minimal + "rate_limit: {on_redis_failure: panic}\n", nil, []string{"rate_limit.on_redis_failure"}},
		{"bad redis url", minimal + "redis: {url: http://x}\n", nil, []string{"redis.url"}},
		{"bad grpc_listen", minimal + "grpc_listen: \"9191\"\n", nil, []string{"grpc_listen: \"9191\" is not host:port"}},
		{"grpc_listen shares listen", minimal + "grpc_listen: \":8080\"\n", nil, []string{"grpc_listen: \":8080\" is also listen"}},
		{"bad GRPC_BIND_ADDR", minimal, map[string]string{"GRPC_BIND_ADDR": "localhost"}, []string{"grpc_listen: \"localhost\" is not host:port"}},
		{"bad env override", minimal, map[string]string{"RATE_LIMIT_REQUESTS_PER_MINUTE": "lots"}, []string{"RATE_LIMIT_REQUESTS_PER_MINUTE"}},
		{"short CLIENT_SECRET in production", `
environment: production
issuer: {url: https://a.example, keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]}
`, map[string]string{"CLIENT_ID": "svc", "CLIENT_SECRET": "short", "BCRYPT_COST": "4"}, []string{"CLIENT_SECRET: must be at least 32 bytes"}},
		{"example CLIENT_SECRET in production", `
environment: production
issuer: {url: https://a.example, keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]}
`, map[string]string{"CLIENT_ID": "svc", "CLIENT_SECRET": ExampleClientSecrets[1], "BCRYPT_COST": "4"}, []string{"CLIENT_SECRET: this is an example secret"}},
		{"every problem at once", minimal + "lisen: x\nclock_skew: nope\nroutes: [{path: x}]\n", nil,
			[]string{"lisen: unknown key", "clock_skew: invalid duration"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := Parse([]byte(tc.yaml), dir, env(tc.env))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestPrivateKeyModeAcceptedWhenPrivate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeKey(t, dir, 0o600)
	_, _, err := Parse([]byte(`
environment: production
issuer: {url: https://a.example, keys: [{id: e, algorithm: ES256, private_key_file: k.pem}]}
`), dir, env(nil))
	if err != nil {
		t.Fatalf("Parse: %v, want a 0600 key accepted", err)
	}
}

func TestEnvironmentExpansionAndOverrides(t *testing.T) {
	t.Parallel()
	yaml := `
environment: ${ENVIRONMENT:-development}
listen: "${PORT_ADDR}"
issuer:
  url: https://auth.example.com
  clients: [{id: a, secret_hash: "$2a$04$abcdefghijklmnopqrstuuJ5ExvUIVGoGu0K0C3I1cViSn8nlmW2W"}]
`
	cfg, _, err := Parse([]byte(yaml), t.TempDir(), env(map[string]string{
		"PORT_ADDR": ":1234", "ADMIN_BIND_ADDR": "127.0.0.1:9999", "GRPC_BIND_ADDR": "127.0.0.1:9191", "LOG_LEVEL": "DEBUG",
		"JWT_EXPIRATION_HOURS": "2", "REDIS_URL": "redis://127.0.0.1:1/0", "DISABLE_RATE_LIMIT": "true",
		"RATE_LIMIT_REQUESTS_PER_MINUTE": "7", "SECURITY_EVENTS_LOG": "false",
		"JWT_SECRET_KEY": "0123456789abcdef0123456789abcdef",
		"CLIENT_ID":      "svc", "CLIENT_SECRET": "0123456789abcdef0123456789abcdef", "CLIENT_SCOPES": "a b", "BCRYPT_COST": "4",
	}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"expanded", cfg.Listen, ":1234"},
		{"default expanded", cfg.Environment, "development"},
		{"admin", cfg.AdminAddr(), "127.0.0.1:9999"},
		{"grpc", cfg.GRPCListen, "127.0.0.1:9191"},
		{"level", cfg.Log.Level, "debug"},
		{"ttl", cfg.Issuer.TokenTTL.D(), 2 * time.Hour},
		{"redis", cfg.Redis.URL.Reveal(), "redis://127.0.0.1:1/0"},
		{"limits", cfg.RateLimit.LimitsEnabled(), false},
		{"rpm", cfg.RateLimit.Default.Requests, 7},
		{"security log", cfg.Log.ShouldSecurityLog(), false},
		{"hs key", cfg.Issuer.Keys[0].Algorithm, "HS256"},
		{"env client", cfg.Issuer.Clients[1].ID, "svc"},
		{"env scopes", strings.Join(cfg.Issuer.Clients[1].Scopes, " "), "a b"},
		{"secret redacted", Secret("x").String(), "[redacted]"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestExpand(t *testing.T) {
	t.Parallel()
	get := env(map[string]string{"A": "1", "EMPTY": ""})
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"${A}", "1"},
		{"x${A}y${A}", "x1y1"},
		{"${MISSING:-d}", "d"},
		{"${EMPTY:-d}", "d"},
		{"$$A", "$A"},
		{"$2a$12$abc", "$2a$12$abc"},
	}
	for _, tc := range tests {
		got, err := expand(tc.in, get)
		if err != nil || got != tc.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"${A", "${}", "${1X}"} {
		if _, err := expand(bad, get); err == nil {
			t.Errorf("expand(%q) succeeded, want an error", bad)
		}
	}
}

func TestExampleConfigLoads(t *testing.T) {
	t.Parallel()
	cfg, _, err := Load("../config.example.yaml", env(nil))
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	if cfg.Environment != Development || len(cfg.Issuer.Clients) != 1 || len(cfg.Routes) == 0 {
		t.Errorf("example config loaded as %+v", cfg)
	}
}

// FuzzParse: any input either loads or fails with an error; never a panic,
// and a loaded config always passes validation again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "routes: [{path: /, methods: [get]}]\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Add([]byte("listen: ${X:-:1}\nissuer: {url: http://x}\nenvironment: development\n"))
	if data, err := os.ReadFile("../config.example.yaml"); err == nil {
		f.Add(data)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, _, err := Parse(data, dir, env(nil))
		if err != nil {
			return
		}
		if _, errs := validate(cfg); len(errs) > 0 {
			t.Fatalf("loaded config fails validation: %v", errs)
		}
	})
}

func TestAliasBombRefused(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("trusted_proxies: *a8\n")
	done := make(chan error, 1)
	go func() { _, _, err := Parse([]byte(b.String()), t.TempDir(), env(nil)); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("alias bomb loaded, want an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("alias bomb still expanding after 10s")
	}
}
