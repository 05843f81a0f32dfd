package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/internal/josetest"
	"github.com/portcullis/portcullis/internal/redistest"
)

// k8sVolume is a directory written the way the kubelet writes ConfigMap and
// Secret volumes: files in a timestamped directory, "..data" a symlink to
// it, each name a symlink through "..data"; an update renames a new
// "..data" over the old one.
type k8sVolume struct {
	dir string
	n   int
}

func newK8sVolume(t *testing.T, files map[string]string) *k8sVolume {
	t.Helper()
	v := &k8sVolume{dir: t.TempDir()}
	v.write(t, files)
	return v
}

func (v *k8sVolume) path(name string) string { return filepath.Join(v.dir, name) }

func (v *k8sVolume) write(t *testing.T, files map[string]string) {
	t.Helper()
	v.n++
	ts := fmt.Sprintf("..2026_12_01_00_00_%02d.%d", v.n, v.n)
	must(t, os.Mkdir(filepath.Join(v.dir, ts), 0o755))
	for name, content := range files {
		must(t, os.WriteFile(filepath.Join(v.dir, ts, name), []byte(content), 0o600))
	}
	// Names new to the volume get their symlink first (dangling until
	// the swap), so every file appears in the same instant.
	for name := range files {
		if _, err := os.Lstat(v.path(name)); os.IsNotExist(err) {
			must(t, os.Symlink(filepath.Join("..data", name), v.path(name)))
		}
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	must(t, os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")))
	must(t, os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")))
	if old != "" {
		must(t, os.RemoveAll(filepath.Join(v.dir, old)))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !holdsWithin(30*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// holdsWithin polls cond until it holds (true) or d passes (false).
func holdsWithin(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// logged waits until the process's stderr satisfies match. A log line is
// written before the metric or answer a test waits on, but it reaches the
// test through a pipe and a copying goroutine, which a busy machine delays.
func logged(stderr fmt.Stringer, match func(string) bool) bool {
	return holdsWithin(10*time.Second, func() bool { return match(stderr.String()) })
}

// contains is a match for logged.
func contains(sub string) func(string) bool {
	return func(s string) bool { return strings.Contains(s, sub) }
}

// proc is a running portcullis binary.
type proc struct {
	cmd         *exec.Cmd
	main, admin string
	stderr      *syncBuffer
}

// startWithConfig runs the binary on cfgPath and waits for readiness.
func startWithConfig(t *testing.T, cfgPath, main, admin string) *proc {
	t.Helper()
	p := &proc{main: main, admin: admin, stderr: &syncBuffer{}}
	p.cmd = exec.Command(binary, "-config", cfgPath)
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p.cmd.Stderr = p.stderr
	must(t, p.cmd.Start())
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _, _ = p.cmd.Process.Wait() })
	eventually(t, "readiness", func() bool {
		resp, err := http.Get("http://" + admin + "/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return p
}

// metric reads one sample from /metrics ("" labels: an unlabelled metric).
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return -1
}

// waitMetric waits until a counter reaches want (it may pass it: several
// SIGHUPs may or may not coalesce into one reload).
func (p *proc) waitMetric(t *testing.T, name string, want float64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s >= %v\n%s", name, want, p.stderr), func() bool { return p.metric(t, name) >= want })
}

func (p *proc) get(t *testing.T, path, bearer string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+p.main+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v (is the process still running?)\n%s", path, err, p.stderr)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *proc) alive() bool { return p.cmd.Process.Signal(syscall.Signal(0)) == nil }

const (
	successTotal = `config_reloads_total{result="success"}`
	failureTotal = `config_reloads_total{result="failure"}`
	lastOK       = `config_last_reload_successful`
)

func reloadYAML(main, admin, interval, upstream, routes string) string {
	return fmt.Sprintf(`environment: development
listen: %q
admin_listen: %q
reload: {watch_interval: %s}
upstream: {url: %q}
issuer:
  url: https://auth.test
  keys: [{id: h, algorithm: HS256, secret: "0123456789abcdef0123456789abcdef"}]
audience: [api]
routes: %s
`, main, admin, interval, upstream, routes)
}

// TestBinaryReload drives the real process through SIGHUP and file-watch
// reloads: good, refused and restart-needed files. SIGHUP never stops it.
func TestBinaryReload(t *testing.T) {
	t.Parallel()
	up := newApp(t)
	for _, tc := range []struct {
		name     string
		interval string
		signal   bool
	}{
		{"sighup", "0s", true},
		{"file watch", "100ms", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			main, admin := freeAddr(t), freeAddr(t)
			vol := newK8sVolume(t, map[string]string{"config.yaml": reloadYAML(main, admin, tc.interval, up, "[{path: /, auth: none}]")})
			p := startWithConfig(t, vol.path("config.yaml"), main, admin)
			apply := func(yaml string) {
				vol.write(t, map[string]string{"config.yaml": yaml})
				if tc.signal {
					must(t, p.cmd.Process.Signal(syscall.SIGHUP))
				}
			}
			// Good: a new route table applies.
			apply(reloadYAML(main, admin, tc.interval, up, "[{path: /open, auth: none}, {path: /}]"))
			p.waitMetric(t, successTotal, 1)
			if code := p.get(t, "/x", ""); code != 401 {
				t.Errorf("after a good reload /x = %d, want 401", code)
			}
			if !logged(p.stderr, contains(`"msg":"configuration reloaded"`)) {
				t.Errorf("no \"configuration reloaded\" log line:\n%s", p.stderr)
			}
			// Refused: every problem logged, the running config serves on.
			apply(reloadYAML(main, admin, tc.interval, up, "[{path: nope}]") + "clock_skew: soon\n")
			p.waitMetric(t, failureTotal, 1)
			if got := p.metric(t, lastOK); got != 0 {
				t.Errorf("%s = %v after a refused file, want 0", lastOK, got)
			}
			for _, want := range []string{"routes[0].path", "clock_skew"} {
				if !logged(p.stderr, contains(want)) {
					t.Errorf("the refused reload's log does not name %s:\n%s", want, p.stderr)
				}
			}
			if code := p.get(t, "/open", ""); code != 200 {
				t.Errorf("after a refused reload /open = %d, want 200 (the running config)", code)
			}
			// Restart needed: listen changes are logged, the rest applies.
			apply(reloadYAML(freeAddr(t), admin, tc.interval, up, "[{path: /, auth: none}]"))
			p.waitMetric(t, successTotal, 2)
			if got := p.metric(t, lastOK); got != 1 {
				t.Errorf("%s = %v after a good reload, want 1", lastOK, got)
			}
			if !logged(p.stderr, regexp.MustCompile(`needs a restart[^\n]*"key":"listen"`).MatchString) {
				t.Errorf("the listen change is not logged as needing a restart:\n%s", p.stderr)
			}
			if code := p.get(t, "/x", ""); code != 200 {
				t.Errorf("after a restart-needed reload /x = %d, want 200 (its routes apply on the old listener)", code)
			}
			if tc.signal {
				// Many SIGHUPs in a row: the process stays up.
				for i := 0; i < 5; i++ {
					must(t, p.cmd.Process.Signal(syscall.SIGHUP))
				}
				p.waitMetric(t, successTotal, 3)
			}
			if !p.alive() {
				t.Fatal("the process died")
			}
		})
	}
}

func newApp(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "app") }))
	t.Cleanup(srv.Close)
	return srv.URL
}

func freeAddr(t *testing.T) string { return fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)) }

// ecKeyPEM makes a P-256 key in PKCS#8 PEM, as `openssl genpkey` does.

// tokenKid reads the kid from a JWT's header.
func tokenKid(tok string) string {
	h, _, _ := strings.Cut(tok, ".")
	b, _ := base64.RawURLEncoding.DecodeString(h)
	var hdr struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(b, &hdr)
	return hdr.Kid
}

func jwksKids(t *testing.T, main string) []string {
	resp, err := http.Get("http://" + main + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&set))
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	return out
}

