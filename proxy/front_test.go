package proxy

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

// frontCase is one request sent through a real front proxy (nginx, Caddy)
// that asks Portcullis's /auth/verify before forwarding to the upstream.
type frontCase struct {
	name, path, token string
	wantStatus        int
	wantSubject       string
}

// writeFrontConf writes a front proxy's config into a fresh directory; render
// gets that directory, a free loopback port, and the addresses of
// Portcullis and of the app. It returns the directory, the file and the
// front proxy's base URL.
func writeFrontConf(t *testing.T, e *env, name string, render func(dir string, port int, portcullis, app string) string) (dir, conf, base string) {
	t.Helper()
	dir = t.TempDir()
	port := redistest.FreePort(t)
	conf = filepath.Join(dir, name)
	body := render(dir, port, strings.TrimPrefix(e.front.URL, "http://"), strings.TrimPrefix(e.up.URL, "http://"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, conf, fmt.Sprintf("http://127.0.0.1:%d", port)
}

// startFront runs a front proxy process, stops it (by PID) when the test
// ends, and waits until base answers.
func startFront(t *testing.T, cmd *exec.Cmd, base string, logs func() string) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := client.Get(base + "/public")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering at %s: %v\n%s", cmd.Path, base, err, logs())
		}
		time.Sleep(20 * time.Millisecond) // polling readiness
	}
}

// runFrontCases sends each case with a spoofed X-Auth-Subject and checks the
// status, that denied requests never reach the upstream, and the subject the
// upstream saw. absent lists values a front proxy may put in place of an
// identity header the auth answer lacked (never the client's own).
func runFrontCases(t *testing.T, e *env, base string, cases []frontCase, absent ...string) {
	client := &http.Client{Timeout: 5 * time.Second}
	for _, tc := range cases {
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
			if tc.wantStatus != http.StatusOK {
				if len(got) != 0 {
					t.Fatal("upstream saw a denied request")
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("upstream saw %d requests", len(got))
			}
			sub := got[0].header.Get("X-Auth-Subject")
			for _, a := range absent {
				if tc.wantSubject == "" && sub == a {
					sub = ""
				}
			}
			if sub != tc.wantSubject {
				t.Fatalf("upstream saw X-Auth-Subject %q, want %q", sub, tc.wantSubject)
			}
		})
	}
}

// stopProcess asks a server we started to stop (SIGTERM, so nginx's master
// also ends its workers) and kills it if it has not exited within 5 s.
func stopProcess(cmd *exec.Cmd) {
	done := make(chan struct{})
	go func() { _, _ = cmd.Process.Wait(); close(done) }()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
