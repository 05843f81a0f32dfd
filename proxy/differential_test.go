package proxy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/internal/redistest"
	"github.com/portcullis/portcullis/policy"
)

// The differential tests send a generated corpus of request targets through
// a real Portcullis to a real upstream that answers with the path it
// decoded. For every target the firewall accepts, the upstream's decoded
// path must be exactly the path Portcullis matched routes on; every target
// it refuses must be a 400 the upstream never saw.

// diffConfig routes everything without tokens, so every accepted target is
// forwarded; the routes give the matcher segments to disagree about.
const diffConfig = `
environment: development
upstream: {url: "%s", timeout: 10s}
issuer:
  url: https://auth.test
  keys: [{id: es, algorithm: ES256, private_key_file: key.pem}]
audience: [orders-api]
routes:
  - {path: /admin, auth: none}
  - {path: /public, auth: none}
  - {path: /, auth: none}
`

// diffCorpus generates request targets: every byte raw, every byte
// percent-encoded (both hex cases), UTF-8 samples valid and not, and
// combinations of dot, space and encoded segments.
func diffCorpus() []string {
	var out []string
	for b := 0; b < 256; b++ {
		c := string(rune(b))
		if b >= 0x80 {
			c = string([]byte{byte(b)})
		}
		out = append(out, "/a"+c+"b", "/x/a"+c, "/"+c+"a")
		upper, lower := fmt.Sprintf("%%%02X", b), fmt.Sprintf("%%%02x", b)
		out = append(out, "/a"+upper+"b", "/x/a"+upper, "/"+upper+"a")
		if lower != upper {
			out = append(out, "/a"+lower+"b", "/x/a"+lower)
		}
	}
	for _, r := range []rune{'é', 'ü', 'ß', 'Ω', 'Я', '日', '本', '😀', 0x00A0, 0x0085, 0x1680, 0x2000, 0x200B, 0x2028, 0x202E, 0x3000, 0xFEFF,
		0xFF0E, 0xFF0F, 0xFF3C, 0x2215, 0x2044, 0x2024, 0xFE52, 0x00A5, 0x212A, 0x017F, 0xFB01, 0x1D41A, 0x2460, 0xFFFD} {
		enc := pctAll(string(r))
		out = append(out, "/a"+enc+"b", "/x/"+enc, "/"+enc+"admin", "/admin"+enc)
	}
	for _, bad := range []string{"%c0%ae", "%c0%af", "%e0%80%ae", "%f0%80%80%ae", "%c1%9c", "%ed%a0%80", "%ed%bf%bf", "%c3", "%e6%97", "%80", "%bf", "%fe", "%ff", "%f4%90%80%80", "%f8%88%80%80%80"} {
		out = append(out, "/a"+bad+"b", "/x/"+bad+bad+"/admin", "/admin"+bad)
	}
	segs := []string{".", "..", "...", "%2e", "%2E%2e", ".%2e", "%2e.", "%20", "a.", "a%2e", "a%20", "%20a", "a%20b", ".a", "a..b",
		"%c0%ae", "~", "%7e", "%41dmin", "admin", "admin%20", "admin.", "public", "a%3bb", "a%2fb", "a%5cb", "a%25b", "a%23b", "a%3fb", ""}
	for _, s1 := range segs {
		for _, s2 := range segs {
			out = append(out, "/"+s1+"/"+s2)
		}
	}
	return out
}

func pctAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// runDifferential sends the corpus to Portcullis at addr. The upstream
// answers 200 with its decoded path on the first line of the body and an
// X-Upstream header; Portcullis's own refusals carry neither. It returns how
// many targets were accepted.
func runDifferential(t *testing.T, addr, upstreamName string) int {
	t.Helper()
	corpus := diffCorpus()
	var accepted atomic.Int64
	var wg sync.WaitGroup
	work := make(chan string)
	const workers = 4
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for target := range work {
				checkDifferential(t, addr, upstreamName, target, &accepted)
			}
		}()
	}
	for _, target := range corpus {
		work <- target
	}
	close(work)
	wg.Wait()
	t.Logf("%s: %d of %d targets accepted and agreed on", upstreamName, accepted.Load(), len(corpus))
	return int(accepted.Load())
}

func checkDifferential(t *testing.T, addr, upstreamName, target string, accepted *atomic.Int64) {
	_, rawPath, rawQuery, err := policy.SplitTarget(target)
	var want policy.Target
	if err == nil {
		want, err = policy.ParseTarget("GET", "app.test", rawPath, rawQuery)
	}
	resp, body := send(t, addr, "GET "+target+" HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
	fromUpstream := resp.Header.Get("X-Upstream") == upstreamName
	if err != nil {
		if resp.StatusCode != http.StatusBadRequest || fromUpstream {
			t.Errorf("%q: refused by the firewall (%v), yet got status %d (from upstream: %v)", target, err, resp.StatusCode, fromUpstream)
		}
		return
	}
	if resp.StatusCode != http.StatusOK || !fromUpstream {
		t.Errorf("%q: accepted by the firewall, yet got status %d (from upstream: %v): %s", target, resp.StatusCode, fromUpstream, body)
		return
	}
	seen, _, _ := strings.Cut(body, "\n")
	if seen != want.Path.Match {
		t.Errorf("%q: Portcullis matched %q, %s decoded %q", target, want.Path.Match, upstreamName, seen)
		return
	}
	accepted.Add(1)
}

func TestDifferentialGoUpstream(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("X-Upstream", "go")
		fmt.Fprintf(w, "%s\n%s", r.URL.Path, r.RequestURI)
	}))
	t.Cleanup(up.Close)
	e := newEnvConfig(t, fmt.Sprintf(diffConfig, up.URL))
	n := runDifferential(t, e.front.Listener.Addr().String(), "go")
	if got := hits.Load(); got != int64(n) {
		t.Errorf("the upstream received %d requests for %d accepted targets", got, n)
	}
	if n < 600 {
		t.Errorf("only %d targets accepted; the corpus or the firewall changed shape", n)
	}
}

// nginxUpstreamConf answers with $uri: nginx's decoded path after merging
// slashes and resolving dot segments, so any target whose forwarded form
// nginx normalises into something else shows up.
const nginxUpstreamConf = `
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
    location / {
      add_header X-Upstream nginx;
      return 200 "$uri\n$request_uri";
    }
  }
}
`

func TestDifferentialNginxUpstream(t *testing.T) {
	t.Parallel()
	bin := redistest.Require(t, "nginx")
	dir := t.TempDir()
	port := redistest.FreePort(t)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(nginxUpstreamConf, dir, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	startFront(t, exec.Command(bin, "-p", dir, "-c", conf), base, func() string {
		log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
		return string(log)
	})
	e := newEnvConfig(t, fmt.Sprintf(diffConfig, base))
	if n := runDifferential(t, e.front.Listener.Addr().String(), "nginx"); n < 600 {
		t.Errorf("only %d targets accepted; the corpus or the firewall changed shape", n)
	}
}
