package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// cfgParams fill the reload tests' configuration.
type cfgParams struct {
	main, admin, interval, upstream, frame, routes, extra string
}

func (p cfgParams) yaml() string {
	if p.interval == "" {
		p.interval = "0s"
	}
	if p.frame == "" {
		p.frame = "DENY"
	}
	if p.routes == "" {
		p.routes = "[{path: /, auth: none}]"
	}
	return fmt.Sprintf(`environment: development
listen: %q
admin_listen: %q
reload: {watch_interval: %s}
shutdown: {grace: 5s}
upstream: {url: %q}
issuer:
  url: https://auth.test
  keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]
  clients: [{id: svc, secret_hash: "${HASH}", scopes: [a]}]
audience: [api]
security_headers: {X-Frame-Options: %s}
routes: %s
%s`, p.main, p.admin, p.interval, p.upstream, p.frame, p.routes, p.extra)
}

// upstreamCounter is an application that counts what reaches it.
func upstreamCounter(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		fmt.Fprint(w, "app")
	}))
	t.Cleanup(up.Close)
	return up, &n
}

// keepAliveClient reports whether each request reused a connection.
type keepAliveClient struct {
	c      *http.Client
	reused atomic.Bool
}

func newKeepAliveClient(t *testing.T) *keepAliveClient {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &keepAliveClient{c: &http.Client{Transport: tr}}
}

func (k *keepAliveClient) get(t *testing.T, url string) *http.Response {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { k.reused.Store(i.Reused) }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
	resp, err := k.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestReloadAppliesNewConfiguration changes routes and headers through
// each trigger and checks the running server serves the new configuration
// at once, over a keep-alive connection opened before the reload.
func TestReloadAppliesNewConfiguration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		interval string
		trigger  func(t *testing.T, r *running, next string)
	}{
		{"sighup", "0s", func(t *testing.T, r *running, next string) {
			r.vol.write(t, map[string]string{"config.yaml": next})
			r.hup <- nil
		}},
		{"file watch", "100ms", func(t *testing.T, r *running, next string) {
			r.vol.write(t, map[string]string{"config.yaml": next})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up, hits := upstreamCounter(t)
			main, admin := addrs(t)
			p := cfgParams{main: main, admin: admin, interval: tc.interval, upstream: up.URL}
			vol := newVolume(t, map[string]string{"config.yaml": p.yaml()})
			r := startReloading(t, vol, main, admin)
			client := newKeepAliveClient(t)
			if resp := client.get(t, "http://"+main+"/x"); resp.StatusCode != 200 || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Fatalf("before reload: %d %q", resp.StatusCode, resp.Header.Get("X-Frame-Options"))
			}
			p.frame, p.routes = "SAMEORIGIN", "[{path: /open, auth: none}, {path: /}]"
			tc.trigger(t, r, p.yaml())
			r.waitReloads(t, "success", 1)

			before := hits.Load()
			resp := client.get(t, "http://"+main+"/x")
			if resp.StatusCode != 401 || resp.Header.Get("X-Frame-Options") != "SAMEORIGIN" {
				t.Errorf("after reload: /x = %d %q, want 401 SAMEORIGIN", resp.StatusCode, resp.Header.Get("X-Frame-Options"))
			}
			if !client.reused.Load() {
				t.Error("the keep-alive connection opened before the reload was not reused after it")
			}
			if hits.Load() != before {
				t.Error("a request denied by the new routes reached the upstream")
			}
			if resp := client.get(t, "http://"+main+"/open"); resp.StatusCode != 200 {
				t.Errorf("after reload: /open = %d, want 200", resp.StatusCode)
			}
			if got := r.reloads("failure"); got != 0 {
				t.Errorf("config_reloads_total{failure} = %v, want 0", got)
			}
			if r.lastOK() != 1 {
				t.Error("config_last_reload_successful is not 1")
			}
			if len(r.logs.lines("configuration reloaded")) != 1 {
				t.Errorf("want one \"configuration reloaded\" line:\n%s", r.logs)
			}
		})
	}
}

