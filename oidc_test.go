package main

import (
	"bytes"
	"encoding/json"
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

// exampleOPModule is the OpenID provider the trusted-issuer test runs: the
// example server of github.com/zitadel/oidc, which `make deps` installs with
// go install as a binary named "server".
const exampleOPModule = "github.com/zitadel/oidc/v3/example/server@v3.52.0"

// requireExampleOP finds the installed example OP: skipped when missing,
// failed under CI=true. The binary's name is too generic to take from PATH,
// so only go install's target directory is searched.
func requireExampleOP(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	lines := strings.Split(string(out), "\n") // GOBIN first, empty when unset
	dir := strings.TrimSpace(lines[0])
	if dir == "" && len(lines) > 1 {
		dir = filepath.Join(strings.TrimSpace(lines[1]), "bin")
	}
	path := filepath.Join(dir, "server")
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the zitadel example OpenID provider is not installed at %s; CI needs it (make deps runs go install %s)", path, exampleOPModule)
		}
		t.Skipf("the zitadel example OpenID provider is not installed at %s; run make deps", path)
	}
	return path
}

// opDiscovery is the part of the OpenID discovery document the test uses.
type opDiscovery struct {
	Issuer        string `json:"issuer"`
	AuthEndpoint  string `json:"authorization_endpoint"`
	TokenEndpoint string `json:"token_endpoint"`
	JWKSURI       string `json:"jwks_uri"`
}

