package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

// openidClientDir holds the npm openid-client test harness; `make deps`
// installs its node_modules.
const openidClientDir = "testdata/openid-client"

// requireOpenIDClient finds node and the installed openid-client package:
// skipped when missing, failed under CI=true.
func requireOpenIDClient(t *testing.T) string {
	t.Helper()
	node := redistest.Require(t, "node")
	if _, err := os.Stat(filepath.Join(openidClientDir, "node_modules", "openid-client", "package.json")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("npm openid-client is not installed in %s; CI needs it (make deps installs it)", openidClientDir)
		}
		t.Skipf("npm openid-client is not installed in %s; run make deps", openidClientDir)
	}
	return node
}

// startPortcullisConfig runs the binary with a whole config on the given
// main address and a free admin port, and waits for readiness.
func startPortcullisConfig(t *testing.T, mainAddr, yaml string) (admin string, stderr *bytes.Buffer) {
	t.Helper()
	admin, stderr, _ = startPortcullisCmd(t, mainAddr, yaml)
	return admin, stderr
}

// startPortcullisCmd is startPortcullisConfig that also returns the process.
func startPortcullisCmd(t *testing.T, mainAddr, yaml string) (admin string, stderr *bytes.Buffer, cmd *exec.Cmd) {
	t.Helper()
	admin = fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(binary, "-config", cfg)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "BIND_ADDR=" + mainAddr, "ADMIN_BIND_ADDR=" + admin}
	stderr = &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return admin, stderr, cmd
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("portcullis not ready: %s", stderr)
		}
		time.Sleep(20 * time.Millisecond) // polling readiness
	}
}

// ecJWKs returns the private and public JWK of a fresh P-256 key.
func ecJWKs(t *testing.T, kid string) (private, public map[string]string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := k.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	d, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	b := base64.RawURLEncoding.EncodeToString
	public = map[string]string{"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "x": b(raw[1:33]), "y": b(raw[33:])}
	private = map[string]string{"d": b(d)}
	for k, v := range public {
		private[k] = v
	}
	return private, public
}

// TestOpenIDClientPrivateKeyJWT: the npm openid-client library discovers a
// running Portcullis (RFC 8414), authenticates with private_key_jwt and gets
// client_credentials tokens; a client holding the wrong key is refused.
func TestOpenIDClientPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	node := requireOpenIDClient(t)
	mainAddr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	issuerURL := "http://" + mainAddr
	priv, pub := ecJWKs(t, "reporting-2026")
	pubJSON, _ := json.Marshal(pub)
	startPortcullisConfig(t, mainAddr, `
environment: development
issuer:
  url: `+issuerURL+`
  clients:
    - id: reporting
      jwks: {keys: [`+string(pubJSON)+`]}
      scopes: [orders:read, orders:write]
audience: [orders-api]
routes: [{path: /, auth: none}]
`)
	resp, err := http.Get(issuerURL + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var md struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
		Algs    []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	if !strings.Contains(strings.Join(md.Methods, " "), "private_key_jwt") || !strings.Contains(strings.Join(md.Algs, " "), "ES256") {
		t.Fatalf("metadata lists methods %v, algorithms %v; want private_key_jwt and ES256", md.Methods, md.Algs)
	}

	run := func(jwk map[string]string, repeat int) (string, string, error) {
		j, _ := json.Marshal(jwk)
		cmd := exec.Command(node, "pkjwt.mjs")
		cmd.Dir = openidClientDir
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "ISSUER=" + issuerURL, "CLIENT_ID=reporting",
			"CLIENT_JWK=" + string(j), "SCOPE=orders:read", fmt.Sprint("REPEAT=", repeat)}
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
	out, errOut, err := run(priv, 2)
	if err != nil {
		t.Fatalf("openid-client failed: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d token responses, want 2: %s", len(lines), out)
	}
	for _, l := range lines {
		var tok struct {
			AccessToken string `json:"access_token"`
			Scope       string `json:"scope"`
		}
		if err := json.Unmarshal([]byte(l), &tok); err != nil || tok.Scope != "orders:read" {
			t.Fatalf("token response %s (%v)", l, err)
		}
		parts := strings.Split(tok.AccessToken, ".")
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var claims map[string]any
		_ = json.Unmarshal(payload, &claims)
		if claims["sub"] != "reporting" || claims["client_id"] != "reporting" || claims["iss"] != issuerURL {
			t.Errorf("access token claims %v", claims)
		}
	}

	wrong, _ := ecJWKs(t, "reporting-2026")
	_, errOut, err = run(wrong, 1)
	if err == nil || !strings.Contains(errOut, "invalid_client") {
		t.Fatalf("wrong key: err %v, stderr %s; want invalid_client", err, errOut)
	}
}