// tokenTTL is the rotation test's token lifetime: long enough that a token
// minted on a starved machine is still valid when the verifier sees it,
// short enough that waiting out the old key's tokens is quick.
const tokenTTL = 20 * time.Second

// rotationYAML is the rotation test's configuration with the given keys.
func rotationYAML(main, admin, upstream, hash, keys string) string {
	return fmt.Sprintf(`environment: production
listen: %q
admin_listen: %q
reload: {watch_interval: 100ms}
upstream: {url: %q}
issuer:
  url: https://auth.test
  token_ttl: 20s
  keys: %s
  clients: [{id: svc, secret_hash: %q, scopes: [a], audience: [api]}]
clock_skew: 1s
audience: [api]
routes: [{path: /}]
rate_limit: {enabled: false}
`, main, admin, upstream, keys, hash)
}

// TestKeyRotationWithCachingVerifier rotates the signing key across reloads
// the documented way (announce with publish_only, wait for JWKS caches,
// promote, wait token_ttl + clock_skew, remove) while tokens are minted and
// verified continuously, both by Portcullis and by npm jose's
// createRemoteJWKSet, which caches the JWKS as relying parties do. Not one
// verification may fail.
func TestKeyRotationWithCachingVerifier(t *testing.T) {
	t.Parallel()
	up := newApp(t)
	main, admin := freeAddr(t), freeAddr(t)
	secrets := newK8sVolume(t, map[string]string{"k1.pem": string(ecKeyPEM(t)), "k2.pem": string(ecKeyPEM(t))})
	const secret = "rotation-test-secret-0123456789abcdef"
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), 4)
	must(t, err)
	k1 := fmt.Sprintf("{id: k1, algorithm: ES256, private_key_file: %q}", secrets.path("k1.pem"))
	k2 := fmt.Sprintf("{id: k2, algorithm: ES256, private_key_file: %q}", secrets.path("k2.pem"))
	k2announced := fmt.Sprintf("{id: k2, algorithm: ES256, private_key_file: %q, publish_only: true}", secrets.path("k2.pem"))
	steps := map[string]string{
		"a": "[" + k1 + "]",
		"b": "[" + k1 + ", " + k2announced + "]",
		"c": "[" + k2 + ", " + k1 + "]",
		"d": "[" + k2 + "]",
	}
	yaml := func(step string) string { return rotationYAML(main, admin, up, string(hash), steps[step]) }
	configs := newK8sVolume(t, map[string]string{"config.yaml": yaml("a")})
	p := startWithConfig(t, configs.path("config.yaml"), main, admin)
	jose := josetest.Start(t, "http://"+main+"/.well-known/jwks.json", "https://auth.test", "api", time.Second)

	mint := func() (string, error) {
		req, _ := http.NewRequest("POST", "http://"+main+"/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("svc", url.QueryEscape(secret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var body struct {
			AccessToken string `json:"access_token"`
		}
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil {
			return "", fmt.Errorf("POST /token: %d", resp.StatusCode)
		}
		return body.AccessToken, nil
	}
	verify := func(tok string) error {
		if _, err := jose.Verify(tok); err != nil {
			return fmt.Errorf("jose: %v", err)
		}
		if code := p.get(t, "/api", tok); code != 200 {
			return fmt.Errorf("portcullis: %d", code)
		}
		return nil
	}

	// The client: mints and verifies tokens until told to stop (bounded).
	type state struct {
		mu        sync.Mutex
		minted    int
		failures  []string
		lastKid   string
		lastK1    string
		lastK1Exp time.Time
	}
	var st state
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tok, err := mint()
			if err == nil {
				err = verify(tok)
			}
			st.mu.Lock()
			st.minted++
			if err != nil {
				st.failures = append(st.failures, err.Error())
			} else {
				st.lastKid = tokenKid(tok)
				if st.lastKid == "k1" {
					st.lastK1, st.lastK1Exp = tok, time.Now().Add(tokenTTL)
				}
			}
			st.mu.Unlock()
		}
	}()
	lastKid := func() string { st.mu.Lock(); defer st.mu.Unlock(); return st.lastKid }
	check := func(next, prev string) string {
		n, o := filepath.Join(t.TempDir(), "next.yaml"), filepath.Join(t.TempDir(), "prev.yaml")
		must(t, os.WriteFile(n, []byte(yaml(next)), 0o600))
		must(t, os.WriteFile(o, []byte(yaml(prev)), 0o600))
		code, out, _ := runCLI(t, "", nil, "-check-config", "-config", n, "-previous", o)
		if code != 0 {
			t.Errorf("-check-config %s -previous %s: exit %d\n%s", next, prev, code, out)
		}
		return out
	}
	eventually(t, "tokens signed by k1", func() bool { return lastKid() == "k1" })

	// 1. Announce k2: published and verifying, not signing.
	if out := check("b", "a"); strings.Contains(out, "warning:") {
		t.Errorf("announcing a key warns:\n%s", out)
	}
	configs.write(t, map[string]string{"config.yaml": yaml("b")})
	p.waitMetric(t, successTotal, 1)
	eventually(t, "k2 in the JWKS", func() bool { return slices.Contains(jwksKids(t, main), "k2") })
	eventually(t, "k2 in jose's cached JWKS", func() bool {
		kids, err := jose.Kids()
		return err == nil && slices.Contains(kids, "k2")
	})
	if kid := lastKid(); kid != "k1" {
		t.Errorf("after announcing k2, tokens are signed by %q, want k1 (publish_only never signs)", kid)
	}

	// 2. Promote k2 (SIGHUP this time): it signs, k1 keeps verifying.
	if out := check("c", "b"); strings.Contains(out, "warning:") {
		t.Errorf("promoting an announced key warns:\n%s", out)
	}
	configs.write(t, map[string]string{"config.yaml": yaml("c")})
	must(t, p.cmd.Process.Signal(syscall.SIGHUP))
	eventually(t, "tokens signed by k2", func() bool { return lastKid() == "k2" })
	st.mu.Lock()
	oldTok, oldExp := st.lastK1, st.lastK1Exp
	st.mu.Unlock()
	if err := verify(oldTok); err != nil {
		t.Errorf("the last k1 token no longer verifies after the promotion: %v", err)
	}

	// 3. After k1's last token expired (token_ttl + clock_skew), remove k1.
	eventually(t, "k1's last token to expire", func() bool { return time.Now().After(oldExp.Add(time.Second)) })
	if out := check("d", "c"); !strings.Contains(out, `warning: issuer.keys: key "k1"`) {
		t.Errorf("removing k1 does not warn about its live tokens:\n%s", out)
	}
	configs.write(t, map[string]string{"config.yaml": yaml("d")})
	eventually(t, "k1 gone from the JWKS", func() bool { return !slices.Contains(jwksKids(t, main), "k1") })
	st.mu.Lock()
	after := st.minted
	st.mu.Unlock()
	eventually(t, "more tokens after the removal", func() bool { st.mu.Lock(); defer st.mu.Unlock(); return st.minted >= after+20 })
	close(stop)
	<-done

	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.failures) > 0 {
		t.Errorf("%d of %d verifications failed during the rotation; first: %s", len(st.failures), st.minted, st.failures[0])
	}
	if got := p.metric(t, failureTotal); got != 0 {
		t.Errorf("%s = %v, want 0\n%s", failureTotal, got, p.stderr)
	}
	t.Logf("%d tokens minted and verified across the rotation", st.minted)
}

