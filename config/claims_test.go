package config

import (
	"strings"
	"testing"

	"github.com/portcullis/portcullis/claim"
)

func TestClaimsConfig(t *testing.T) {
	t.Parallel()
	cfg, _, err := Parse([]byte(minimal+`
trusted_issuers:
  - {issuer: https://idp.example, jwks_url: https://idp.example/jwks}
  - {issuer: https://kc.example, jwks_url: https://kc.example/jwks, scope_claims: [permissions]}
routes:
  - path: /admin
    claims:
      groups: [platform-admins, "true"]
      email_verified: true
      level: [5, 2.5]
      realm_access.roles: admin
      "https://x.example/roles": ["${ROLE}"]
identity_headers:
  claims: {X-Auth-Email: email, X-Auth-Groups: groups}
`), t.TempDir(), env(map[string]string{"ROLE": "auditor"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.TrustedIssuers[0].ScopeClaims; strings.Join(got, ",") != "scope,scp" {
		t.Errorf("default scope_claims %q, want [scope scp]", got)
	}
	if got := cfg.TrustedIssuers[1].ScopeClaims; strings.Join(got, ",") != "permissions" {
		t.Errorf("scope_claims %q, want [permissions]", got)
	}
	c := cfg.Routes[0].Claims
	want := map[string][]claim.Value{
		"groups":                  {claim.StringValue("platform-admins"), claim.StringValue("true")},
		"email_verified":          {claim.BoolValue(true)},
		"level":                   {{Kind: claim.Number, Text: "5", Num: 5}, {Kind: claim.Number, Text: "2.5", Num: 2.5}},
		"realm_access.roles":      {claim.StringValue("admin")},
		"https://x.example/roles": {claim.StringValue("auditor")},
	}
	for name, vals := range want {
		got := c[name]
		if len(got) != len(vals) {
			t.Errorf("claims.%s = %v, want %v", name, got, vals)
			continue
		}
		for i := range vals {
			if got[i] != vals[i] {
				t.Errorf("claims.%s[%d] = %+v, want %+v", name, i, got[i], vals[i])
			}
		}
	}
	if got := strings.Join(cfg.ReferencedClaims(), ","); got != "email,email_verified,groups,https://x.example/roles,level,realm_access.roles" {
		t.Errorf("ReferencedClaims = %s", got)
	}
}

func TestClaimsConfigErrorsNameTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"null value", "routes: [{path: /, claims: {groups: [null]}}]", []string{"routes[0].claims.groups[0]: null never matches"}},
		{"empty list", "routes: [{path: /, claims: {groups: []}}]", []string{"routes[0].claims.groups: list at least one value"}},
		{"mapping value", "routes: [{path: /, claims: {groups: [{a: b}]}}]", []string{"routes[0].claims.groups[0]: expected a string, number or boolean"}},
		{"claims on auth none", "routes: [{path: /, auth: none, claims: {groups: [a]}}]", []string{"routes[0].claims: auth: none ignores tokens"}},
		{"claims not a mapping", "routes: [{path: /, claims: [groups]}]", []string{"routes[0].claims: expected a mapping"}},
		{"scope_claims empty name", "trusted_issuers: [{issuer: https://i.example, jwks_url: https://i.example/j, scope_claims: [scope, '']}]", []string{"trusted_issuers[0].scope_claims[1]"}},
		{"scope_claims repeated", "trusted_issuers: [{issuer: https://i.example, jwks_url: https://i.example/j, scope_claims: [scp, scp]}]", []string{"trusted_issuers[0].scope_claims[1]: \"scp\" is listed twice"}},
		{"bad header name", "identity_headers: {claims: {'X Email': email}}", []string{"identity_headers.claims.X Email: \"X Email\" is not a valid header name"}},
		{"clash with subject", "identity_headers: {claims: {x_auth_subject: email}}", []string{"identity_headers.claims.x_auth_subject: x_auth_subject is also identity_headers.subject"}},
		{"clash between claim headers", "identity_headers: {claims: {X-Email: email, x.email: mail}}", []string{"identity_headers.claims.x.email: x.email is also identity_headers.claims.X-Email"}},
		{"reserved header", "identity_headers: {claims: {Authorization: email}}", []string{"identity_headers.claims.Authorization: Authorization is reserved"}},
		{"clash with a security header", "identity_headers: {claims: {x-frame-options: email}}", []string{"identity_headers.claims.x-frame-options: x-frame-options is also security_headers.X-Frame-Options"}},
		{"empty claim name", "identity_headers: {claims: {X-Email: ''}}", []string{"identity_headers.claims.X-Email: claim name \"\" is not valid"}},
		{"every problem at once", "routes: [{path: /, claims: {a: [null], b: []}}]\nidentity_headers: {claims: {Host: x}}", []string{"routes[0].claims.a[0]", "routes[0].claims.b", "identity_headers.claims.Host"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(minimal+tc.yaml+"\n"), t.TempDir(), env(nil))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