// TestReloadRefusesInvalidConfiguration: every problem is logged, the
// running configuration keeps serving, the metrics say so; a later valid
// file applies.
func TestReloadRefusesInvalidConfiguration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		bad   func(p cfgParams) map[string]string
		wants []string // each must appear in some logged problem
	}{
		{"schema", func(p cfgParams) map[string]string {
			p.routes = "[{path: nope}]"
			p.extra = "clock_skew: soon\nlisen: x\n"
			return map[string]string{"config.yaml": p.yaml()}
		}, []string{"routes[0].path", "clock_skew", "lisen"}},
		{"key file", func(p cfgParams) map[string]string {
			y := strings.Replace(p.yaml(), `keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]`,
				`keys: [{id: e, algorithm: ES256, private_key_file: bad.pem}]`, 1)
			return map[string]string{"config.yaml": y, "bad.pem": "not a key"}
		}, []string{"bad.pem"}},
		{"not yaml", func(p cfgParams) map[string]string {
			return map[string]string{"config.yaml": "routes: [\n"}
		}, []string{"YAML"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up, _ := upstreamCounter(t)
			main, admin := addrs(t)
			p := cfgParams{main: main, admin: admin, interval: "100ms", upstream: up.URL}
			vol := newVolume(t, map[string]string{"config.yaml": p.yaml()})
			r := startReloading(t, vol, main, admin)
			vol.write(t, tc.bad(p))
			r.waitReloads(t, "failure", 1)
			if r.lastOK() != 0 {
				t.Error("config_last_reload_successful is not 0 after a refused file")
			}
			problems := r.logs.lines("configuration refused")
			for _, want := range tc.wants {
				found := false
				for _, l := range problems {
					found = found || strings.Contains(fmt.Sprint(l["problem"]), want)
				}
				if !found {
					t.Errorf("no logged problem mentions %q:\n%s", want, r.logs)
				}
			}
			if len(problems) < len(tc.wants) {
				t.Errorf("%d problems logged, want one line per problem (%d)", len(problems), len(tc.wants))
			}
			if len(r.logs.lines("configuration reload failed; the running configuration keeps serving unchanged")) != 1 {
				t.Errorf("no summary line:\n%s", r.logs)
			}
			resp, err := http.Get("http://" + main + "/x")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("after a refused reload: %d %q, want the old configuration's 200 DENY", resp.StatusCode, resp.Header.Get("X-Frame-Options"))
			}
			// The refused file is not retried until something changes;
			// the next good one applies.
			p.frame = "SAMEORIGIN"
			vol.write(t, map[string]string{"config.yaml": p.yaml()})
			r.waitReloads(t, "success", 1)
			if got := r.reloads("failure"); got != 1 {
				t.Errorf("config_reloads_total{failure} = %v, want 1 (one refused file, one attempt)", got)
			}
			if r.lastOK() != 1 {
				t.Error("config_last_reload_successful is not 1 after a good reload")
			}
		})
	}
}

// TestReloadNeedsRestart: listener changes are logged and not applied; the
// rest of the file is.
func TestReloadNeedsRestart(t *testing.T) {
	t.Parallel()
	up, _ := upstreamCounter(t)
	main, admin := addrs(t)
	p := cfgParams{main: main, admin: admin, upstream: up.URL}
	vol := newVolume(t, map[string]string{"config.yaml": p.yaml()})
	r := startReloading(t, vol, main, admin)
	q := p
	q.main, q.admin = addrs(t)
	q.routes = "[{path: /open, auth: none}, {path: /}]"
	q.extra = "redis: {url: \"redis://127.0.0.1:1/0\"}\n"
	vol.write(t, map[string]string{"config.yaml": q.yaml()})
	r.hup <- nil
	r.waitReloads(t, "success", 1)
	keys := map[string]bool{}
	for _, l := range r.logs.lines("configuration change needs a restart; it is not applied until then") {
		keys[fmt.Sprint(l["key"])] = true
	}
	for _, k := range []string{"listen", "admin_listen", "redis"} {
		if !keys[k] {
			t.Errorf("no restart-needed line for %s:\n%s", k, r.logs)
		}
	}
	if strings.Contains(r.logs.String(), "127.0.0.1:1/0") {
		t.Error("the log shows the new Redis URL; it may carry a password")
	}
	resp, err := http.Get("http://" + main + "/x")
	if err != nil {
		t.Fatalf("the old listener stopped serving: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("/x = %d, want 401: the new routes apply", resp.StatusCode)
	}
	if c, err := net.Dial("tcp", q.main); err == nil {
		c.Close()
		t.Error("a listener opened on the new listen address without a restart")
	}
}

// TestReloadInFlight: a request that started before a reload finishes
// under the configuration it started with; the next one gets the new one.
func TestReloadInFlight(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		w.Header().Set("X-Auth-Subject-Seen", r.Header.Get("X-Auth-Subject"))
		fmt.Fprint(w, "finished")
	}))
	defer up.Close()
	main, admin := addrs(t)
	p := cfgParams{main: main, admin: admin, upstream: up.URL}
	vol := newVolume(t, map[string]string{"config.yaml": p.yaml()})
	r := startReloading(t, vol, main, admin)

	type result struct {
		code  int
		frame string
		body  string
		err   error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + main + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, frame: resp.Header.Get("X-Frame-Options"), body: string(b)}
	}()
	<-arrived
	p.frame, p.routes = "SAMEORIGIN", "[{path: /}]"
	vol.write(t, map[string]string{"config.yaml": p.yaml()})
	r.hup <- nil
	r.waitReloads(t, "success", 1)
	resp, err := http.Get("http://" + main + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("X-Frame-Options") != "SAMEORIGIN" {
		t.Errorf("new request after reload: %d %q, want 401 SAMEORIGIN", resp.StatusCode, resp.Header.Get("X-Frame-Options"))
	}
	close(release)
	res := <-done
	if res.err != nil || res.code != 200 || res.body != "finished" || res.frame != "DENY" {
		t.Errorf("in-flight request: %+v, want 200 finished under the old headers (DENY)", res)
	}
}