// TestCheckConfigPrevious: -previous warns about the two rotation mistakes,
// naming the key ids, and never changes the exit code.
func TestCheckConfigPrevious(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, k := range []string{"k1", "k2"} {
		must(t, os.WriteFile(filepath.Join(dir, k+".pem"), []byte(string(ecKeyPEM(t))), 0o600))
	}
	write := func(name, keys string) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, []byte("environment: development\nissuer:\n  url: https://a\n  keys: "+keys+"\n"), 0o600))
		return p
	}
	k1 := "{id: k1, algorithm: ES256, private_key_file: k1.pem}"
	k2 := "{id: k2, algorithm: ES256, private_key_file: k2.pem}"
	k2pub := "{id: k2, algorithm: ES256, private_key_file: k2.pem, publish_only: true}"
	k1as2 := "{id: k1, algorithm: ES256, private_key_file: k2.pem}"
	for _, tc := range []struct {
		name, prev, next string
		want             []string // warning substrings
	}{
		{"unchanged", "[" + k1 + "]", "[" + k1 + "]", nil},
		{"announce", "[" + k1 + "]", "[" + k1 + ", " + k2pub + "]", nil},
		{"promote announced", "[" + k1 + ", " + k2pub + "]", "[" + k2 + ", " + k1 + "]", nil},
		{"promote unannounced", "[" + k1 + "]", "[" + k2 + ", " + k1 + "]", []string{`signing key "k2" was not published`}},
		{"remove", "[" + k2 + ", " + k1 + "]", "[" + k2 + "]", []string{`key "k1" of the previous configuration is removed`}},
		{"replace at once", "[" + k1 + "]", "[" + k2 + "]", []string{`signing key "k2"`, `key "k1" of the previous`}},
		{"same id, new key", "[" + k1 + "]", "[" + k1as2 + "]", []string{`key "k1" has different key material`}},
		{"previous key file gone", "[{id: k0, algorithm: ES256, private_key_file: gone.pem}, " + k1 + "]", "[" + k1 + "]", []string{`key "k0"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			prev := write(strings.ReplaceAll(tc.name, " ", "_")+".prev.yaml", tc.prev)
			next := write(strings.ReplaceAll(tc.name, " ", "_")+".next.yaml", tc.next)
			code, out, _ := runCLI(t, "", nil, "-check-config", "-config", next, "-previous", prev)
			if code != 0 {
				t.Errorf("exit %d, want 0 (warnings never fail the check)\n%s", code, out)
			}
			warnings := strings.Count(out, "warning:")
			if warnings != len(tc.want) {
				t.Errorf("%d warnings, want %d:\n%s", warnings, len(tc.want), out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	bad := write("bad.yaml", "[{id: k1, algorithm: ES256, private_key_file: nope.pem}]")
	good := write("good.yaml", "["+k1+"]")
	if code, _, _ := runCLI(t, "", nil, "-check-config", "-config", bad, "-previous", good); code != 1 {
		t.Errorf("an invalid new config with -previous: exit %d, want 1", code)
	}
	if code, _, _ := runCLI(t, "", nil, "-check-config", "-config", good, "-previous", filepath.Join(dir, "missing.yaml")); code == 0 {
		t.Error("a missing -previous file passes the check")
	}
}

// TestBinaryReloadInFlight: a request waiting on the upstream when SIGHUP
// arrives finishes under the configuration it started with, on its open
// connection; the next request gets the new configuration.
func TestBinaryReloadInFlight(t *testing.T) {
	t.Parallel()
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
		fmt.Fprint(w, "finished")
	}))
	defer up.Close()
	main, admin := freeAddr(t), freeAddr(t)
	yaml := func(frame string) string {
		return reloadYAML(main, admin, "0s", up.URL, "[{path: /, auth: none}]") + "security_headers: {X-Frame-Options: " + frame + "}\n"
	}
	vol := newK8sVolume(t, map[string]string{"config.yaml": yaml("DENY")})
	p := startWithConfig(t, vol.path("config.yaml"), main, admin)
	type result struct {
		code        int
		frame, body string
		err         error
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
	vol.write(t, map[string]string{"config.yaml": yaml("SAMEORIGIN")})
	must(t, p.cmd.Process.Signal(syscall.SIGHUP))
	p.waitMetric(t, successTotal, 1)
	resp, err := http.Get("http://" + main + "/x")
	must(t, err)
	resp.Body.Close()
	if got := resp.Header.Get("X-Frame-Options"); got != "SAMEORIGIN" {
		t.Errorf("a request after the reload has X-Frame-Options %q, want SAMEORIGIN", got)
	}
	close(release)
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "finished" || r.frame != "DENY" {
		t.Errorf("in-flight request: %+v, want 200 finished with the old X-Frame-Options DENY", r)
	}
	if !p.alive() {
		t.Fatal("the process died")
	}
}
