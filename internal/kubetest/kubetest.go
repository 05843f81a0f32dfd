// Package kubetest runs a stand-in for a Kubernetes API server's
// service-account issuer in tests: HTTPS with a certificate from its own CA,
// /openid/v1/jwks served only to a request bearing the current token (as
// the system:service-account-issuer-discovery role allows), and RS256
// tokens with the exact claim shape of projected service-account tokens.
package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Issuer is the in-cluster service-account issuer name.
const Issuer = "https://kubernetes.default.svc.cluster.local"

// Subject is the sub of a service account's tokens.
func Subject(namespace, serviceAccount string) string {
	return "system:serviceaccount:" + namespace + ":" + serviceAccount
}

// APIServer is the stand-in. Its methods are safe for concurrent use.
type APIServer struct {
	// JWKSURL is https://127.0.0.1:port/openid/v1/jwks.
	JWKSURL string
	// CAFile holds the PEM CA that signed the server's certificate.
	CAFile string
	// TokenFile is the pod's token file: the current bearer token.
	TokenFile string
	// Served and Refused count JWKS requests with a good and a bad token.
	Served, Refused atomic.Int32

	srv    *httptest.Server
	mu     sync.Mutex
	bearer string
	keys   map[string]*rsa.PrivateKey
}

// Start runs an API server with one signing key, "sa-1", stopped when the
// test ends.
func Start(t testing.TB) *APIServer {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    []string{"kubernetes.default.svc", "localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	a := &APIServer{
		CAFile: filepath.Join(dir, "ca.crt"), TokenFile: filepath.Join(dir, "token"),
		keys: map[string]*rsa.PrivateKey{"sa-1": key},
	}
	if err := os.WriteFile(a.CAFile, pemCert(caDER), 0o600); err != nil {
		t.Fatal(err)
	}
	a.RotateBearer(t, true)
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(a.serve))
	a.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	a.JWKSURL = a.srv.URL + "/openid/v1/jwks"
	return a
}

func pemCert(der []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString(der)
	out := "-----BEGIN CERTIFICATE-----\n"
	for len(b64) > 64 {
		out += b64[:64] + "\n"
		b64 = b64[64:]
	}
	return []byte(out + b64 + "\n-----END CERTIFICATE-----\n")
}

func (a *APIServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/openid/v1/jwks" {
		http.NotFound(w, r)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+a.bearer {
		a.Refused.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`))
		return
	}
	a.Served.Add(1)
	type jwk struct {
		Kty string `json:"kty"`
		Kid string `json:"kid"`
		Use string `json:"use"`
		Alg string `json:"alg"`
		N   string `json:"n"`
		E   string `json:"e"`
	}
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	enc := base64.RawURLEncoding.EncodeToString
	for kid, k := range a.keys {
		set.Keys = append(set.Keys, jwk{Kty: "RSA", Kid: kid, Use: "sig", Alg: "RS256",
			N: enc(k.N.Bytes()), E: enc(big.NewInt(int64(k.E)).Bytes())})
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_ = json.NewEncoder(w).Encode(set)
}

// RotateBearer gives the server a new valid bearer token; with writeFile
// the pod's token file gets it too (the kubelet's rotation).
func (a *APIServer) RotateBearer(t testing.TB, writeFile bool) {
	t.Helper()
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	a.mu.Lock()
	a.bearer = base64.RawURLEncoding.EncodeToString(b)
	tok := a.bearer
	a.mu.Unlock()
	if writeFile {
		if err := os.WriteFile(a.TokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// AddKey publishes another signing key.
func (a *APIServer) AddKey(kid string, key *rsa.PrivateKey) {
	a.mu.Lock()
	a.keys[kid] = key
	a.mu.Unlock()
}

// Key returns a published signing key.
func (a *APIServer) Key(kid string) *rsa.PrivateKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.keys[kid]
}

// Claims is the claim set of a projected service-account token for the
// service account, as the kubelet requests it (audience portcullis,
// expirationSeconds 600), issued at now.
func Claims(namespace, serviceAccount string, now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"aud": []string{"portcullis"},
		"exp": now.Add(600 * time.Second).Unix(),
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"iss": Issuer,
		"jti": "6f2a3a1e-5a8e-4c9e-9a43-7d2d1f0c1b7e",
		"kubernetes.io": map[string]any{
			"namespace": namespace,
			"node":      map[string]string{"name": "node-1", "uid": "1c0f3a54-2b4e-4b0e-8a8b-0d6b6f7f2e11"},
			"pod":       map[string]string{"name": serviceAccount + "-7d9f8c6b5-x2x7k", "uid": "8a5c3c70-33f5-4b8b-9d0e-d0b1c0c6a9f1"},
			"serviceaccount": map[string]string{
				"name": serviceAccount, "uid": "b1a7d3b5-4c2f-4e0c-8f87-52b6f9f1a7c3",
			},
			"warnafter": now.Add(480 * time.Second).Unix(),
		},
		"sub": Subject(namespace, serviceAccount),
	}
}

// Sign signs claims as the API server does (RS256 with a kid).
func Sign(t testing.TB, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