// startExampleOP runs the example OP on a free port, stopped by PID at
// cleanup, and returns its discovery document once it answers.
func startExampleOP(t *testing.T, bin string) opDiscovery {
	t.Helper()
	port := redistest.FreePort(t)
	// The redirect URI is never dialled: the test reads the code from the
	// Location header, as a native app's loopback listener would.
	cmd := exec.Command(bin)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), fmt.Sprintf("PORT=%d", port), "REDIRECT_URI=" + opRedirectURI}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	// The example derives its issuer from the port: http://localhost:PORT/.
	discURL := fmt.Sprintf("http://localhost:%d/.well-known/openid-configuration", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("example OP exited: %s", stderr.String())
		default:
		}
		if resp, err := http.Get(discURL); err == nil {
			var d opDiscovery
			err = json.NewDecoder(resp.Body).Decode(&d)
			resp.Body.Close()
			if err == nil && resp.StatusCode == 200 && d.JWKSURI != "" {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("example OP not ready: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond) // polling readiness
	}
}

const opRedirectURI = "http://127.0.0.1:1/cb"

// opLogin runs the authorization code flow against the example OP as a
// browser and a confidential client would: /authorize, the login form with
// the example's test user, the callback, then the token endpoint with the
// example's "web" client (client_secret_basic). The example issues only
// encrypted (opaque) access tokens, so the signed ID token is what a
// resource server can verify; it returns both.
func opLogin(t *testing.T, d opDiscovery) (idToken, accessToken string) {
	t.Helper()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	redirect := func(resp *http.Response, err error) *url.URL {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			t.Fatalf("%s answered %d without a redirect", resp.Request.URL, resp.StatusCode)
		}
		return loc
	}
	q := url.Values{"client_id": {"web"}, "response_type": {"code"}, "scope": {"openid profile email"},
		"redirect_uri": {opRedirectURI}, "state": {"st4te"}, "nonce": {"n0nce"}}
	login := redirect(noFollow.Get(d.AuthEndpoint + "?" + q.Encode()))
	issuerURL, err := url.Parse(d.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"username": {"test-user@" + issuerURL.Hostname()}, "password": {"verysecure"},
		"id": {login.Query().Get("authRequestID")}}
	callback := redirect(noFollow.PostForm(login.String(), form))
	back := redirect(noFollow.Get(callback.String()))
	if back.Query().Get("state") != "st4te" || back.Query().Get("code") == "" {
		t.Fatalf("login did not end at the client with a code: %s", back)
	}
	req, _ := http.NewRequest("POST", d.TokenEndpoint, strings.NewReader(url.Values{"grant_type": {"authorization_code"},
		"code": {back.Query().Get("code")}, "redirect_uri": {opRedirectURI}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("web", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok struct {
		IDToken     string `json:"id_token"`
		AccessToken string `json:"access_token"`
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, &tok) != nil || tok.IDToken == "" {
		t.Fatalf("token endpoint: %d %s", resp.StatusCode, body)
	}
	return tok.IDToken, tok.AccessToken
}

// recordingUpstream is a real upstream that keeps the headers of every
// request it received.
type recordingUpstream struct {
	mu   sync.Mutex
	seen []http.Header
}

func (u *recordingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.seen = append(u.seen, r.Header.Clone())
	u.mu.Unlock()
	w.WriteHeader(200)
}

func (u *recordingUpstream) take() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.seen
	u.seen = nil
	return s
}

// TestTrustedIssuerRealOpenIDProvider: tokens minted by a real OpenID
// provider are accepted through trusted_issuers with the keys Portcullis
// fetches from the provider's discovered jwks_uri, and the route policy still
// applies to them.
func TestTrustedIssuerRealOpenIDProvider(t *testing.T) {
	d := startExampleOP(t, requireExampleOP(t))
	idToken, accessToken := opLogin(t, d)

	up := &recordingUpstream{}
	upstream := httptest.NewServer(up) // listens on 127.0.0.1
	defer upstream.Close()
	// The example signs RS256 ID tokens with typ JWT and audience its client
	// id; no scope claim, so the allowed route asks for a claim it carries.
	routes := fmt.Sprintf(`trusted_issuers:
  - {issuer: %q, jwks_url: %q, audience: [web], algorithms: [RS256]}
routes:
  - {path: /pwd, claims: {amr: [pwd]}}
  - {path: /write, scopes: [orders:write]}
  - {path: /admins, claims: {groups: [platform-admins]}}
`, d.Issuer, d.JWKSURI)
	_, mainAddr, _, stderr := startBinaryWith(t, upstream.URL, routes)

	get := func(addr, path, token string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	resp := get(mainAddr, "/pwd", idToken)
	seen := up.take()
	if resp.StatusCode != 200 || len(seen) != 1 {
		t.Fatalf("OP token on an allowed route: %d, upstream saw %d requests; log: %s", resp.StatusCode, len(seen), stderr)
	}
	if got := seen[0].Get("X-Auth-Subject"); got != "id1" {
		t.Errorf("X-Auth-Subject = %q, want the OP's subject id1", got)
	}
	if got := seen[0].Get("X-Auth-Issuer"); got != d.Issuer {
		t.Errorf("X-Auth-Issuer = %q, want %q", got, d.Issuer)
	}
	if got := seen[0].Get("Authorization"); got != "" {
		t.Errorf("upstream received Authorization %q", got)
	}

	parts := strings.Split(idToken, ".")
	if len(parts) != 3 {
		t.Fatalf("ID token is not a JWS: %d parts", len(parts))
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	// The same issuer with require_type: the OP's ID token says typ JWT,
	// not at+jwt, so RFC 9068 §4 refuses it as an access token.
	strict := strings.Replace(routes, "algorithms: [RS256]}", "algorithms: [RS256], require_type: true}", 1)
	if strict == routes {
		t.Fatal("require_type was not added to the config")
	}
	_, strictAddr, _, _ := startBinaryWith(t, upstream.URL, strict)

	for _, c := range []struct {
		name, addr, path, token string
		want                    int
	}{
		{"scope the token lacks", mainAddr, "/write", idToken, 403},
		{"claim the token lacks", mainAddr, "/admins", idToken, 403},
		{"signature tampered", mainAddr, "/pwd", parts[0] + "." + parts[1] + "." + flip(parts[2], len(parts[2])/2), 401},
		{"payload tampered", mainAddr, "/pwd", parts[0] + "." + flip(parts[1], len(parts[1])/2) + "." + parts[2], 401},
		{"the OP's encrypted access token", mainAddr, "/pwd", accessToken, 401},
		{"typ JWT under require_type", strictAddr, "/pwd", idToken, 401},
	} {
		t.Run(c.name, func(t *testing.T) {
			if resp := get(c.addr, c.path, c.token); resp.StatusCode != c.want {
				t.Errorf("status %d, want %d", resp.StatusCode, c.want)
			}
			if seen := up.take(); len(seen) != 0 {
				t.Errorf("upstream received %d requests for a denied one", len(seen))
			}
		})
	}
}
