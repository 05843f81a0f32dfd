package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const clientAuthBase = `
environment: development
issuer:
  url: https://auth.example.com
  clients:
`

const kubeTrusted = `
trusted_issuers:
  - {issuer: https://kubernetes.default.svc.cluster.local, jwks_url: https://kubernetes.default.svc/openid/v1/jwks,
     audience: [portcullis], ca_file: ca.crt, bearer_token_file: token}
`

const goodEC = `{kty: EC, kid: k1, crv: P-256, x: f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU, y: x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0}`

func TestClientAuthValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		clients string
		extra   string
		want    []string // substrings of the error; none: valid
	}{
		{name: "inline jwks", clients: `    - {id: r, jwks: {keys: [` + goodEC + `]}}`},
		{name: "jwks_url", clients: `    - {id: r, jwks_url: https://r.example/jwks.json}`},
		{name: "federated", clients: `    - {id: sa, federated: {issuer: https://kubernetes.default.svc.cluster.local, subject: "system:serviceaccount:a:b"}}`, extra: kubeTrusted},
		{name: "no credential", clients: `    - {id: r, scopes: [x]}`, want: []string{"issuer.clients[0]: no credential"}},
		{name: "two credentials", clients: `    - {id: r, secret_hash: "$2a$04$abcdefghijklmnopqrstuu5Gm0W0Xxs5MJqgHc7BOhYP3xQmgkzSO", jwks_url: https://r.example/jwks}`,
			want: []string{"issuer.clients[0]: set exactly one", "secret_hash and jwks_url"}},
		{name: "jwks and jwks_url", clients: `    - {id: r, jwks: {keys: [` + goodEC + `]}, jwks_url: https://r.example/jwks}`, want: []string{"jwks and jwks_url"}},
		{name: "federated issuer not trusted", clients: `    - {id: sa, federated: {issuer: https://other.example, subject: s}}`,
			want: []string{`issuer.clients[0].federated.issuer: "https://other.example" is not a trusted_issuers entry`}},
		{name: "federated without subject", clients: `    - {id: sa, federated: {issuer: https://kubernetes.default.svc.cluster.local}}`, extra: kubeTrusted,
			want: []string{"issuer.clients[0].federated.subject: required"}},
		{name: "two clients for one subject", clients: `    - {id: a, federated: {issuer: https://kubernetes.default.svc.cluster.local, subject: s}}
    - {id: b, federated: {issuer: https://kubernetes.default.svc.cluster.local, subject: s}}`, extra: kubeTrusted,
			want: []string{"issuer.clients[1].federated: issuer"}},
		{name: "private key inline", clients: `    - {id: r, jwks: {keys: [{kty: EC, kid: k1, crv: P-256, x: a, y: b, d: secret}]}}`,
			want: []string{"issuer.clients[0].jwks.keys[0].d: this is a private key"}},
		{name: "symmetric key", clients: `    - {id: r, jwks: {keys: [{kty: oct, kid: k1, alg: HS256}]}}`,
			want: []string{"issuer.clients[0].jwks.keys[0].alg", "issuer.clients[0].jwks.keys[0].kty"}},
		{name: "key without kid, empty set", clients: `    - {id: r, jwks: {keys: [{kty: RSA, n: x, e: AQAB}]}}
    - {id: s, jwks: {keys: []}}`,
			want: []string{"issuer.clients[0].jwks.keys[0].kid: required", "issuer.clients[1].jwks.keys: required"}},
		{name: "unknown jwk member", clients: `    - {id: r, jwks: {keys: [{kty: EC, kid: k1, crv: P-256, x: a, y: b, p: q}]}}`,
			want: []string{"issuer.clients[0].jwks.keys[0].p: unknown key"}},
		{name: "jwks_url not a URL", clients: `    - {id: r, jwks_url: "not a url"}`, want: []string{"issuer.clients[0].jwks_url"}},
		{name: "control character in id", clients: `    - {id: "r\u0085", jwks_url: https://r.example/jwks}`, want: []string{"issuer.clients[0].id"}},
		{name: "bearer token over http", clients: `    - {id: r, jwks_url: https://r.example/jwks}`,
			extra: "trusted_issuers: [{issuer: https://k.example, jwks_url: http://k.example/jwks, bearer_token_file: t}]",
			want:  []string{"trusted_issuers[0].bearer_token_file: needs an https jwks_url"}},
		{name: "missing ca_file", clients: `    - {id: r, jwks_url: https://r.example/jwks}`,
			extra: "trusted_issuers: [{issuer: https://k.example, jwks_url: https://k.example/jwks, ca_file: /nonexistent/ca.crt}]",
			want:  []string{"trusted_issuers[0].ca_file: cannot read /nonexistent/ca.crt"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := Parse([]byte(clientAuthBase+c.clients+"\n"+c.extra), dir, env(nil))
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want errors %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestTrustedIssuerFilesResolveAgainstConfigDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := Parse([]byte(clientAuthBase+`    - {id: r, jwks_url: https://r.example/jwks}`+"\n"+kubeTrusted), dir, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.TrustedIssuers[0].CAFile; got != filepath.Join(dir, "ca.crt") {
		t.Errorf("ca_file %s, want it under the config's directory", got)
	}
	if got := cfg.TrustedIssuers[0].BearerTokenFile; got != filepath.Join(dir, "token") {
		t.Errorf("bearer_token_file %s, want it under the config's directory", got)
	}
}
