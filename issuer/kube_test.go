package issuer

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"net/url"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/kubetest"
)

const (
	kubeIssuer  = kubetest.Issuer
	kubeSubject = "system:serviceaccount:orders:orders-api"
)

// saToken mints a projected service-account token for orders/orders-api.
func saToken(t *testing.T, key *rsa.PrivateKey, kid string, now time.Time, mut func(jwt.MapClaims)) string {
	t.Helper()
	c := kubetest.Claims("orders", "orders-api", now)
	if mut != nil {
		mut(c)
	}
	return kubetest.Sign(t, key, kid, c)
}

// kubeIssuerConfig trusts the stand-in API server and registers the
// federated client orders-sa.
func kubeIssuerConfig(t *testing.T, k *kubetest.APIServer) *config.Config {
	t.Helper()
	cfg := testConfig(t)
	cfg.TrustedIssuers = []config.TrustedIssuer{{
		Issuer: kubeIssuer, JWKSURL: k.JWKSURL, Algorithms: []string{"RS256"},
		Audience: []string{"portcullis"}, CAFile: k.CAFile, BearerTokenFile: k.TokenFile,
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
	k := kubetest.Start(t)
	saKey := k.Key("sa-1")
	clk := &clock{t: time.Now().Truncate(time.Second)}
	iss := newTestIssuer(t, kubeIssuerConfig(t, k), Options{Now: clk.now})
	srv := serveIssuer(t, iss)
	startIssuer(t, iss)
	if k.Served.Load() != 1 || k.Refused.Load() != 0 {
		t.Fatalf("API server served %d, refused %d; want the first fetch with the token", k.Served.Load(), k.Refused.Load())
	}
	now := clk.now()
	valid := saToken(t, saKey, "sa-1", now, nil)
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
		{"expired", assertionForm(saToken(t, saKey, "sa-1", now.Add(-20*time.Minute), nil)), 401},
		{"audience of another service", assertionForm(saToken(t, saKey, "sa-1", now, func(c jwt.MapClaims) { c["aud"] = []string{"https://kubernetes.default.svc"} })), 401},
		{"signed by another key", assertionForm(saToken(t, otherKey, "sa-1", now, nil)), 401},
		{"another service account", assertionForm(saToken(t, saKey, "sa-1", now, func(c jwt.MapClaims) { c["sub"] = "system:serviceaccount:orders:default" })), 401},
		{"no sub, client_id claim instead", assertionForm(saToken(t, saKey, "sa-1", now, func(c jwt.MapClaims) {
			delete(c, "sub")
			c["client_id"] = kubeSubject
		})), 401},
		{"another issuer", assertionForm(saToken(t, saKey, "sa-1", now, func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), 401},
		{"no exp", assertionForm(saToken(t, saKey, "sa-1", now, func(c jwt.MapClaims) { delete(c, "exp") })), 401},
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
	k := kubetest.Start(t)
	clk := &clock{t: time.Now().Truncate(time.Second)}
	iss := newTestIssuer(t, kubeIssuerConfig(t, k), Options{Now: clk.now})
	srv := serveIssuer(t, iss)
	startIssuer(t, iss)

	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	k.AddKey("sa-2", newKey)
	// The API server rotated the token but the file still has the old one:
	// the fetch is refused, and so is the assertion.
	k.RotateBearer(t, false)
	if status, _ := postToken(t, srv.URL, assertionForm(saToken(t, newKey, "sa-2", clk.now(), nil))); status != 401 {
		t.Fatalf("new kid with a stale bearer token: status %d, want 401", status)
	}
	if k.Refused.Load() != 1 {
		t.Fatalf("API server refused %d fetches, want 1", k.Refused.Load())
	}
	// The kubelet writes the new token. Within the minute no further
	// unknown-kid fetch happens; after it, the fetch reads the new file.
	k.RotateBearer(t, true)
	if status, _ := postToken(t, srv.URL, assertionForm(saToken(t, newKey, "sa-2", clk.now(), nil))); status != 401 {
		t.Fatalf("second unknown kid within a minute: status %d, want 401 (no refetch)", status)
	}
	if got := k.Served.Load() + k.Refused.Load(); got != 2 {
		t.Fatalf("%d fetches, want 2 (start, one unknown-kid fetch)", got)
	}
	clk.t = clk.t.Add(unknownKidRefetch)
	if status, body := postToken(t, srv.URL, assertionForm(saToken(t, newKey, "sa-2", clk.now(), nil))); status != 200 {
		t.Fatalf("after rotation: status %d %v, want 200", status, body)
	}
	if k.Served.Load() != 2 {
		t.Fatalf("API server served %d fetches, want 2", k.Served.Load())
	}
}
