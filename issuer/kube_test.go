package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
)

const (
	kubeIssuer  = "https://kubernetes.default.svc.cluster.local"
	kubeSubject = "system:serviceaccount:orders:orders-api"
)

// kubeAPI stands in for a Kubernetes API server's service-account issuer:
// HTTPS with a certificate from its own CA, /openid/v1/jwks served only to
// a request bearing the current token (as with the
// system:service-account-issuer-discovery role), and RS256 tokens with the
// claim shape of projected service-account tokens.
type kubeAPI struct {
	srv       *httptest.Server
	caFile    string
	tokenFile string

	mu     sync.Mutex
	bearer string
	keys   map[string]*rsa.PrivateKey // kid → signing key, all published

	served, refused atomic.Int32
}

func newKubeAPI(t *testing.T) *kubeAPI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(ecP256.Curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kubernetes-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(ecP256.Curve, rand.Reader)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    []string{"kubernetes.default.svc"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	k := &kubeAPI{
		caFile: filepath.Join(dir, "ca.crt"), tokenFile: filepath.Join(dir, "token"),
		keys: map[string]*rsa.PrivateKey{"sa-1": rsa2048},
	}
	if err := os.WriteFile(k.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	k.rotateBearer(t, true)
	k.srv = httptest.NewUnstartedServer(http.HandlerFunc(k.serve))
	k.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	k.srv.StartTLS()
	t.Cleanup(k.srv.Close)
	return k
}

func (k *kubeAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/openid/v1/jwks" {
		http.NotFound(w, r)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+k.bearer {
		k.refused.Add(1)
		http.Error(w, `{"kind":"Status","code":401}`, http.StatusUnauthorized)
		return
	}
	k.served.Add(1)
	set := jwkSet{}
	for kid, key := range k.keys {
		j, _ := publicJWK(&Key{ID: kid, Alg: "RS256", public: &key.PublicKey})
		set.Keys = append(set.Keys, j)
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_ = json.NewEncoder(w).Encode(set)
}

// rotateBearer issues a new bearer token to the server; with writeFile the
// pod's token file gets it too (the kubelet's rotation).
func (k *kubeAPI) rotateBearer(t *testing.T, writeFile bool) {
	t.Helper()
	k.mu.Lock()
	k.bearer = newJTI() + "." + newJTI()
	tok := k.bearer
	k.mu.Unlock()
	if writeFile {
		if err := os.WriteFile(k.tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func (k *kubeAPI) addKey(kid string, key *rsa.PrivateKey) {
	k.mu.Lock()
	k.keys[kid] = key
	k.mu.Unlock()
}

// saToken mints a projected service-account token as the kubelet requests
// it (audience portcullis, expirationSeconds 600) with the API server's
// exact claim shape.
func saToken(t *testing.T, key *rsa.PrivateKey, kid string, now time.Time, mut func(jwt.MapClaims)) string {
	t.Helper()
	c := jwt.MapClaims{
		"aud": []string{"portcullis"},
		"exp": now.Add(600 * time.Second).Unix(),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"iss": kubeIssuer,
		"jti": "6f2a3a1e-5a8e-4c9e-9a43-7d2d1f0c1b7e",
		"kubernetes.io": map[string]any{
			"namespace": "orders",
			"node":      map[string]string{"name": "node-1", "uid": "1c0f3a54-2b4e-4b0e-8a8b-0d6b6f7f2e11"},
			"pod":       map[string]string{"name": "orders-api-7d9f8c6b5-x2x7k", "uid": "8a5c3c70-33f5-4b8b-9d0e-d0b1c0c6a9f1"},
			"serviceaccount": map[string]string{
				"name": "orders-api", "uid": "b1a7d3b5-4c2f-4e0c-8f87-52b6f9f1a7c3",
			},
			"warnafter": now.Add(480 * time.Second).Unix(),
		},
		"sub": kubeSubject,
	}
	if mut != nil {
		mut(c)
	}
	return sign(t, jwt.SigningMethodRS256, key, kid, c)
}

// kubeIssuerConfig trusts the stand-in API server and registers the
// federated client orders-sa.
func kubeIssuerConfig(t *testing.T, k *kubeAPI) *config.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.TrustedIssuers = []config.TrustedIssuer{{
		Issuer: kubeIssuer, JWKSURL: k.srv.URL + "/openid/v1/jwks", Algorithms: []string{"RS256"},
		Audience: []string{"portcullis"}, CAFile: k.caFile, BearerTokenFile: k.tokenFile,
	}}
	cfg.Issuer.Clients = append(cfg.Issuer.Clients, config.Client{
		ID: "orders-sa", Scopes: []string{"orders:read"},
		Federated: &config.Federated{Issuer: kubeIssuer, Subject: kubeSubject},
	})
	return cfg
}

// startIssuer starts the issuer's fetchers and waits until it is ready.
func startIssuer(t *testing.T, iss *Issuer) {
	t.Helper()
	if iss.Ready() {
		t.Fatal("ready before any key set was fetched")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	iss.Start(ctx)
	waitFor(t, "issuer ready", iss.Ready)
}

// waitFor polls cond (a condition, not a duration) for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
}

func TestFederatedKubernetesToken(t *testing.T) {
	t.Parallel()
	k := newKubeAPI(t)
	clk := &clock{t: time.Now().Truncate(time.Second)}
	iss := newTestIssuer(t, kubeIssuerConfig(t, k), Options{Now: clk.now})
	srv := serveIssuer(t, iss)
	startIssuer(t, iss)
	if k.served.Load() != 1 || k.refused.Load() != 0 {
		t.Fatalf("API server served %d, refused %d; want the first fetch with the token", k.served.Load(), k.refused.Load())
	}
	now := clk.now()
	valid := saToken(t, rsa2048, "sa-1", now, nil)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	withID := func(a, id string) url.Values {
		f := assertionForm(a)
		f.Set("client_id", id)
		return f
	}
	cases := []struct {
		name   string
		form   url.Values
		status int
	}{
		{"valid", assertionForm(valid), 200},
		{"reused until it expires", assertionForm(valid), 200},
		{"with its client_id", withID(valid, "orders-sa"), 200},
		{"client_id of another client", withID(valid, "billing"), 401},
		{"expired", assertionForm(saToken(t, rsa2048, "sa-1", now.Add(-20*time.Minute), nil)), 401},
		{"audience of another service", assertionForm(saToken(t, rsa2048, "sa-1", now, func(c jwt.MapClaims) { c["aud"] = []string{"https://kubernetes.default.svc"} })), 401},
		{"signed by another key", assertionForm(saToken(t, otherKey, "sa-1", now, nil)), 401},
		{"another service account", assertionForm(saToken(t, rsa2048, "sa-1", now, func(c jwt.MapClaims) { c["sub"] = "system:serviceaccount:orders:default" })), 401},
		{"no sub, client_id claim instead", assertionForm(saToken(t, rsa2048, "sa-1", now, func(c jwt.MapClaims) {
			delete(c, "sub")
			c["client_id"] = kubeSubject
		})), 401},
		{"another issuer", assertionForm(saToken(t, rsa2048, "sa-1", now, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), 401},
		{"no exp", assertionForm(saToken(t, rsa2048, "sa-1", now, func(c jwt.MapClaims) { delete(c, "exp") })), 401},
	}
	for _, c := range cases {
		status, body := postToken(t, srv.URL, c.form)
		if status != c.status {
			t.Errorf("%s: status %d (%v), want %d", c.name, status, body, c.status)
			continue
		}
		if status != 200 {
			continue
		}
		p, err := iss.Verify(body["access_token"].(string))
		if err != nil || p.Subject != "orders-sa" || p.ScopeString != "orders:read" {
			t.Errorf("%s: issued token %+v (%v), want sub orders-sa, scope orders:read", c.name, p, err)
		}
	}
}

// TestKubernetesKeyRotationAndBearerRotation: the API server starts signing
// with a new key while the pod's token rotates; the bearer_token_file is
// re-read on the fetch the unknown kid triggers.
func TestKubernetesKeyRotationAndBearerRotation(t *testing.T) {
	t.Parallel()
	k := newKubeAPI(t)
	clk := &clock{t: time.Now().Truncate(time.Second)}
	iss := newTestIssuer(t, kubeIssuerConfig(t, k), Options{Now: clk.now})
	srv := serveIssuer(t, iss)
	startIssuer(t, iss)

	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k.addKey("sa-2", newKey)
	// The API server rotated the token but the file still has the old one:
	// the fetch is refused, and so is the assertion.
	k.rotateBearer(t, false)
	if status, _ := postToken(t, srv.URL, assertionForm(saToken(t, newKey, "sa-2", clk.now(), nil))); status != 401 {
		t.Fatalf("new kid with a stale bearer token: status %d, want 401", status)
	}
	if k.refused.Load() != 1 {
		t.Fatalf("API server refused %d fetches, want 1", k.refused.Load())
	}
	// The kubelet writes the new token. Within the minute no further
	// unknown-kid fetch happens; after it, the fetch reads the new file.
	k.rotateBearer(t, true)
	if status, _ := postToken(t, srv.URL, assertionForm(saToken(t, newKey, "sa-2", clk.now(), nil))); status != 401 {
		t.Fatalf("second unknown kid within a minute: status %d, want 401 (no refetch)", status)
	}
	if got := k.served.Load() + k.refused.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2 (start, one unknown-kid fetch)", got)
	}
	clk.t = clk.t.Add(unknownKidRefetch)
	if status, body := postToken(t, srv.URL, assertionForm(saToken(t, newKey, "sa-2", clk.now(), nil))); status != 200 {
		t.Fatalf("after rotation: status %d %v, want 200", status, body)
	}
	if k.served.Load() != 2 {
		t.Fatalf("API server served %d fetches, want 2", k.served.Load())
	}
}
