package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

// strong is a 34-byte secret, long enough for production.
const strong = "0123456789abcdef0123456789abcdef-x"

// ecKeyPEM returns a fresh P-256 key in PKCS#8 PEM.
func ecKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// syncBuffer is a bytes.Buffer safe to read while a process writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startEnvOnly starts the binary with no -config and no PORTCULLIS_CONFIG:
// the environment is the whole configuration. It waits until ready.
func startEnvOnly(t *testing.T, env ...string) (main, admin string, stderr *syncBuffer) {
	t.Helper()
	return startReady(t, nil, env...)
}

// startReady starts the binary with args on free loopback ports and waits
// until /health/ready answers 200 (or fails the test if it exits).
func startReady(t *testing.T, args []string, env ...string) (main, admin string, stderr *syncBuffer) {
	t.Helper()
	main = fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	admin = fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "BIND_ADDR=" + main, "ADMIN_BIND_ADDR=" + admin}, env...)
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	for {
		if resp, err := http.Get("http://" + admin + "/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return main, admin, stderr
			}
		}
		select {
		case <-exited:
			t.Fatalf("portcullis exited: %s", stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// claimsOf decodes a JWT's payload without verifying it.
func claimsOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func fetchToken(t *testing.T, main, id, secret string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+main+"/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
		Scope       string `json:"scope"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &body) != nil {
		t.Fatalf("/token: %d %s", resp.StatusCode, b)
	}
	return body.AccessToken
}

// TestEnvOnlyProduction runs a production instance configured by the
// environment alone, as an older service's .env file would: a token from the
// environment's client reaches the upstream, with the identity and the
// audience the variables named, and the variables it has no use for are
// named in a JSON warning.
func TestEnvOnlyProduction(t *testing.T) {
	t.Parallel()
	seen := make(chan http.Header, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		fmt.Fprint(w, "ok")
	}))
	defer up.Close()
	main, _, stderr := startEnvOnly(t,
		"ISSUER_URL=https://auth.test", "UPSTREAM_URL="+up.URL, "AUDIENCE=orders-api billing-api",
		"JWT_SECRET_KEY="+strong, "CLIENT_ID=svc", "CLIENT_SECRET="+strong, "CLIENT_SCOPES=orders:read orders:write",
		"BCRYPT_COST=4", "DATABASE_URL=postgres://db/auth", "TOKEN_BINDING_SALT=pepper")

	token := fetchToken(t, main, "svc", strong)
	c := claimsOf(t, token)
	if c["iss"] != "https://auth.test" || c["sub"] != "svc" || c["scope"] != "orders:read orders:write" {
		t.Errorf("claims %v: want iss https://auth.test, sub svc, both scopes", c)
	}
	if aud := fmt.Sprint(c["aud"]); !strings.Contains(aud, "orders-api") || !strings.Contains(aud, "billing-api") {
		t.Errorf("aud %v, want AUDIENCE's orders-api and billing-api", c["aud"])
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+main+"/anything/1", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("proxied request: %d, want 200 through the one route {path: /}", resp.StatusCode)
	}
	if h := <-seen; h.Get("X-Auth-Subject") != "svc" || h.Get("Authorization") != "" {
		t.Errorf("upstream saw subject %q, authorization %q", h.Get("X-Auth-Subject"), h.Get("Authorization"))
	}
	// Without a token: 401 and nothing reaches the upstream.
	resp, err = http.Get("http://" + main + "/anything/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", resp.StatusCode)
	}
	select {
	case h := <-seen:
		t.Errorf("the upstream received a request without a token: %v", h)
	default:
	}
	for _, want := range []struct{ name, why string }{
		{"DATABASE_URL", "stateless"},
		{"TOKEN_BINDING_SALT", "sender-constrained"},
	} {
		if !logged(stderr, func(s string) bool { return jsonLogHas(s, want.name, want.why) }) {
			t.Errorf("stderr lacks a JSON warning naming %s and why (%q):\n%s", want.name, want.why, stderr)
		}
	}
}

// jsonLogHas reports whether a JSON log line at level WARN mentions all of words.
func jsonLogHas(logs string, words ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["level"] != "WARN" {
			continue
		}
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(line, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestEnvOnlyKeyFile signs with JWT_PRIVATE_KEY_FILE (ES256 by default), and
// JWT_SECRET_KEY, also set, is not used: the JWKS publishes the EC key.
func TestEnvOnlyKeyFile(t *testing.T) {
	t.Parallel()
	key := filepath.Join(t.TempDir(), "es256.pem")
	if err := os.WriteFile(key, ecKeyPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	main, _, _ := startEnvOnly(t, "ISSUER_URL=https://auth.test", "JWT_PRIVATE_KEY_FILE="+key,
		"JWT_SECRET_KEY="+strong, "CLIENT_ID=svc", "CLIENT_SECRET="+strong, "BCRYPT_COST=4")
	resp, err := http.Get("http://" + main + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(b, &jwks); err != nil || len(jwks.Keys) != 1 || jwks.Keys[0]["alg"] != "ES256" {
		t.Fatalf("JWKS %s: want the one ES256 key", b)
	}
	token := fetchToken(t, main, "svc", strong)
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if !strings.Contains(string(header), `"alg":"ES256"`) || !strings.Contains(string(header), fmt.Sprintf(`"kid":"%s"`, jwks.Keys[0]["kid"])) {
		t.Errorf("token header %s: want ES256 with the published kid", header)
	}
}

// TestEnvOnlyRefusals: in production, startup from the environment refuses
// what would be unsafe, exits 2 and names the variable.
func TestEnvOnlyRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	openKey := filepath.Join(dir, "open.pem")
	if err := os.WriteFile(openKey, ecKeyPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(openKey, 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"ISSUER_URL=https://auth.test", "BCRYPT_COST=4"}
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"no issuer", []string{"JWT_SECRET_KEY=" + strong}, []string{"ISSUER_URL"}},
		{"no key", base, []string{"issuer.keys", "no key"}},
		{"short HS256 secret", append(base, "JWT_SECRET_KEY=too-short"), []string{"JWT_SECRET_KEY", "32 bytes"}},
		{"example HS256 secret", append(base, "JWT_SECRET_KEY=development-only-hs256-secret-change-me-now"), []string{"JWT_SECRET_KEY", "example"}},
		{"short client secret", append(base, "JWT_SECRET_KEY="+strong, "CLIENT_ID=svc", "CLIENT_SECRET=short"), []string{"CLIENT_SECRET", "32 bytes"}},
		{"example client secret", append(base, "JWT_SECRET_KEY="+strong, "CLIENT_ID=svc", "CLIENT_SECRET=replace-me-with-at-least-32-random-bytes!!"), []string{"CLIENT_SECRET", "example"}},
		{"key readable by others", append(base, "JWT_PRIVATE_KEY_FILE="+openKey), []string{"JWT_PRIVATE_KEY_FILE", openKey, "others"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, _, errOut := runCLI(t, "", tt.env)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
}

// TestUnusedVariablesWithAFile: the warning is given in file mode too, by
// -check-config (stdout) and at startup (a JSON line on stderr).
func TestUnusedVariablesWithAFile(t *testing.T) {
	t.Parallel()
	env := []string{"DATABASE_URL=postgres://db/auth", "UPSTREAM_URL=http://127.0.0.1:9"}
	code, out, _ := runCLI(t, "", env, "-check-config", "-config", "config.example.yaml")
	if code != 0 {
		t.Fatalf("-check-config: exit %d\n%s", code, out)
	}
	for _, want := range []string{"warning: environment DATABASE_URL is set but not used: Portcullis is stateless", "warning: environment UPSTREAM_URL is set but not used"} {
		if !strings.Contains(out, want) {
			t.Errorf("-check-config output lacks %q:\n%s", want, out)
		}
	}
	_, _, stderr := startReady(t, []string{"-config", "config.example.yaml"}, "TOKEN_BINDING_SALT=pepper")
	if !logged(stderr, func(s string) bool { return jsonLogHas(s, "TOKEN_BINDING_SALT", "sender-constrained") }) {
		t.Errorf("startup log lacks the TOKEN_BINDING_SALT warning:\n%s", stderr)
	}
}
