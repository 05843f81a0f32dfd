package proxy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

// nginxConf mirrors deploy/ingress/nginx.conf: auth_request to
// /auth/verify, identity passed on with auth_request_set.
const nginxConf = `
worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  server {
    listen 127.0.0.1:%[2]d;
    location = /_portcullis {
      internal;
      proxy_pass http://%[3]s/auth/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Forwarded-Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
    }
    location / {
      auth_request /_portcullis;
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Scopes $auth_scopes;
      proxy_pass http://%[4]s;
    }
  }
}
`

func TestNginxAuthRequest(t *testing.T) {
	t.Parallel()
	bin := redistest.Require(t, "nginx")
	e := newEnv(t, "trusted_proxies: [127.0.0.1]\n")
	dir := t.TempDir()
	port := redistest.FreePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	front := strings.TrimPrefix(e.front.URL, "http://")
	app := strings.TrimPrefix(e.up.URL, "http://")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxConf, dir, port, front, app)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/public")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx not answering: %v\n%s", err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	admin := e.token(t, "alice", "admin", nil)
	reader := e.token(t, "bob", "orders:read", nil)
	tests := []struct {
		name, path, token string
		wantStatus        int
		wantSubject       string
	}{
		{"allowed", "/admin/x", admin, 200, "alice"},
		{"no token", "/admin/x", "", 401, ""},
		{"bad token", "/admin/x", "a.b.c", 401, ""},
		{"insufficient scope", "/admin/x", reader, 403, ""},
		{"public", "/public/x", "", 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.up.reset()
			req, _ := http.NewRequest("GET", base+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			req.Header.Set("X-Auth-Subject", "spoofed")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			got := e.up.got()
			if tc.wantStatus != 200 {
				if len(got) != 0 {
					t.Fatalf("upstream saw a denied request")
				}
				return
			}
			if len(got) != 1 || got[0].header.Get("X-Auth-Subject") != tc.wantSubject {
				t.Fatalf("upstream saw %d requests, subject %q, want %q", len(got), got[0].header.Get("X-Auth-Subject"), tc.wantSubject)
			}
		})
	}
}
