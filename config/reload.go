package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// minWatchInterval keeps a mistyped interval (1ms) from turning file
// watching into a busy loop; every poll reads and hashes the watched files.
const minWatchInterval = 100 * time.Millisecond

func checkReload(c *checker, r Reload) {
	if d := r.Interval(); d < 0 || (d > 0 && d < minWatchInterval) {
		c.fail("reload.watch_interval", "must be 0s (SIGHUP only) or at least %s, got %s", minWatchInterval, d)
	}
}

// checkSigningKey makes sure some key signs: the first key without
// publish_only is the signing key, so a list of publish_only keys only
// would leave /token nothing to sign with.
func checkSigningKey(c *checker, keys []Key) {
	if len(keys) == 0 {
		return
	}
	for _, k := range keys {
		if !k.PublishOnly {
			return
		}
	}
	c.fail("issuer.keys", "every key is publish_only, so none can sign; remove publish_only from the key that should sign (the first key without it signs)")
}

// SigningKey returns the index of the key that signs: the first one without
// publish_only; -1 when there is none (no keys: an ephemeral key signs).
func SigningKey(keys []Key) int {
	for i, k := range keys {
		if !k.PublishOnly {
			return i
		}
	}
	return -1
}

// RestartKeys are the settings a reload cannot apply: they shape listeners
// and the shared Redis client, which outlive every reload. A changed value
// is reported and left for the next restart.
var RestartKeys = []string{"listen", "admin_listen", "grpc_listen", "tls.client_auth", "redis"}

// NeedsRestart returns the RestartKeys whose values differ between the
// configuration the process started with and next. Paths that do not exist
// in this schema are skipped. Only paths are returned, never values: the
// Redis settings carry a password.
func NeedsRestart(running, next *Config) []string {
	var changed []string
	for _, path := range RestartKeys {
		a, okA := lookupPath(reflect.ValueOf(running), path)
		b, okB := lookupPath(reflect.ValueOf(next), path)
		if !okA || !okB {
			continue
		}
		if path == "admin_listen" {
			a, b = running.AdminAddr(), next.AdminAddr() // nil means the default
		}
		if !reflect.DeepEqual(a, b) {
			changed = append(changed, path)
		}
	}
	return changed
}

// lookupPath finds the value at a dotted YAML key path. A nil pointer on the
// way yields nil (absent section); ok is false when the schema has no such key.
func lookupPath(v reflect.Value, path string) (any, bool) {
	for _, key := range strings.Split(path, ".") {
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if _, ok := fieldPath(v.Type().Elem(), key); !ok {
					return nil, false
				}
				return nil, true
			}
			v = v.Elem()
		}
		if v.Kind() != reflect.Struct {
			return nil, false
		}
		idx, ok := fieldsByTag(v.Type())[key]
		if !ok {
			return nil, false
		}
		v = v.Field(idx)
	}
	return v.Interface(), true
}

func fieldPath(t reflect.Type, key string) (int, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return 0, false
	}
	i, ok := fieldsByTag(t)[key]
	return i, ok
}

// unwatchedFiles are *_file settings read afresh on every use: a change to
// them needs no reload, and a rotating token (Kubernetes refreshes
// projected service-account tokens hourly) must not trigger one each time.
var unwatchedFiles = map[string]bool{"bearer_token_file": true}

// Files lists every file the configuration names (keys, certificates, CA
// bundles: each setting whose YAML name ends in _file, except those read on
// every use), in schema order, without duplicates. A reload watches their
// contents.
func (c *Config) Files() []string {
	var out []string
	seen := map[string]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i))
			}
		case reflect.Struct:
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || tag == "" || tag == "-" {
					continue
				}
				fv := v.Field(i)
				if strings.HasSuffix(tag, "_file") && fv.Kind() == reflect.String {
					if p := fv.String(); p != "" && !seen[p] && !unwatchedFiles[tag] {
						seen[p] = true
						out = append(out, p)
					}
					continue
				}
				walk(fv)
			}
		}
	}
	walk(reflect.ValueOf(c))
	return out
}

// LoadKeys reads only issuer.keys from a configuration file, with the
// environment applied and paths resolved, without validating anything: it
// lets -check-config compare against a previous configuration whose key
// files may be gone already. It fails only when the file cannot be read or
// is not YAML.
func LoadKeys(path string, getenv func(string) string) ([]Key, error) {
	cfg, err := loadLenient(path, getenv)
	if err != nil {
		return nil, err
	}
	return cfg.Issuer.Keys, nil
}

// LoadFiles lists the files a configuration file names (see Config.Files)
// without validating it: a reload that was refused because a key file is
// missing watches that file, to retry when it appears.
func LoadFiles(path string, getenv func(string) string) ([]string, error) {
	cfg, err := loadLenient(path, getenv)
	if err != nil {
		return nil, err
	}
	return cfg.Files(), nil
}

// loadLenient decodes what it can of a configuration file: decoding
// problems (an unknown key from another version, say) are ignored, and no
// validation runs.
func loadLenient(path string, getenv func(string) string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("reading config %s: larger than %d bytes", path, maxConfigBytes)
	}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("config %s is not valid YAML: %w", path, err)
	}
	cfg := &Config{}
	if root.Kind != 0 {
		d := &decoder{getenv: getenv}
		d.decode(&root, reflect.ValueOf(cfg).Elem(), "")
	}
	applyEnvKey(cfg, getenv)
	resolvePaths(cfg, filepath.Dir(path))
	return cfg, nil
}
