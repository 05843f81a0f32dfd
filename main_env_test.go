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
	"syscall"
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
		if !jsonLogHas(stderr.String(), want.name, want.why) {
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
	if !jsonLogHas(stderr.String(), "TOKEN_BINDING_SALT", "sender-constrained") {
		t.Errorf("startup log lacks the TOKEN_BINDING_SALT warning:\n%s", stderr)
	}
}

// TestHealthCheckReadsNoSecrets: -health-check reads the listen addresses
// and nothing else, so a config whose CLIENT_SECRET would cost a bcrypt-31
// hash (minutes) and whose key file is missing is still probed at once.
func TestHealthCheckReadsNoSecrets(t *testing.T) {
	t.Parallel()
	_, admin, _ := startReady(t, []string{"-config", "config.example.yaml"})
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte(`
admin_listen: "${ADMIN_ADDR}"
environment: production
issuer: {url: https://a.test, keys: [{id: k, algorithm: ES256, private_key_file: /nonexistent.pem}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"ADMIN_ADDR=" + admin, "CLIENT_ID=svc", "CLIENT_SECRET=" + strong, "BCRYPT_COST=31"}
	done := make(chan struct{})
	var code int
	var errOut string
	go func() {
		defer close(done)
		code, _, errOut = runCLI(t, "", env, "-health-check", "-config", cfg)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("-health-check is still running: it is loading secrets")
	}
	if code != 0 {
		t.Errorf("-health-check: exit %d %s", code, errOut)
	}
	// Without a file: the environment's ADMIN_BIND_ADDR, and BIND_ADDR when
	// the admin endpoints are on the main listener.
	if code, _, errOut := runCLI(t, "", []string{"ADMIN_BIND_ADDR=" + admin, "CLIENT_ID=svc", "CLIENT_SECRET=" + strong, "BCRYPT_COST=31"}, "-health-check"); code != 0 {
		t.Errorf("-health-check from the environment: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "", []string{"ADMIN_BIND_ADDR=none", "BIND_ADDR=" + admin}, "-health-check"); code != 0 {
		t.Errorf("-health-check on listen (ADMIN_BIND_ADDR=none): exit %d %s", code, errOut)
	}
}

// TestSecretMountedKeyAsNonRoot starts the binary as uid 65532 (the image's
// user) against a key laid out as a Kubernetes Secret volume does it: a
// symlink through ..data to a file owned by root, group fsGroup, mode 0440.
// Production accepts it when fsGroup is one of the process's groups (its
// primary group or a supplementary one) and refuses everything wider.
func TestSecretMountedKeyAsNonRoot(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown files and start a process as another user")
	}
	const app = 65532
	// A directory every user can traverse, unlike t.TempDir (0700).
	root, err := os.MkdirTemp("", "portcullis-secret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "portcullis")
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	pemKey := ecKeyPEM(t)
	// volume lays the key out the kubelet's way and returns the config.
	volume := func(name string, uid, gid int, mode os.FileMode) string {
		vol := filepath.Join(root, name)
		ts := filepath.Join(vol, "..2026_12_01_18_30_00.000000001")
		if err := os.MkdirAll(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(ts, "es256.pem")
		if err := os.WriteFile(f, pemKey, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(f, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Base(ts), filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..data/es256.pem", filepath.Join(vol, "es256.pem")); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(vol, "config.yaml")
		yaml := "environment: production\nissuer:\n  url: https://auth.test\n  keys: [{id: k1, algorithm: ES256, private_key_file: " + filepath.Join(vol, "es256.pem") + "}]\n"
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tests := []struct {
		name       string
		uid, gid   int
		mode       os.FileMode
		cred       syscall.Credential
		wantRefuse string
	}{
		{"fsGroup is the primary group", 0, app, 0o440, syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}, ""},
		{"fsGroup is a supplementary group", 0, app, 0o440, syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{app}}, ""},
		{"owned by the process, 0400", app, app, 0o400, syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}, ""},
		{"group the process is not in", 0, app, 0o440, syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}, "not one of this process's groups"},
		{"readable by others", 0, app, 0o444, syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}, "accessible by others"},
		{"group-readable but owned by another user", 4242, app, 0o440, syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}, "owned by uid 4242"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := volume(fmt.Sprintf("vol%d", i), tt.uid, tt.gid, tt.mode)
			for _, mode := range [][]string{{"-check-config", "-config", cfg}, {"-config", cfg}} {
				check := mode[0] == "-check-config"
				if !check && tt.wantRefuse == "" {
					continue // starting for real is covered below
				}
				cmd := exec.Command(bin, mode...)
				cmd.Env = []string{"BIND_ADDR=127.0.0.1:0", "ADMIN_BIND_ADDR=127.0.0.1:0"}
				cred := tt.cred
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &cred}
				out, err := cmd.CombinedOutput()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				switch {
				case tt.wantRefuse == "" && code != 0:
					t.Errorf("%v: exit %d, want the key accepted:\n%s", mode, code, out)
				case tt.wantRefuse != "" && check && code != 1, tt.wantRefuse != "" && !check && code != 2:
					t.Errorf("%v: exit %d, want a refusal:\n%s", mode, code, out)
				case tt.wantRefuse != "" && !(strings.Contains(string(out), tt.wantRefuse) && strings.Contains(string(out), "issuer.keys[0].private_key_file") && strings.Contains(string(out), "es256.pem")):
					t.Errorf("%v: output does not name the key, the file and %q:\n%s", mode, tt.wantRefuse, out)
				}
			}
		})
	}
	// And it serves: started as 65532 with the fsGroup layout, the JWKS
	// publishes the mounted key.
	cfg := volume("serve", 0, app, 0o440)
	admin := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	main := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Env = []string{"BIND_ADDR=" + main, "ADMIN_BIND_ADDR=" + admin}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() { _ = cmd.Process.Kill(); <-exited }()
	for {
		if resp, err := http.Get("http://" + main + "/.well-known/jwks.json"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), `"kid":"k1"`) {
				t.Errorf("JWKS %s lacks the mounted key k1", b)
			}
			return
		}
		select {
		case <-exited:
			t.Fatalf("portcullis as uid %d exited: %s", app, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
