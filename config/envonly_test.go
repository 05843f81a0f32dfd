package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const strongSecret = "0123456789abcdef0123456789abcdef-x"

func TestFromEnv(t *testing.T) {
	t.Parallel()
	cfg, _, err := FromEnv(env(map[string]string{
		"ISSUER_URL":     "https://auth.example.com",
		"UPSTREAM_URL":   "http://127.0.0.1:3000",
		"AUDIENCE":       "orders-api  billing-api ",
		"JWT_SECRET_KEY": strongSecret,
		"CLIENT_ID":      "svc",
		"CLIENT_SECRET":  strongSecret,
		"CLIENT_SCOPES":  "orders:read orders:write",
		"BCRYPT_COST":    "4",
		"BIND_ADDR":      "127.0.0.1:18080",
		"LOG_LEVEL":      "DEBUG",
	}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"environment", cfg.Environment, Production},
		{"issuer", cfg.Issuer.URL, "https://auth.example.com"},
		{"upstream", cfg.Upstream.URL, "http://127.0.0.1:3000"},
		{"upstream timeout", cfg.Upstream.Timeout.D().String(), "30s"},
		{"audience", strings.Join(cfg.Audience, ","), "orders-api,billing-api"},
		{"routes", len(cfg.Routes), 1},
		{"route path", cfg.Routes[0].Path, "/"},
		{"route auth", cfg.Routes[0].Auth, "required"},
		{"key", cfg.Issuer.Keys[0].Algorithm, "HS256"},
		{"client", cfg.Issuer.Clients[0].ID, "svc"},
		{"client scopes", strings.Join(cfg.Issuer.Clients[0].Scopes, " "), "orders:read orders:write"},
		{"listen", cfg.Listen, "127.0.0.1:18080"},
		{"admin", cfg.AdminAddr(), ":9090"},
		{"log level", cfg.Log.Level, "debug"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestFromEnvDefaults(t *testing.T) {
	t.Parallel()
	cfg, warnings, err := FromEnv(env(map[string]string{"ISSUER_URL": "https://auth.example.com", "ENVIRONMENT": "development"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream != nil {
		t.Errorf("upstream = %+v, want none without UPSTREAM_URL", cfg.Upstream)
	}
	if !slices.Equal(cfg.Audience, []string{"https://auth.example.com"}) {
		t.Errorf("audience = %v, want the issuer URL", cfg.Audience)
	}
	if len(cfg.Issuer.Keys) != 0 || len(warnings) == 0 || !strings.Contains(warnings[0], "ephemeral") {
		t.Errorf("keys %v, warnings %v: want no key and the ephemeral-key warning in development", cfg.Issuer.Keys, warnings)
	}
}

func TestFromEnvKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := writeKey(t, dir, 0o600)
	get := env(map[string]string{"ISSUER_URL": "https://a.example", "JWT_PRIVATE_KEY_FILE": p, "JWT_SECRET_KEY": strongSecret})
	cfg, _, err := FromEnv(get)
	if err != nil {
		t.Fatal(err)
	}
	k := cfg.Issuer.Keys
	if len(k) != 1 || k[0].Algorithm != DefaultEnvKeyAlgorithm || k[0].PrivateKeyFile != p || !strings.HasPrefix(k[0].ID, "env-") {
		t.Fatalf("keys = %+v, want the one ES256 key from JWT_PRIVATE_KEY_FILE", k)
	}
	again, _, _ := FromEnv(get)
	if again.Issuer.Keys[0].ID != k[0].ID {
		t.Errorf("kid %q then %q: want the same kid for the same file", k[0].ID, again.Issuer.Keys[0].ID)
	}
	if err := os.WriteFile(p, []byte("-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if other, _, _ := FromEnv(get); other.Issuer.Keys[0].ID == k[0].ID {
		t.Errorf("kid %q unchanged for a new key file: relying parties would keep the old key", k[0].ID)
	}
}

func TestFromEnvRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := writeKey(t, dir, 0o644)
	base := map[string]string{"ISSUER_URL": "https://a.example", "JWT_SECRET_KEY": strongSecret, "BCRYPT_COST": "4"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no issuer", with("ISSUER_URL", ""), "environment ISSUER_URL: required"},
		{"no key", with("JWT_SECRET_KEY", ""), "issuer.keys: no key configured"},
		{"short secret", with("JWT_SECRET_KEY", "short"), "environment JWT_SECRET_KEY (issuer.keys[0].secret): HS256 secret must be at least 32 bytes"},
		{"example secret", with("JWT_SECRET_KEY", ExampleHMACSecrets[0]), "environment JWT_SECRET_KEY (issuer.keys[0].secret): this is the example secret"},
		{"short client secret", with("CLIENT_ID", "svc", "CLIENT_SECRET", "short"), "CLIENT_SECRET: must be at least 32 bytes"},
		{"example client secret", with("CLIENT_ID", "svc", "CLIENT_SECRET", ExampleClientSecrets[1]), "CLIENT_SECRET: this is an example secret"},
		{"open key file", with("JWT_PRIVATE_KEY_FILE", open), "environment JWT_PRIVATE_KEY_FILE (issuer.keys[0].private_key_file): " + open + " is accessible by others"},
		{"missing key file", with("JWT_PRIVATE_KEY_FILE", filepath.Join(dir, "none.pem")), "environment JWT_PRIVATE_KEY_FILE (issuer.keys[0].private_key_file): cannot read"},
		{"bad algorithm", with("JWT_PRIVATE_KEY_FILE", open, "JWT_KEY_ALGORITHM", "RS128"), "environment JWT_KEY_ALGORITHM (issuer.keys[0].algorithm)"},
		{"bad upstream", with("UPSTREAM_URL", "localhost:3000"), "upstream.url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := FromEnv(env(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromEnv: %v, want an error containing %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "issuer.url: required") {
				t.Errorf("FromEnv: %v: the missing issuer is reported twice", err)
			}
		})
	}
}

func TestIgnoredEnv(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"DATABASE_URL": "postgres://x", "TOKEN_BINDING_SALT": "s", "ISSUER_URL": "https://a.example",
		"UPSTREAM_URL": "http://127.0.0.1:1", "JWT_SECRET_KEY": strongSecret,
	}
	file := "environment: development\nissuer: {url: '${ISSUER_URL}'}\n"
	rec, used := RecordLookups(env(vars))
	if _, _, err := Parse([]byte(file), t.TempDir(), rec); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(IgnoredEnv(env(vars), used), "\n")
	for _, want := range []string{
		"environment DATABASE_URL is set but not used: Portcullis is stateless",
		"environment TOKEN_BINDING_SALT is set but not used: sender-constrained",
		"environment UPSTREAM_URL is set but not used",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "ISSUER_URL") {
		t.Errorf("ISSUER_URL reported unused although the file expands it:\n%s", got)
	}
	rec, used = RecordLookups(env(vars))
	if _, _, err := FromEnv(rec); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(IgnoredEnv(env(vars), used), "\n"); strings.Contains(got, "UPSTREAM_URL") || !strings.Contains(got, "DATABASE_URL") {
		t.Errorf("environment-only mode warnings:\n%s\nwant DATABASE_URL, not UPSTREAM_URL", got)
	}
}

func TestListeners(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name              string
		path              string
		env               map[string]string
		wantMain, wantAdm string
	}{
		{"defaults", "", nil, ":8080", ":9090"},
		{"environment", "", map[string]string{"BIND_ADDR": "127.0.0.1:1", "ADMIN_BIND_ADDR": "127.0.0.1:2"}, "127.0.0.1:1", "127.0.0.1:2"},
		{"file, with secrets it never reads", write("a.yaml", "listen: '${BIND_ADDR:-127.0.0.1:8080}'\nadmin_listen: \"\"\nissuer: {keys: [{secret: '${MISSING}'}]}\nbogus: 1\n"), nil, "127.0.0.1:8080", ""},
		{"env over file", write("b.yaml", "listen: 127.0.0.1:5\nadmin_listen: 127.0.0.1:6\n"), map[string]string{"ADMIN_BIND_ADDR": "none"}, "127.0.0.1:5", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, a, err := Listeners(tt.path, env(tt.env))
			if err != nil || m != tt.wantMain || a != tt.wantAdm {
				t.Errorf("Listeners = %q, %q, %v; want %q, %q", m, a, err, tt.wantMain, tt.wantAdm)
			}
		})
	}
}

// FuzzListeners: any document either yields addresses or an error, never a
// panic, and never an empty listen address.
func FuzzListeners(f *testing.F) {
	for _, seed := range []string{
		"", "listen: ':8080'\n", "admin_listen: \"\"\n", "listen: '${BIND_ADDR:-127.0.0.1:8080}'\nadmin_listen: '${X'\n",
		"listen: [a]\n", "a: &a [*a]\n", "listen: 8080\nadmin_listen: ~\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, _, err := listenersFrom(data, env(map[string]string{"BIND_ADDR": "127.0.0.1:1"}))
		if err == nil && m == "" {
			t.Errorf("no error and an empty listen address for %q", data)
		}
	})
}
