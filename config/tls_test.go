package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTLSConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name string
		tls  string
		want []string // substrings, one per expected problem; none: valid
	}{
		{"minimal", "{cert_file: tls.crt, key_file: tls.key}", nil},
		{"all keys", `{cert_file: tls.crt, key_file: tls.key, min_version: "1.3", client_ca_file: ca.crt, client_auth: required}`, nil},
		{"missing files", "{min_version: \"1.2\"}", []string{"tls.cert_file: required", "tls.key_file: required"}},
		{"unreadable", "{cert_file: nope.crt, key_file: tls.key, client_ca_file: nope.ca}", []string{"tls.cert_file: cannot read", "tls.client_ca_file: cannot read"}},
		{"bad version", `{cert_file: tls.crt, key_file: tls.key, min_version: "1.1"}`, []string{`tls.min_version: "1.1"`}},
		{"unquoted 1.20", `{cert_file: tls.crt, key_file: tls.key, min_version: 1.20}`, []string{`tls.min_version: "1.20"`}},
		{"required without CA", "{cert_file: tls.crt, key_file: tls.key, client_auth: required}", []string{"tls.client_auth: required needs tls.client_ca_file"}},
		{"unknown auth", "{cert_file: tls.crt, key_file: tls.key, client_ca_file: ca.crt, client_auth: sometimes}", []string{`tls.client_auth: "sometimes"`}},
		{"unknown key", "{cert_file: tls.crt, key_file: tls.key, ciphers: [x]}", []string{"tls.ciphers"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Parse([]byte(minimal+"tls: "+tc.tls+"\n"), dir, env(nil))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.TLS.CertFile != filepath.Join(dir, "tls.crt") || cfg.TLS.ClientAuth == "" || cfg.TLS.MinVersion == "" {
					t.Errorf("paths or defaults not applied: %+v", cfg.TLS)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.want) {
				t.Errorf("%d problems reported, want %d:\n%v", got, len(tc.want), err)
			}
		})
	}
}
