package extauthz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/issuer"
	"github.com/portcullis/portcullis/metrics"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/ratelimit"
	"github.com/portcullis/portcullis/revocation"
)

const testIssuer = "https://auth.test"

// testConfig has no upstream: Portcullis answers decisions only, as it does
// behind Envoy. 127.0.0.1 is trusted so /auth/verify reads X-Forwarded-*.
const testConfig = `
environment: development
trusted_proxies: [127.0.0.1]
issuer:
  url: https://auth.test
  keys: [{id: es, algorithm: ES256, private_key_file: key.pem}]
audience: [orders-api]
routes:
  - {path: /public, auth: none}
  - {path: /docs, auth: optional}
  - {path: /admin, scopes: [admin]}
  - {path: /orders, methods: [GET], scopes: [orders:read]}
  - {path: /limited, rate_limit: {requests: 2, per: 1m, burst: 2, key: subject}}
  - {path: /byip, auth: none, rate_limit: {requests: 1, per: 1m, burst: 1, key: client_ip}}
  - {path: /byheader, auth: none, rate_limit: {requests: 1, per: 1m, burst: 1, key: "header:X-Api-Key"}}
security_headers:
  Server: ""
`

// env is one Portcullis decision engine behind two front doors: the gRPC
// ext_authz server and the HTTP /auth/verify, both on loopback.
type env struct {
	h      *proxy.Handler
	iss    *issuer.Issuer
	srv    *Server
	client authv3.AuthorizationClient
	health healthpb.HealthClient
	verify *httptest.Server // /auth/verify
}

func newEnv(t testing.TB, extra string) *env {
	t.Helper()
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Parse([]byte(testConfig+extra), dir, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	iss, err := issuer.New(issuer.Options{Config: cfg, Metrics: m, Revocations: revocation.New(nil)})
	if err != nil {
		t.Fatal(err)
	}
	tbl, _, err := policy.Compile(cfg.Routes)
	if err != nil {
		t.Fatal(err)
	}
	h, err := proxy.New(proxy.Options{Config: cfg, Issuer: iss, Table: tbl, Limiter: ratelimit.New(ratelimit.Options{Metrics: m}), Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Engine: func() *proxy.Handler { return h }, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	verify := httptest.NewServer(h.SecurityHeaders(http.HandlerFunc(h.ForwardAuth)))
	t.Cleanup(verify.Close)
	return &env{h: h, iss: iss, srv: srv, client: authv3.NewAuthorizationClient(conn), health: healthpb.NewHealthClient(conn), verify: verify}
}

func (e *env) token(t testing.TB, sub, scope string) string {
	t.Helper()
	now := time.Now()
	tok, err := e.iss.Sign(issuer.Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: testIssuer, Subject: sub, Audience: jwt.ClaimStrings{"orders-api"}, ID: fmt.Sprintf("%s-%d", sub, now.UnixNano()),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		},
		ClientID: sub, Scope: scope,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
