package proxy

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

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
	dir, conf, base := writeFrontConf(t, e, "Caddyfile", func(_ string, port int, portcullis, app string) string {
		return fmt.Sprintf(caddyfile, port, portcullis, app)
	})
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "PATH=" + os.Getenv("PATH")}
	logs := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = logs, logs
	startFront(t, cmd, base, logs.String)
	admin := e.token(t, "alice", "admin", nil)
	reader := e.token(t, "bob", "orders:read", nil)
	runFrontCases(t, e, base, []frontCase{
		{"allowed", "/admin/x", admin, 200, "alice"},
		{"no token", "/admin/x", "", 401, ""},
		{"bad token", "/admin/x", "a.b.c", 401, ""},
		{"insufficient scope", "/admin/x", reader, 403, ""},
		{"path trick", "/public/%2e%2e/admin", "", 400, ""},
		{"public, spoofed subject dropped", "/public/x", "", 200, ""},
	}, caddy26Placeholder)
}
