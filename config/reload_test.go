package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestReloadAndSigningKeyValidation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeKey(t, dir, 0o600)
	for _, tc := range []struct {
		name    string
		yaml    string
		wantErr string // "" means valid
	}{
		{"default interval", "", ""},
		{"sighup only", "reload: {watch_interval: 0s}\n", ""},
		{"negative", "reload: {watch_interval: -1s}\n", "reload.watch_interval: must be 0s (SIGHUP only) or at least 100ms, got -1s"},
		{"too fast", "reload: {watch_interval: 1ms}\n", "reload.watch_interval"},
		{"unknown reload key", "reload: {interval: 1s}\n", "reload.interval: unknown key"},
		{"publish_only next key", "issuer:\n  url: https://a\n  keys: [{id: a, algorithm: ES256, private_key_file: k.pem}, {id: b, algorithm: HS256, secret: s, publish_only: true}]\n", ""},
		{"every key publish_only", "issuer:\n  url: https://a\n  keys: [{id: a, algorithm: ES256, private_key_file: k.pem, publish_only: true}]\n", "issuer.keys: every key is publish_only"},
		{"publish_only not a bool", "issuer:\n  url: https://a\n  keys: [{id: a, algorithm: ES256, private_key_file: k.pem, publish_only: maybe}]\n", "issuer.keys[0].publish_only: expected true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			y := "environment: development\n" + tc.yaml
			if !strings.Contains(y, "issuer:") {
				y += "issuer: {url: https://a}\n"
			}
			_, _, err := Parse([]byte(y), dir, env(nil))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestReloadInterval(t *testing.T) {
	t.Parallel()
	zero, five := Duration(0), Duration(5*time.Second)
	for _, tc := range []struct {
		r    Reload
		want time.Duration
	}{{Reload{}, DefaultWatchInterval}, {Reload{WatchInterval: &zero}, 0}, {Reload{WatchInterval: &five}, 5 * time.Second}} {
		if got := tc.r.Interval(); got != tc.want {
			t.Errorf("Interval() = %s, want %s", got, tc.want)
		}
	}
}

func TestSigningKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		keys []Key
		want int
	}{
		{nil, -1},
		{[]Key{{ID: "a"}}, 0},
		{[]Key{{ID: "a", PublishOnly: true}, {ID: "b"}, {ID: "c"}}, 1},
		{[]Key{{ID: "a", PublishOnly: true}}, -1},
	} {
		if got := SigningKey(tc.keys); got != tc.want {
			t.Errorf("SigningKey(%+v) = %d, want %d", tc.keys, got, tc.want)
		}
	}
}

func TestNeedsRestart(t *testing.T) {
	t.Parallel()
	base := func() *Config {
		admin := ":9090"
		return &Config{Listen: ":8080", AdminListen: &admin, Routes: []Route{{Path: "/"}}}
	}
	other, empty := ":9999", ""
	for _, tc := range []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"routes only", func(c *Config) { c.Routes = nil }, nil},
		{"listen", func(c *Config) { c.Listen = ":1" }, []string{"listen"}},
		{"admin_listen", func(c *Config) { c.AdminListen = &other }, []string{"admin_listen"}},
		{"admin_listen default spelled out", func(c *Config) { c.AdminListen = nil }, nil},
		{"admin on main", func(c *Config) { c.AdminListen = &empty }, []string{"admin_listen"}},
		{"redis added", func(c *Config) { c.Redis = &Redis{URL: "redis://x:1/0"} }, []string{"redis"}},
		{"both", func(c *Config) { c.Listen = ":1"; c.Redis = &Redis{} }, []string{"listen", "redis"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			next := base()
			tc.change(next)
			if got := NeedsRestart(base(), next); !slices.Equal(got, tc.want) {
				t.Errorf("NeedsRestart = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFilesAndLenientLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "c.yaml")
	y := `environment: production
not_a_key_any_more: 1
issuer:
  url: https://a
  keys:
    - {id: a, algorithm: ES256, private_key_file: keys/a.pem}
    - {id: b, algorithm: ES256, private_key_file: /abs/b.pem, publish_only: true}
    - {id: a2, algorithm: ES256, private_key_file: keys/a.pem}
`
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	files, err := LoadFiles(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{filepath.Join(dir, "keys/a.pem"), "/abs/b.pem"}; !slices.Equal(files, want) {
		t.Errorf("LoadFiles = %v, want %v (resolved, deduplicated, in order)", files, want)
	}
	keys, err := LoadKeys(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 || !keys[1].PublishOnly || keys[0].ID != "a" {
		t.Errorf("LoadKeys = %+v", keys)
	}
	keys, err = LoadKeys(filepath.Join(dir, "none.yaml"), env(map[string]string{"JWT_SECRET_KEY": "x"}))
	if err == nil {
		t.Errorf("LoadKeys of a missing file: %+v, want an error", keys)
	}
	if err := os.WriteFile(cfgPath, []byte("environment: development\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err = LoadKeys(cfgPath, env(map[string]string{"JWT_SECRET_KEY": "x"}))
	if err != nil || len(keys) != 1 || keys[0].ID != "hs256" {
		t.Errorf("LoadKeys with JWT_SECRET_KEY and no keys in the file = %+v, %v; want the hs256 key", keys, err)
	}
	if err := os.WriteFile(cfgPath, []byte("issuer: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(cfgPath, nil); err == nil {
		t.Error("LoadKeys of a file that is not YAML: no error")
	}
}
