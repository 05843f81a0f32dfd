// Command soak runs the portcullis binary for a while under mixed traffic
// and checks that its memory and goroutines stay bounded:
//
//	go run ./bench/soak -binary ./portcullis [-duration 3m] [-reload] [-rss-mib 96]
//
// It starts a redis-server (when installed) on a free loopback port, an
// upstream and the binary, then keeps a bounded number of workers sending:
// requests with valid tokens, forged tokens, many distinct large (7 KiB)
// valid tokens (the verified-token cache flood), requests with distinct
// rate-limit keys (the limiter key flood) and over a limit, revoked tokens,
// /token and /revoke calls; with -reload, a SIGHUP every 10 s (only when
// the binary supports reloading: it must survive it). It reports RSS
// (/proc/PID/status VmRSS) and goroutines (go_goroutines) after a warm-up
// and at the end, and exits 1 when RSS passes -rss-mib, goroutines grew by
// more than -goroutine-slack, a revoked token was accepted, or the process
// died. Everything listens on 127.0.0.1 and stops when the run ends.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
)

const (
	issuerURL = "https://soak.test"
	hsSecret  = "soak-secret-0123456789abcdef0123456789"
	clientID  = "soak"
	secret    = "soak-client-secret-0123456789abcdef"
	workers   = 8
)

func main() {
	def := 3 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			fail("SOAK_DURATION: %v", err)
		}
		def = d
	}
	binary := flag.String("binary", "./portcullis", "the portcullis binary to run")
	duration := flag.Duration("duration", def, "how long to drive traffic (env SOAK_DURATION)")
	reload := flag.Bool("reload", false, "send SIGHUP every 10 s (only if the binary supports reload)")
	rssMiB := flag.Int("rss-mib", 96, "fail when VmRSS ends above this many MiB")
	slack := flag.Int("goroutine-slack", 50, "fail when goroutines end more than this above the start")
	flag.Parse()
	if err := run(*binary, *duration, *reload, *rssMiB, *slack); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "soak: "+format+"\n", args...)
	os.Exit(1)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func run(binary string, duration time.Duration, reload bool, rssMiB, slack int) error {
	dir, err := os.MkdirTemp("", "portcullis-soak")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }))
	defer up.Close()

	var env []string
	if bin, err := exec.LookPath("redis-server"); err == nil {
		port := freePort()
		redis := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
		if err := redis.Start(); err != nil {
			return fmt.Errorf("starting redis-server: %w", err)
		}
		defer func() { _ = redis.Process.Kill(); _ = redis.Wait() }()
		env = append(env, fmt.Sprintf("REDIS_URL=redis://127.0.0.1:%d/0", port))
		fmt.Println("soak: with redis-server on port", port)
	} else {
		fmt.Println("soak: redis-server not found; limits and revocations in memory")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), 4)
	if err != nil {
		return err
	}
	cfg := filepath.Join(dir, "portcullis.yaml")
	yaml := fmt.Sprintf(`
environment: development
log: {level: error}
upstream: {url: %q}
issuer:
  url: %s
  keys: [{id: h, algorithm: HS256, secret: %q}]
  clients: [{id: %s, secret_hash: %q, scopes: [read]}]
audience: [api]
routes:
  - {path: /limited, rate_limit: {requests: 5, per: 1m, burst: 5, key: subject}}
  - {path: /keyed, auth: none, rate_limit: {requests: 100, per: 1m, key: "header:X-Api-Key"}}
  - {path: /}
rate_limit:
  token_endpoint: {requests: 100000, per: 1s, key: client_ip}
`, up.URL, issuerURL, hsSecret, clientID, hash)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return err
	}
	main := fmt.Sprintf("127.0.0.1:%d", freePort())
	admin := fmt.Sprintf("127.0.0.1:%d", freePort())
	cmd := exec.Command(binary, "-config", cfg)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "BIND_ADDR=" + main, "ADMIN_BIND_ADDR=" + admin}, env...)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers * 2}}
	if err := waitReady(client, "http://"+admin+"/health/ready", exited); err != nil {
		return fmt.Errorf("%w\n%s", err, stderr.String())
	}
	base := "http://" + main

	// A revoked token: minted, then revoked through /revoke.
	revoked, err := mint(client, base)
	if err != nil {
		return err
	}
	if err := revoke(client, base, revoked); err != nil {
		return err
	}

	var stats counters
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			drive(ctx, client, base, w, revoked, &stats)
		}(w)
	}
	if reload {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(10 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					_ = cmd.Process.Signal(syscall.SIGHUP)
					stats.reloads.Add(1)
				}
			}
		}()
	}
	warm := min(10*time.Second, duration/4)
	select {
	case <-time.After(warm):
	case err := <-exited:
		return fmt.Errorf("portcullis exited during the warm-up: %v\n%s", err, stderr.String())
	}
	rss0, g0 := sample(client, cmd.Process.Pid, admin)
	fmt.Printf("soak: start  (after %v warm-up): RSS %.1f MiB, %d goroutines\n", warm, rss0, g0)
	select {
	case <-ctx.Done():
	case err := <-exited:
		cancel()
		wg.Wait()
		return fmt.Errorf("portcullis exited during the soak: %v\n%s", err, stderr.String())
	}
	wg.Wait()
	// Idle keep-alive connections each hold a goroutine or two; they are
	// the client's, not a leak.
	client.CloseIdleConnections()
	rss1, g1 := sample(client, cmd.Process.Pid, admin)
	fmt.Printf("soak: end    (after %v): RSS %.1f MiB, %d goroutines\n", duration, rss1, g1)
	fmt.Printf("soak: %d requests: %d allowed, %d unauthorized (forged/revoked), %d rate limited, %d tokens, %d other; %d reloads\n",
		stats.total.Load(), stats.ok.Load(), stats.unauthorized.Load(), stats.limited.Load(), stats.tokens.Load(), stats.other.Load(), stats.reloads.Load())
	var problems []string
	if rss1 > float64(rssMiB) {
		problems = append(problems, fmt.Sprintf("RSS %.1f MiB at the end, bound %d MiB", rss1, rssMiB))
	}
	if g1 > g0+slack {
		problems = append(problems, fmt.Sprintf("goroutines grew from %d to %d (slack %d)", g0, g1, slack))
	}
	if n := stats.revokedAccepted.Load(); n > 0 {
		problems = append(problems, fmt.Sprintf("a revoked token was accepted %d times", n))
	}
	if n := stats.other.Load(); n > stats.total.Load()/100 {
		problems = append(problems, fmt.Sprintf("%d unexpected answers (5xx or transport errors)", n))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	fmt.Printf("soak: ok (RSS bound %d MiB, goroutine slack %d)\n", rssMiB, slack)
	return nil
}

