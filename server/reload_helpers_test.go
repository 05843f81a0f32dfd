package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/internal/redistest"
)

// volume is a directory laid out the way the kubelet writes ConfigMap and
// Secret volumes: the files live in a timestamped directory, "..data" is a
// symlink to it, and each visible name is a symlink through "..data". An
// update writes a new directory and renames a new "..data" symlink over the
// old one, so every file changes at once and no path's own inode changes.
type volume struct {
	dir string
	n   int
}

func newVolume(t *testing.T, files map[string]string) *volume {
	t.Helper()
	v := &volume{dir: t.TempDir()}
	v.write(t, files)
	return v
}

func (v *volume) path(name string) string { return filepath.Join(v.dir, name) }

// write replaces the volume's contents atomically, as the kubelet does.
func (v *volume) write(t *testing.T, files map[string]string) {
	t.Helper()
	v.n++
	ts := fmt.Sprintf("..2026_12_01_00_00_%02d.%d", v.n, v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Names new to the volume get their symlink first (dangling until
	// the swap), so every file appears in the same instant.
	for name := range files {
		link := filepath.Join(v.dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// logBuffer collects JSON log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the log lines whose msg is msg, decoded.
func (b *logBuffer) lines(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(b.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// records returns every log line, decoded; a line that is not JSON fails t.
func (b *logBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %.200q", l)
		}
		out = append(out, m)
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond until it holds; the deadline is generous because the
// machine may be saturated, and the test only waits as long as it must.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// running is a Server started with Run on loopback ports, reloading from a
// volume.
type running struct {
	s           *Server
	main, admin string // host:port
	hup         chan os.Signal
	logs        *logBuffer
	vol         *volume
}

func (r *running) reloads(result string) float64 {
	return testutil.ToFloat64(r.s.metrics.ConfigReloads.WithLabelValues(result))
}

func (r *running) lastOK() float64 { return testutil.ToFloat64(r.s.metrics.ConfigLastReloadOK) }

// waitReloads waits until config_reloads_total{result} reaches n.
func (r *running) waitReloads(t *testing.T, result string, n float64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("config_reloads_total{result=%q} = %v", result, n), func() bool { return r.reloads(result) >= n })
}

// startReloading runs a server whose config.yaml is in vol (yaml is a
// format string taking the main and admin addresses, in that order).
func startReloading(t *testing.T, vol *volume, main, admin string) *running {
	t.Helper()
	r := &running{main: main, admin: admin, hup: make(chan os.Signal, 1), logs: &logBuffer{}, vol: vol}
	getenv := func(k string) string {
		if k == "HASH" {
			return testHash
		}
		return ""
	}
	path := vol.path("config.yaml")
	load := func() (*config.Config, []string, error) { return config.Load(path, getenv) }
	cfg, _, err := load()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, _, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	s.EnableReload(ReloadOptions{Load: load, File: path, Getenv: getenv, Signals: r.hup})
	r.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "readiness", func() bool {
		resp, err := http.Get("http://" + admin + "/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return r
}

// addrs returns two free loopback addresses.
func addrs(t *testing.T) (string, string) {
	return fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t)), fmt.Sprintf("127.0.0.1:%d", redistest.FreePort(t))
}
