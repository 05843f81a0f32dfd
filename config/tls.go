package config

import (
	"os"
	"path/filepath"
)

// TLS makes listen serve HTTPS only. Certificates are re-read when their
// files change and on reload; the admin listener stays plain HTTP.
type TLS struct {
	CertFile string `yaml:"cert_file"` // PEM chain, leaf first
	KeyFile  string `yaml:"key_file"`  // PEM private key
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ClientCAFile, when set, verifies client certificates against these
	// PEM roots; a certificate that does not verify is always refused.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "optional" (default: a client may present none) or
	// "required" (the handshake fails without one; needs ClientCAFile).
	ClientAuth string `yaml:"client_auth"`
}

// TLS versions and client-auth modes accepted in configuration.
const (
	TLSVersion12       = "1.2"
	TLSVersion13       = "1.3"
	ClientAuthOptional = "optional"
	ClientAuthRequired = "required"
)

func defaultTLS(c *Config) {
	if t := c.TLS; t != nil {
		if t.MinVersion == "" {
			t.MinVersion = TLSVersion12
		}
		if t.ClientAuth == "" {
			t.ClientAuth = ClientAuthOptional
		}
	}
}

// resolveTLSPaths anchors relative certificate paths at the config's
// directory, as key paths are.
func resolveTLSPaths(c *Config, dir string) {
	t := c.TLS
	if t == nil {
		return
	}
	for _, p := range []*string{&t.CertFile, &t.KeyFile, &t.ClientCAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

// checkTLS reports every problem with the tls section. The files are only
// looked at here; the server parses them (and -check-config reports what
// it finds).
func checkTLS(c *checker, t *TLS) {
	if t == nil {
		return
	}
	checkFile := func(p, file string, required bool) {
		if file == "" {
			if required {
				c.fail(p, "required")
			}
			return
		}
		st, err := os.Stat(file)
		switch {
		case err != nil:
			c.fail(p, "cannot read %s: %v", file, unwrapPathErr(err))
		case st.IsDir():
			c.fail(p, "%s is a directory", file)
		}
	}
	checkFile("tls.cert_file", t.CertFile, true)
	checkFile("tls.key_file", t.KeyFile, true)
	checkFile("tls.client_ca_file", t.ClientCAFile, false)
	if t.MinVersion != TLSVersion12 && t.MinVersion != TLSVersion13 {
		c.fail("tls.min_version", "%q is not one of \"1.2\", \"1.3\" (quote it in YAML)", t.MinVersion)
	}
	switch t.ClientAuth {
	case ClientAuthOptional:
	case ClientAuthRequired:
		if t.ClientCAFile == "" {
			c.fail("tls.client_auth", "required needs tls.client_ca_file to verify client certificates against")
		}
	default:
		c.fail("tls.client_auth", "%q is not one of optional, required", t.ClientAuth)
	}
}
