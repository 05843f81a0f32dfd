package proxy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

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
	dir, conf, base := writeFrontConf(t, e, "nginx.conf", func(dir string, port int, portcullis, app string) string {
		return fmt.Sprintf(nginxConf, dir, port, portcullis, app)
	})
	startFront(t, exec.Command(bin, "-p", dir, "-c", conf), base, func() string {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return string(log)
	})
	admin := e.token(t, "alice", "admin", nil)
	reader := e.token(t, "bob", "orders:read", nil)
	runFrontCases(t, e, base, []frontCase{
		{"allowed", "/admin/x", admin, 200, "alice"},
		{"no token", "/admin/x", "", 401, ""},
		{"bad token", "/admin/x", "a.b.c", 401, ""},
		{"insufficient scope", "/admin/x", reader, 403, ""},
		// auth_request turns any answer but 2xx/401/403 into 500.
		{"path trick", "/public/%2e%2e/admin", "", 500, ""},
		{"public, spoofed subject dropped", "/public/x", "", 200, ""},
	})
}
