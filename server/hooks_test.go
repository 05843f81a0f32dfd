package server

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/config"
)

// TestReloadHooks: a hook's error fails the whole reload (nothing swapped,
// its commit and every other commit skipped); commits run only after the
// new runtime is installed.
func TestReloadHooks(t *testing.T) {
	t.Parallel()
	get := func(k string) string {
		if k == "HASH" {
			return testHash
		}
		return ""
	}
	load := func() (*config.Config, []string, error) { return config.Parse([]byte(testConfig), t.TempDir(), get) }
	cfg, _, err := load()
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.EnableReload(ReloadOptions{Load: load})

	var commits []string
	var sawNew bool
	fail := true
	first := s.current()
	s.OnReload(func(next *config.Config) (func(), error) {
		return func() {
			commits = append(commits, "tls")
			sawNew = s.current() != first && s.current().cfg == next
		}, nil
	})
	s.OnReload(func(next *config.Config) (func(), error) {
		if fail {
			return nil, errors.New("tls.cert_file: no certificate in /x.pem")
		}
		return nil, nil // nothing to commit
	})

	err = s.Reload("test")
	if err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("Reload with a failing hook = %v, want its error", err)
	}
	if s.current() != first {
		t.Error("a failed hook still swapped the runtime")
	}
	if len(commits) != 0 {
		t.Errorf("commits ran for a failed reload: %v", commits)
	}
	fail = false
	if err := s.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if len(commits) != 1 || !sawNew {
		t.Errorf("commits %v (saw new runtime: %v), want one commit after the swap", commits, sawNew)
	}
	if err := (&Server{}).Reload("test"); !errors.Is(err, errNoSource) {
		t.Errorf("Reload without EnableReload = %v, want errNoSource", err)
	}
}
