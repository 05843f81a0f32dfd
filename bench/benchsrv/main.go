// Command benchsrv provides the benchmark's comparison points, so that
// every target runs with the same settings in one run:
//
//	benchsrv upstream -addr A                   a tiny upstream (~100-byte body)
//	benchsrv bare -addr A -upstream U           a bare httputil.ReverseProxy with
//	                                            Portcullis's transport settings
//	benchsrv bare -verify KEY ...               the same plus ES256 verification of
//	                                            every request (no cache)
//	benchsrv tokens -key KEY -n N               N fresh ES256 tokens, one per line
//	benchsrv keygen -key KEY                    write a new ES256 key (PKCS#8 PEM, 0600)
//	benchsrv freeport                           print a free loopback port
//	benchsrv oidc -addr A -key KEY -iss URL     OIDC discovery + JWKS for the key
//	                                            (for oauth2-proxy's --extra-jwt-issuers)
//	benchsrv grpcload -target A -path P -token T -c N -warmup W -d D
//	                                            gRPC Check load; prints "rps p50_ms
//	                                            p99_ms non_ok cpu_percent"
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims the benchmark config accepts (see bench/run.sh); run.sh passes
// -iss, the URL of `benchsrv oidc`, so discovery-based peers find the key.
const (
	issuer   = "https://bench.local"
	audience = "bench"
	scope    = "bench:read"
	kid      = "bench"
)

// body is about 100 bytes, like a small JSON API answer.
var body = []byte(`{"id":12345,"status":"ok","items":[1,2,3],"message":"hello from the benchmark upstream......"}` + "\n")

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: benchsrv upstream|bare|tokens [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	up := fs.String("upstream", "", "upstream URL (bare)")
	keyFile := fs.String("key", "", "ES256 private key PEM (tokens)")
	verify := fs.String("verify", "", "ES256 private key PEM whose public half verifies every request (bare)")
	n := fs.Int("n", 1, "number of tokens")
	iss := fs.String("iss", issuer, "the tokens' issuer (tokens, oidc)")
	path := fs.String("path", "/api/orders", "request path (grpcload)")
	token := fs.String("token", "", "bearer token (grpcload)")
	target := fs.String("target", "", "gRPC address (grpcload)")
	conc := fs.Int("c", 64, "concurrent streams (grpcload)")
	dur := fs.Duration("d", 10*time.Second, "measured duration (grpcload)")
	warm := fs.Duration("warmup", 2*time.Second, "warm-up duration (grpcload)")
	_ = fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "upstream":
		serve(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(body)
		}))
	case "bare":
		u, err := url.Parse(*up)
		if err != nil || u.Host == "" {
			log.Fatalf("-upstream: %q", *up)
		}
		var h http.Handler = bareProxy(u)
		if *verify != "" {
			h = verifying(mustKey(*verify), *iss, h)
		}
		serve(*addr, h)
	case "tokens":
		key := mustKey(*keyFile)
		now := time.Now()
		for i := 0; i < *n; i++ {
			t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
				"iss": *iss, "sub": fmt.Sprintf("user-%d", i%1000), "aud": audience, "client_id": "bench",
				// oauth2-proxy makes a session from a bearer token's email.
				"email": fmt.Sprintf("user-%d@bench.local", i%1000), "email_verified": true,
				"scope": scope, "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(2 * time.Hour).Unix(), "jti": fmt.Sprint(i),
			})
			t.Header["kid"], t.Header["typ"] = kid, "at+jwt"
			s, err := t.SignedString(key)
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println(s)
		}
	case "keygen":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			log.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		if err := os.WriteFile(*keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			log.Fatal(err)
		}
	case "oidc":
		serveOIDC(*addr, *iss, mustKey(*keyFile))
	case "grpcload":
		grpcLoad(*target, *path, *token, *conc, *warm, *dur)
	case "freeport":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
		l.Close()
	default:
		log.Fatalf("unknown mode %q", os.Args[1])
	}
}

// bareProxy uses the same transport settings as Portcullis (proxy/upstream.go).
func bareProxy(u *url.URL) *httputil.ReverseProxy {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: &http.Transport{
			DialContext: d.DialContext, MaxIdleConns: 512, MaxIdleConnsPerHost: 512,
			IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		},
	}
}

// verifying checks an ES256 bearer token on every request, with no cache:
// what a hand-rolled verifier in front of a proxy costs.
func verifying(key *ecdsa.PrivateKey, iss string, next http.Handler) http.Handler {
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(iss), jwt.WithAudience(audience), jwt.WithExpirationRequired())
	pub := &key.PublicKey
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		if _, err := parser.Parse(tok, func(*jwt.Token) (any, error) { return pub, nil }); err != nil {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func mustKey(path string) *ecdsa.PrivateKey {
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		log.Fatalf("%s: no PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		log.Fatal(err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		log.Fatal(errors.New("not an EC key"))
	}
	return ek
}

func serve(addr string, h http.Handler) {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