// TestReloadStopsOldRuntime: the replaced runtime's background work (a
// trusted issuer's JWKS fetch) is cancelled, the new one's starts.
func TestReloadStopsOldRuntime(t *testing.T) {
	t.Parallel()
	var oldAsked, cancelled atomic.Bool
	oldIdP := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		oldAsked.Store(true)
		<-r.Context().Done() // hangs until the fetch is cancelled
		cancelled.Store(true)
	}))
	defer oldIdP.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	raw, _ := key.PublicKey.Bytes()
	jwks := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"n1","x":%q,"y":%q}]}`,
		base64.RawURLEncoding.EncodeToString(raw[1:33]), base64.RawURLEncoding.EncodeToString(raw[33:]))
	var newFetched atomic.Int64
	newIdP := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		newFetched.Add(1)
		fmt.Fprint(w, jwks)
	}))
	defer newIdP.Close()
	up, _ := upstreamCounter(t)
	main, admin := addrs(t)
	p := cfgParams{main: main, admin: admin, upstream: up.URL,
		extra: "trusted_issuers: [{issuer: https://idp.test, jwks_url: \"" + oldIdP.URL + "\"}]\n"}
	vol := newVolume(t, map[string]string{"config.yaml": p.yaml()})
	r := startReloading(t, vol, main, admin)
	waitFor(t, "the first runtime's JWKS fetch", oldAsked.Load)
	prev := r.s.current()
	p.extra = "trusted_issuers: [{issuer: https://idp.test, jwks_url: \"" + newIdP.URL + "\"}]\n"
	vol.write(t, map[string]string{"config.yaml": p.yaml()})
	r.hup <- nil
	r.waitReloads(t, "success", 1)
	// The replaced runtime is stopped before the reload counts as done.
	prev.mu.Lock()
	stopped := prev.ctx != nil && prev.ctx.Err() != nil
	prev.mu.Unlock()
	if !stopped {
		t.Error("the replaced runtime's background context is still live")
	}
	cur := r.s.current()
	cur.mu.Lock()
	started := cur.ctx != nil && cur.ctx.Err() == nil
	cur.mu.Unlock()
	if !started {
		t.Error("the new runtime's background work was not started")
	}
	waitFor(t, "the replaced runtime's JWKS fetch to be cancelled", cancelled.Load)
	waitFor(t, "the new runtime's JWKS fetch", func() bool { return newFetched.Load() > 0 })
}

// TestReloadWaitsForMissingKeyFile: the ConfigMap naming a new key arrives
// before the Secret holding it (two volumes update independently). The
// first reload is refused; when the key file appears, the watcher retries
// without any further config change.
func TestReloadWaitsForMissingKeyFile(t *testing.T) {
	t.Parallel()
	up, _ := upstreamCounter(t)
	main, admin := addrs(t)
	p := cfgParams{main: main, admin: admin, interval: "100ms", upstream: up.URL}
	vol := newVolume(t, map[string]string{"config.yaml": p.yaml()})
	secrets := newVolume(t, map[string]string{"placeholder": "x"})
	r := startReloading(t, vol, main, admin)
	keyPath := secrets.path("next.pem")
	y := strings.Replace(p.yaml(), `keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]`,
		`keys: [{id: e, algorithm: ES256, private_key_file: "`+keyPath+`"}]`, 1)
	vol.write(t, map[string]string{"config.yaml": y})
	r.waitReloads(t, "failure", 1)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	secrets.write(t, map[string]string{"placeholder": "x", "next.pem": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))})
	r.waitReloads(t, "success", 1)
	if kid := r.s.current().issuer.Ephemeral(); kid != nil {
		t.Error("the new runtime signs with a generated key")
	}
	if !strings.Contains(jwksOf(t, main), `"kid":"e"`) {
		t.Error("the JWKS lacks the key that arrived late")
	}
}

// TestReloadKeepsDevelopmentKey: without a configured key, development
// generates one; a reload must not replace it, or every token minted so
// far would stop verifying.
func TestReloadKeepsDevelopmentKey(t *testing.T) {
	t.Parallel()
	up, _ := upstreamCounter(t)
	main, admin := addrs(t)
	p := cfgParams{main: main, admin: admin, upstream: up.URL, routes: "[{path: /}]"}
	noKey := func(p cfgParams) string {
		return strings.Replace(p.yaml(), `  keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]`+"\n", "", 1)
	}
	vol := newVolume(t, map[string]string{"config.yaml": noKey(p)})
	r := startReloading(t, vol, main, admin)
	tok, err := r.s.current().issuer.Sign(issuerClaims("svc", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	p.frame = "SAMEORIGIN"
	vol.write(t, map[string]string{"config.yaml": noKey(p)})
	r.hup <- nil
	r.waitReloads(t, "success", 1)
	req, _ := http.NewRequest("GET", "http://"+main+"/x", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Frame-Options") != "SAMEORIGIN" {
		t.Errorf("a token minted before the reload: %d %q, want 200 under the new config", resp.StatusCode, resp.Header.Get("X-Frame-Options"))
	}
}

func jwksOf(t *testing.T, main string) string {
	resp, err := http.Get("http://" + main + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
