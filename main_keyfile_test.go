package main

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

// TestHealthCheckReadsNoSecrets: -health-check reads the listen addresses
// and nothing else, so a config whose CLIENT_SECRET would cost a bcrypt-31
// hash (minutes) and whose key file is missing is still probed at once.
func TestHealthCheckReadsNoSecrets(t *testing.T) {
	t.Parallel()
	_, admin, _ := startReady(t, []string{"-config", "config.example.yaml"})
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte(`
admin_listen: "${ADMIN_ADDR}"
environment: production
issuer: {url: https://a.test, keys: [{id: k, algorithm: ES256, private_key_file: /nonexistent.pem}]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"ADMIN_ADDR=" + admin, "CLIENT_ID=svc", "CLIENT_SECRET=" + strong, "BCRYPT_COST=31"}
	done := make(chan struct{})
	var code int
	var errOut string
	go func() {
		defer close(done)
		code, _, errOut = runCLI(t, "", env, "-health-check", "-config", cfg)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("-health-check is still running: it is loading secrets")
	}
	if code != 0 {
		t.Errorf("-health-check: exit %d %s", code, errOut)
	}
	// Without a file: the environment's ADMIN_BIND_ADDR, and BIND_ADDR when
	// the admin endpoints are on the main listener.
	if code, _, errOut := runCLI(t, "", []string{"ADMIN_BIND_ADDR=" + admin, "CLIENT_ID=svc", "CLIENT_SECRET=" + strong, "BCRYPT_COST=31"}, "-health-check"); code != 0 {
		t.Errorf("-health-check from the environment: exit %d %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "", []string{"ADMIN_BIND_ADDR=none", "BIND_ADDR=" + admin}, "-health-check"); code != 0 {
		t.Errorf("-health-check on listen (ADMIN_BIND_ADDR=none): exit %d %s", code, errOut)
	}
}

// TestSecretMountedKeyAsNonRoot starts the binary as uid 65532 (the image's
// user) against a key laid out as a Kubernetes Secret volume does it: a
// symlink through ..data to a file owned by root, group fsGroup, mode 0440.
// Production accepts it when fsGroup is one of the process's groups (its
// primary group or a supplementary one) and refuses everything wider.
func TestSecretMountedKeyAsNonRoot(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown files and start a process as another user")
	}
	const app = 65532
	// A directory every user can traverse, unlike t.TempDir (0700).
	root, err := os.MkdirTemp("", "portcullis-secret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "portcullis")
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	pemKey := ecKeyPEM(t)
	// volume lays the key out the kubelet's way and returns the config.
	volume := func(name string, uid, gid int, mode os.FileMode) string {
		vol := filepath.Join(root, name)
		ts := filepath.Join(vol, "..2026_12_01_18_30_00.000000001")
		if err := os.MkdirAll(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(ts, "es256.pem")
		if err := os.WriteFile(f, pemKey, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(f, uid, gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Base(ts), filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("..data/es256.pem", filepath.Join(vol, "es256.pem")); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(vol, "config.yaml")
		yaml := "environment: production\nissuer:\n  url: https://auth.test\n  keys: [{id: k1, algorithm: ES256, private_key_file: " + filepath.Join(vol, "es256.pem") + "}]\n"
		if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tests := []struct {
		name       string
		uid, gid   int
		mode       os.FileMode
		cred       syscall.Credential
		wantRefuse string
	}{
		{"fsGroup is the primary group", 0, app, 0o440, syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}, ""},
		{"fsGroup is a supplementary group", 0, app, 0o440, syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{app}}, ""},
		{"owned by the process, 0400", app, app, 0o400, syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}, ""},
		{"group the process is not in", 0, app, 0o440, syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{}}, "not one of this process's groups"},
		{"readable by others", 0, app, 0o444, syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}, "accessible by others"},
		{"group-readable but owned by another user", 4242, app, 0o440, syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}, "owned by uid 4242"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := volume(fmt.Sprintf("vol%d", i), tt.uid, tt.gid, tt.mode)
			for _, mode := range [][]string{{"-check-config", "-config", cfg}, {"-config", cfg}} {
				check := mode[0] == "-check-config"
				if !check && tt.wantRefuse == "" {
					continue // starting for real is covered below
				}
				cmd := exec.Command(bin, mode...)
				cmd.Env = []string{"BIND_ADDR=127.0.0.1:0", "ADMIN_BIND_ADDR=127.0.0.1:0"}
				cred := tt.cred
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &cred}
				out, err := cmd.CombinedOutput()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				switch {
				case tt.wantRefuse == "" && code != 0:
					t.Errorf("%v: exit %d, want the key accepted:\n%s", mode, code, out)
				case tt.wantRefuse != "" && check && code != 1, tt.wantRefuse != "" && !check && code != 2:
					t.Errorf("%v: exit %d, want a refusal:\n%s", mode, code, out)
				case tt.wantRefuse != "" && !(strings.Contains(string(out), tt.wantRefuse) && strings.Contains(string(out), "issuer.keys[0].private_key_file") && strings.Contains(string(out), "es256.pem")):
					t.Errorf("%v: output does not name the key, the file and %q:\n%s", mode, tt.wantRefuse, out)
				}
			}
		})
	}
	// And it serves: started as 65532 with the fsGroup layout, the JWKS
	// publishes the mounted key.
	cfg := volume("serve", 0, app, 0o440)
	admin := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	main := fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
	cmd := exec.Command(bin, "-config", cfg)
	cmd.Env = []string{"BIND_ADDR=" + main, "ADMIN_BIND_ADDR=" + admin}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: app, Gid: app, Groups: []uint32{}}}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	defer func() { _ = cmd.Process.Kill(); <-exited }()
	for {
		if resp, err := http.Get("http://" + main + "/.well-known/jwks.json"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), `"kid":"k1"`) {
				t.Errorf("JWKS %s lacks the mounted key k1", b)
			}
			return
		}
		select {
		case <-exited:
			t.Fatalf("portcullis as uid %d exited: %s", app, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