type counters struct {
	total, ok, unauthorized, limited, tokens, other, revokedAccepted, reloads atomic.Int64
}

// drive sends a mix of requests until ctx ends; worker w owns a slice of
// the large-token and limiter-key spaces so that every request is new.
func drive(ctx context.Context, client *http.Client, base string, w int, revoked string, st *counters) {
	rng := rand.New(rand.NewPCG(uint64(w), 42))
	valid := sign(fmt.Sprintf("worker-%d", w), "read", time.Hour)
	forged := valid[:strings.LastIndexByte(valid, '.')+1] + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	for i := 0; ctx.Err() == nil; i++ {
		var req *http.Request
		switch k := rng.IntN(100); {
		case k < 30:
			req = get(ctx, base+"/x", valid)
		case k < 45: // the cache flood: a distinct ~7 KiB valid token each time
			req = get(ctx, base+"/x", sign(fmt.Sprintf("big-%d-%d", w, i), bigScope(i), time.Hour))
		case k < 55:
			req = get(ctx, base+"/x", forged)
		case k < 65:
			req = get(ctx, base+"/x", revoked)
		case k < 75:
			req = get(ctx, base+"/limited", valid)
		case k < 95: // the limiter key flood: a new key each time
			req = get(ctx, base+"/keyed", "")
			req.Header.Set("X-Api-Key", fmt.Sprintf("key-%d-%d", w, i))
		default:
			form := url.Values{"grant_type": {"client_credentials"}}
			req, _ = http.NewRequestWithContext(ctx, "POST", base+"/token", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(clientID, secret)
		}
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				st.other.Add(1)
				st.total.Add(1)
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		st.total.Add(1)
		switch resp.StatusCode {
		case 200:
			if req.URL.Path == "/token" {
				st.tokens.Add(1)
			} else {
				st.ok.Add(1)
			}
			if req.Header.Get("Authorization") == "Bearer "+revoked {
				st.revokedAccepted.Add(1)
			}
		case 401:
			st.unauthorized.Add(1)
		case 429:
			st.limited.Add(1)
		default:
			st.other.Add(1)
		}
	}
}

func get(ctx context.Context, u, token string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// bigScope is about 5 KiB of scopes, which makes a token of about 7 KiB.
func bigScope(i int) string {
	var b strings.Builder
	for j := 0; j < 560; j++ {
		fmt.Fprintf(&b, "s%03d:%03d ", i%1000, j)
	}
	return strings.TrimSpace(b.String())
}

func sign(sub, scope string, ttl time.Duration) string {
	now := time.Now()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"iss": issuerURL, "sub": sub, "aud": []string{"api"}, "exp": now.Add(ttl).Unix(), "iat": now.Unix(),
		"nbf": now.Unix(), "jti": fmt.Sprintf("%s-%d", sub, now.UnixNano()), "client_id": clientID, "scope": scope,
	})
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = "h"
	s, err := tok.SignedString([]byte(hsSecret))
	if err != nil {
		fail("signing: %v", err)
	}
	return s
}

func mint(client *http.Client, base string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", base+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("minting a token: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.AccessToken == "" {
		return "", fmt.Errorf("minting a token: status %d %v", resp.StatusCode, err)
	}
	return body.AccessToken, nil
}

func revoke(client *http.Client, base, token string) error {
	req, _ := http.NewRequest("POST", base+"/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, secret)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("revoking: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("revoking: status %d", resp.StatusCode)
	}
	return nil
}

func waitReady(client *http.Client, u string, exited <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("portcullis exited at start: %v", err)
		default:
		}
		if resp, err := client.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond) // polling readiness
	}
	return fmt.Errorf("portcullis not ready within 30s")
}

// sample reads VmRSS (MiB) and go_goroutines.
func sample(client *http.Client, pid int, admin string) (float64, int) {
	rss := 0.0
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				rss = kb / 1024
			}
		}
	}
	g := -1
	if resp, err := client.Get("http://" + admin + "/metrics"); err == nil {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				g, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		resp.Body.Close()
	}
	return rss, g
}

// lockedBuffer collects the child's stderr; written by exec's copier while
// the soak may read it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil // bounded: the first MiB says what went wrong
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
