package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/internal/kubetest"
	"github.com/portcullis/portcullis/internal/redistest"
)

// postAssertion sends a client_credentials request authenticated by a
// client assertion and returns the status and the decoded body.
func postAssertion(t *testing.T, base, assertion string, extra url.Values) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion}}
	for k, v := range extra {
		form[k] = v
	}
	resp, err := http.PostForm(base+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// TestClientAssertionsAcrossReplicas runs two Portcullis processes sharing a
// real redis-server and trusting a stand-in Kubernetes API server (HTTPS
// with its own CA, JWKS behind a bearer token): a pod's projected token is
// traded at either replica as often as it likes, while a private_key_jwt
// assertion is accepted once in the whole deployment, also after a replica
// restarts.
func TestClientAssertionsAcrossReplicas(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	kube := kubetest.Start(t)
	clientKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := clientKey.PublicKey.Bytes()
	b := base64.RawURLEncoding.EncodeToString
	issuerURL := "https://auth.test"
	cfg := func() string {
		return `
environment: development
issuer:
  url: ` + issuerURL + `
  clients:
    - id: reporting
      jwks: {keys: [{kty: EC, crv: P-256, kid: r1, x: "` + b(raw[1:33]) + `", y: "` + b(raw[33:]) + `"}]}
      scopes: [orders:read]
    - id: orders-sa
      federated: {issuer: ` + kubetest.Issuer + `, subject: "` + kubetest.Subject("orders", "orders-api") + `"}
      scopes: [orders:read]
trusted_issuers:
  - issuer: ` + kubetest.Issuer + `
    jwks_url: ` + kube.JWKSURL + `
    algorithms: [RS256]
    audience: [portcullis]
    ca_file: ` + kube.CAFile + `
    bearer_token_file: ` + kube.TokenFile + `
audience: [orders-api]
redis: {url: "` + rs.URL() + `", timeout: 500ms}
rate_limit: {token_endpoint: {requests: 1000, per: 1m, burst: 100, key: client_ip}}
routes: [{path: /healthz, auth: none}]
`
	}
	start := func() (string, func()) {
		addr := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
		stop := startPortcullisProcess(t, addr, cfg())
		return "http://" + addr, stop
	}
	a, stopA := start()
	bURL, _ := start()
	if kube.Served.Load() < 2 || kube.Refused.Load() != 0 {
		t.Fatalf("API server served %d, refused %d JWKS fetches; want each replica's first fetch with the pod's token", kube.Served.Load(), kube.Refused.Load())
	}

	sa := kubetest.Sign(t, kube.Key("sa-1"), "sa-1", kubetest.Claims("orders", "orders-api", time.Now()))
	for i, base := range []string{a, bURL, a} {
		if status, body := postAssertion(t, base, sa, nil); status != 200 || body["scope"] != "orders:read" {
			t.Fatalf("projected token, use %d: %d %v", i, status, body)
		}
	}
	expired := kubetest.Sign(t, kube.Key("sa-1"), "sa-1", kubetest.Claims("orders", "orders-api", time.Now().Add(-time.Hour)))
	if status, _ := postAssertion(t, a, expired, nil); status != 401 {
		t.Fatalf("expired projected token: status %d, want 401", status)
	}

	assertion := func() string {
		now := time.Now()
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
			"iss": "reporting", "sub": "reporting", "aud": issuerURL + "/token",
			"jti": b([]byte(now.String())), "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix(),
		})
		tok.Header["kid"] = "r1"
		s, err := tok.SignedString(clientKey)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	once := assertion()
	if status, body := postAssertion(t, a, once, url.Values{"client_id": {"reporting"}}); status != 200 {
		t.Fatalf("private_key_jwt on replica a: %d %v", status, body)
	}
	status, replayBody := postAssertion(t, bURL, once, nil)
	if status != 401 || replayBody["error"] != "invalid_client" {
		t.Fatalf("replay on replica b: %d %v, want 401 invalid_client", status, replayBody)
	}
	stopA()
	a, _ = start() // a restarted replica remembers through Redis
	if status, _ := postAssertion(t, a, once, nil); status != 401 {
		t.Fatalf("replay on restarted replica a: status %d, want 401", status)
	}
	// An unknown client answers exactly like the replay.
	_, unknownBody := postAssertion(t, a, assertion(), url.Values{"client_id": {"nobody"}})
	if fmt.Sprint(unknownBody) != fmt.Sprint(replayBody) {
		t.Errorf("unknown client %v, replay %v: want the same answer", unknownBody, replayBody)
	}
}

// startPortcullisProcess runs the binary with the config on addr, waits
// until it is ready and returns a function that stops it.
func startPortcullisProcess(t *testing.T, addr, yaml string) (stop func()) {
	t.Helper()
	_, _, cmd := startPortcullisCmd(t, addr, yaml)
	return func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }
}
