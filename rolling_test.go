package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

// rollingNginx is a load balancer as a user would put in front of two
// replicas: an upstream block, keep-alive connections to it, and
// proxy_next_upstream so a request that cannot be delivered to one replica
// (connection refused or closed before an answer) goes to the other.
const rollingNginx = `
worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream portcullis {
    server %[3]s max_fails=1 fail_timeout=2s;
    server %[4]s max_fails=1 fail_timeout=2s;
    keepalive 16;
  }
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      proxy_pass http://portcullis;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout http_502 http_503;
      proxy_connect_timeout 2s;
    }
  }
}
`

// replica is one portcullis process on fixed ports, so it can be restarted
// where the load balancer expects it.
type replica struct {
	cfg, main, admin string
	env              []string
	cmd              *exec.Cmd
	stderr           *bytes.Buffer
}

func (r *replica) start(t *testing.T) {
	t.Helper()
	r.cmd = exec.Command(binary, "-config", r.cfg)
	r.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "BIND_ADDR=" + r.main, "ADMIN_BIND_ADDR=" + r.admin}, r.env...)
	r.stderr = &bytes.Buffer{}
	r.cmd.Stderr = r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := r.cmd
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	waitHTTP(t, "http://"+r.admin+"/health/ready", 30*time.Second, func() string { return r.stderr.String() })
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string, within time.Duration, logs func() string) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(within)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not 200 within %v: %v\n%s", url, within, err, logs())
		}
		time.Sleep(20 * time.Millisecond) // polling readiness
	}
}

// TestRollingRestartBehindNginx restarts one of two replicas (SIGTERM, wait
// for it to exit, start it again) behind nginx while bounded load runs
// through nginx: not one request fails. This is what shutdown.delay,
// readiness and draining are for.
func TestRollingRestartBehindNginx(t *testing.T) {
	t.Parallel()
	nginx := redistest.Require(t, "nginx")
	redisSrv := redistest.Start(t)
	var upstreamHits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits.Add(1)
		fmt.Fprint(w, "ok")
	}))
	defer up.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	yaml := `
environment: development
shutdown: {delay: 1s, grace: 10s}
upstream: {url: "` + up.URL + `"}
issuer: {url: https://auth.test}
routes: [{path: /, auth: none, rate_limit: {requests: 100000, per: 1s, key: client_ip}}]
`
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var rs []*replica
	for i := 0; i < 2; i++ {
		r := &replica{
			cfg: cfg, env: []string{"REDIS_URL=" + redisSrv.URL()},
			main:  fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)),
			admin: fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)),
		}
		r.start(t)
		rs = append(rs, r)
	}
	port := redistest.FreePort(t)
	for _, sub := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		_ = os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(rollingNginx, dir, port, rs[0].main, rs[1].main)), 0o600); err != nil {
		t.Fatal(err)
	}
	ng := exec.Command(nginx, "-p", dir, "-c", conf)
	if err := ng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopByPID(ng) })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	nginxLog := func() string { b, _ := os.ReadFile(filepath.Join(dir, "error.log")); return string(b) }
	waitHTTP(t, base+"/x", 15*time.Second, nginxLog)

	// Bounded load: four clients, each at most 20,000 requests, until told
	// to stop.
	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for i := 0; i < 20_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(base + "/x")
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d", resp.StatusCode))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("%s: not within 60s", what)
			}
			time.Sleep(20 * time.Millisecond) // polling a condition
		}
	}
	waitFor("load flowing", func() bool { return ok.Load() >= 50 })
	r := rs[0]
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Wait(); err != nil {
		t.Fatalf("replica exit after SIGTERM: %v\n%s", err, r.stderr)
	}
	during := ok.Load()
	r.start(t)
	// Traffic after the restart, spread again over both replicas.
	mark := ok.Load()
	waitFor("load after the restart", func() bool { return ok.Load() >= mark+200 })
	close(stop)
	wg.Wait()
	t.Logf("%d requests succeeded (%d before the restarted replica was back), %d failed", ok.Load(), during, failed.Load())
	if n := failed.Load(); n != 0 {
		t.Errorf("%d requests failed during a rolling restart; first: %v\nnginx: %s", n, firstErr.Load(), nginxLog())
	}
}

// stopByPID asks a process we started to stop (SIGTERM, so nginx's master
// also ends its workers) and kills it if it has not exited within 10 s.
func stopByPID(cmd *exec.Cmd) {
	done := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(done) }()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
