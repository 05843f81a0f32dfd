package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chownedKey writes a key file with the given owner and mode (tests run as
// root, so chown works; elsewhere the test is skipped).
func chownedKey(t *testing.T, dir string, uid, gid int, mode os.FileMode) string {
	t.Helper()
	p := writeKey(t, dir, mode)
	if err := os.Chown(p, uid, gid); err != nil {
		if os.Geteuid() != 0 {
			t.Skipf("chown needs root: %v", err)
		}
		t.Fatal(err)
	}
	return p
}

func TestKeyFileProblem(t *testing.T) {
	t.Parallel()
	const app = 65532
	tests := []struct {
		name       string
		uid, gid   int
		mode       os.FileMode
		id         processIdentity
		wantRefuse string // "" = accepted
	}{
		{"owner only", 4242, 4242, 0o600, processIdentity{app, []int{app}}, ""},
		{"owner read only", app, app, 0o400, processIdentity{app, []int{app}}, ""},
		{"Secret volume with fsGroup", 0, app, 0o440, processIdentity{app, []int{app}}, ""},
		{"Secret volume 0640", 0, app, 0o640, processIdentity{app, []int{app}}, ""},
		{"fsGroup as a supplementary group", 0, app, 0o440, processIdentity{1000, []int{1000, app}}, ""},
		{"own file, own group", app, app, 0o440, processIdentity{app, []int{app}}, ""},
		{"group the process is not in", 0, 1234, 0o440, processIdentity{app, []int{app}}, "not one of this process's groups"},
		{"group readable, owned by someone else", 4242, app, 0o440, processIdentity{app, []int{app}}, "owned by uid 4242"},
		{"others readable", 0, app, 0o444, processIdentity{app, []int{app}}, "accessible by others (mode 0444)"},
		{"others readable, owner only otherwise", app, app, 0o604, processIdentity{app, []int{app}}, "accessible by others"},
		{"others writable", app, app, 0o602, processIdentity{app, []int{app}}, "accessible by others"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := chownedKey(t, t.TempDir(), tt.uid, tt.gid, tt.mode)
			st, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			got := keyFileProblem(p, st, tt.id)
			switch {
			case tt.wantRefuse == "" && got != "":
				t.Errorf("refused: %s; want accepted", got)
			case tt.wantRefuse != "" && !strings.Contains(got, tt.wantRefuse):
				t.Errorf("got %q, want a refusal mentioning %q", got, tt.wantRefuse)
			case tt.wantRefuse != "" && !strings.Contains(got, p):
				t.Errorf("refusal %q does not name the file", got)
			}
		})
	}
}

// TestSecretVolumeLayout lays a key out as the kubelet does (the visible
// name is a symlink through ..data to a timestamped directory) and checks
// that the target's owner and mode are judged, not the symlink's 0777.
func TestSecretVolumeLayout(t *testing.T) {
	t.Parallel()
	id := currentIdentity()
	for _, tt := range []struct {
		name string
		gid  int
		mode os.FileMode
		ok   bool
	}{
		{"fsGroup is the process's group", id.groups[0], 0o440, true},
		{"a foreign group", 54321, 0o440, false},
		{"others", id.groups[0], 0o444, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vol := t.TempDir()
			data := filepath.Join(vol, "..2026_12_01_18_00_00.123")
			if err := os.Mkdir(data, 0o755); err != nil {
				t.Fatal(err)
			}
			chownedKey(t, data, 0, tt.gid, tt.mode)
			if err := os.Symlink(filepath.Base(data), filepath.Join(vol, "..data")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join("..data", "k.pem"), filepath.Join(vol, "es256.pem")); err != nil {
				t.Fatal(err)
			}
			_, _, err := Parse([]byte(`
environment: production
issuer: {url: https://a.example, keys: [{id: e, algorithm: ES256, private_key_file: es256.pem}]}
`), vol, env(nil))
			if tt.ok && err != nil {
				t.Errorf("Parse: %v, want the Secret-mounted key accepted", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "issuer.keys[0].private_key_file:")) {
				t.Errorf("Parse: %v, want a refusal naming issuer.keys[0].private_key_file", err)
			}
		})
	}
}
