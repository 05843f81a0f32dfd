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

// caddyfile mirrors deploy/ingress/Caddyfile.
const caddyfile = `{
	admin off
	auto_https off
}
http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	route {
		request_header -X-Auth-*
		forward_auth %[2]s {
			uri /auth/verify
			copy_headers X-Auth-Subject X-Auth-Scopes
		}
		reverse_proxy %[3]s
	}
}
`

// caddy26Placeholder is what Caddy 2.6 (Debian 12's) sets a copy_headers
// header to when the auth response lacks it: not the client's value, but
// not empty either. Caddy 2.7 leaves the header unset.
const caddy26Placeholder = "{http.reverse_proxy.header.X-Auth-Subject}"

func TestCaddyForwardAuth(t *testing.T) {
	t.Parallel()
	bin := redistest.Require(t, "caddy")
	e := newEnv(t, "trusted_proxies: [127.0.0.1]\n")
	dir := t.TempDir()
	port := redistest.FreePort(t)
	conf := filepath.Join(dir, "Caddyfile")
	front := strings.TrimPrefix(e.front.URL, "http://")
	app := strings.TrimPrefix(e.up.URL, "http://")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(caddyfile, port, front, app)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(base + "/public")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy not answering: %v\n%s", err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	admin := e.token(t, "alice", "admin", nil)
	reader := e.token(t, "bob", "orders:read", nil)
	for _, tc := range []struct {
		name, path, token string
		wantStatus        int
		wantSubject       string
	}{
		{"allowed", "/admin/x", admin, 200, "alice"},
		{"no token", "/admin/x", "", 401, ""},
		{"insufficient scope", "/admin/x", reader, 403, ""},
		{"path trick", "/public/%2e%2e/admin", "", 400, ""},
		{"public, spoofed subject dropped", "/public/x", "", 200, ""},
	} {
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
					t.Fatal("upstream saw a denied request")
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("upstream saw %d requests", len(got))
			}
			sub := got[0].header.Get("X-Auth-Subject")
			if tc.wantSubject == "" && sub == caddy26Placeholder {
				sub = "" // Caddy before 2.7 copies an absent header as its placeholder text
			}
			if sub != tc.wantSubject {
				t.Fatalf("upstream saw X-Auth-Subject %q, want %q", sub, tc.wantSubject)
			}
		})
	}
}
