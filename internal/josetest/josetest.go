// Package josetest runs a real JWT relying party for tests: a small Node.js
// script around the npm package jose, whose createRemoteJWKSet caches the
// JWKS the way verifiers in the field do. The script's dependencies are
// installed from package-lock.json on first use (make deps does it too).
// Where node or npm is missing the test is skipped, except under CI=true,
// where it fails.
package josetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redistest"
)

// Verifier is one running verify.mjs. Safe for concurrent use (calls are
// serialised: the script answers one line per command, in order).
type Verifier struct {
	mu  sync.Mutex
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// installMu serialises npm installs when tests start verifiers in parallel.
var installMu sync.Mutex

// dir is the directory holding verify.mjs and package.json.
func dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Start runs a verifier that trusts the JWKS at jwksURL for tokens of
// issuer with audience, caching the key set for cacheMaxAge. It is stopped
// by PID when the test ends.
func Start(t testing.TB, jwksURL, issuer, audience string, cacheMaxAge time.Duration) *Verifier {
	t.Helper()
	node := redistest.Require(t, "node")
	d := dir()
	installMu.Lock()
	if _, err := os.Stat(filepath.Join(d, "node_modules", "jose", "package.json")); err != nil {
		npm := redistest.Require(t, "npm")
		out, err := exec.Command(npm, "ci", "--no-audit", "--no-fund", "--prefix", d).CombinedOutput()
		if err != nil {
			installMu.Unlock()
			t.Fatalf("installing jose (npm ci in %s): %v\n%s", d, err, out)
		}
	}
	installMu.Unlock()
	cmd := exec.Command(node, filepath.Join(d, "verify.mjs"), jwksURL, issuer, audience,
		strconv.FormatInt(cacheMaxAge.Milliseconds(), 10))
	cmd.Dir = d
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node: %v", err)
	}
	v := &Verifier{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	v.out.Buffer(make([]byte, 0, 64<<10), 1<<20)
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, _ = cmd.Process.Wait()
	})
	return v
}

func (v *Verifier) call(line string) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, err := io.WriteString(v.in, line+"\n"); err != nil {
		return "", fmt.Errorf("writing to the verifier: %w", err)
	}
	if !v.out.Scan() {
		return "", fmt.Errorf("the verifier stopped: %v", v.out.Err())
	}
	return v.out.Text(), nil
}

// Verify checks token with the cached JWKS (refetching it as jose does) and
// returns the kid that verified it.
func (v *Verifier) Verify(token string) (string, error) {
	ans, err := v.call("verify " + token)
	if err != nil {
		return "", err
	}
	if kid, ok := strings.CutPrefix(ans, "ok "); ok {
		return kid, nil
	}
	return "", errors.New(strings.TrimPrefix(ans, "fail "))
}

// Kids returns the key ids in the verifier's cached JWKS (none before its
// first verification).
func (v *Verifier) Kids() ([]string, error) {
	ans, err := v.call("kids")
	if err != nil {
		return nil, err
	}
	list := strings.TrimPrefix(ans, "kids ")
	if list == "" {
		return nil, nil
	}
	return strings.Split(list, ","), nil
}
