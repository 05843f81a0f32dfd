package policy

import (
	"encoding/json"
	"testing"

	"github.com/portcullis/portcullis/claim"
	"github.com/portcullis/portcullis/config"
)

// tokenCaller is a caller whose claims come from a JSON payload, looked up
// as the issuer does.
type tokenCaller struct {
	scopes  []string
	payload map[string]json.RawMessage
}

func newTokenCaller(t testing.TB, payload string, scopes ...string) *tokenCaller {
	t.Helper()
	c := &tokenCaller{scopes: scopes}
	if err := json.Unmarshal([]byte(payload), &c.payload); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *tokenCaller) HasScope(s string) bool {
	for _, x := range c.scopes {
		if x == s {
			return true
		}
	}
	return false
}
func (c *tokenCaller) InAudience(string) bool { return true }
func (c *tokenCaller) Claim(name string) (claim.Claim, bool) {
	raw, ok := claim.Lookup(c.payload, name)
	if !ok {
		return claim.Claim{}, false
	}
	v, err := claim.Decode(raw)
	return v, err == nil
}

func claimRoute(t testing.TB, yamlClaims string, scopes ...string) *Route {
	t.Helper()
	cfg, _, err := config.Parse([]byte(`
environment: development
issuer: {url: "https://auth.test"}
routes:
  - path: /
    scopes: [`+joinComma(scopes)+`]
    claims: `+yamlClaims+`
`), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tbl, _, err := Compile(cfg.Routes)
	if err != nil {
		t.Fatal(err)
	}
	return tbl.Routes()[0]
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

func TestDecideClaims(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		claims  string // YAML
		payload string // the token's claims
		scopes  []string
		want    Outcome
	}{
		{"array claim, one element matches", `{groups: [platform-admins]}`, `{"groups":["dev","platform-admins"]}`, nil, Allow},
		{"array claim, no element matches", `{groups: [platform-admins]}`, `{"groups":["dev"]}`, nil, Denied},
		{"string claim, any of the values", `{tier: [gold, silver]}`, `{"tier":"silver"}`, nil, Allow},
		{"absent claim", `{groups: [platform-admins]}`, `{}`, nil, Denied},
		{"null claim", `{groups: [platform-admins]}`, `{"groups":null}`, nil, Denied},
		{"object claim", `{groups: [platform-admins]}`, `{"groups":{"platform-admins":true}}`, nil, Denied},
		{"YAML true matches JSON true", `{email_verified: true}`, `{"email_verified":true}`, nil, Allow},
		{"YAML true does not match the string", `{email_verified: true}`, `{"email_verified":"true"}`, nil, Denied},
		{"YAML \"true\" matches only the string", `{email_verified: ["true"]}`, `{"email_verified":true}`, nil, Denied},
		{"YAML 5 matches JSON 5", `{level: 5}`, `{"level":5}`, nil, Allow},
		{"YAML 5 matches JSON 5.0", `{level: 5}`, `{"level":5.0}`, nil, Allow},
		{"YAML 5 does not match the string", `{level: 5}`, `{"level":"5"}`, nil, Denied},
		{"YAML '5' matches the string only", `{level: ["5"]}`, `{"level":5}`, nil, Denied},
		{"Keycloak realm_access.roles", `{realm_access.roles: [admin]}`, `{"realm_access":{"roles":["user","admin"]}}`, nil, Allow},
		{"dotted path, nested not an object", `{realm_access.roles: [admin]}`, `{"realm_access":"admin"}`, nil, Denied},
		{"whole name before the dotted path", `{"https://x.example/roles": [r]}`, `{"https://x.example/roles":["r"]}`, nil, Allow},
		{"whole name wins over nesting", `{a.b: [whole]}`, `{"a.b":"whole","a":{"b":"nested"}}`, nil, Allow},
		{"nesting used only when the whole name is absent", `{a.b: [nested]}`, `{"a.b":"whole","a":{"b":"nested"}}`, nil, Denied},
		{"every listed claim must hold", `{groups: [a], tier: [gold]}`, `{"groups":["a"],"tier":"silver"}`, nil, Denied},
		{"every listed claim holds", `{groups: [a], tier: [gold]}`, `{"groups":["a"],"tier":"gold"}`, nil, Allow},
		{"scope checked before claims", `{groups: [a]}`, `{}`, []string{"need"}, Forbidden},
		{"case matters", `{groups: [Admins]}`, `{"groups":["admins"]}`, nil, Denied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := claimRoute(t, tc.claims, tc.scopes...)
			got, _ := Decide(r, newTokenCaller(t, tc.payload))
			if got != tc.want {
				t.Errorf("Decide = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("optional route, anonymous", func(t *testing.T) {
		r := claimRoute(t, `{groups: [a]}`)
		r.Auth = AuthOptional
		if got, _ := Decide(r, nil); got != Allow {
			t.Errorf("Decide = %v, want Allow", got)
		}
	})
}
