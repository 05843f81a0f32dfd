package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/claim"
)

// ClaimValues are the values a route's claim requirement accepts, each typed
// as YAML wrote it: true is the JSON boolean, "true" the string, 5 the
// number. A single value may stand for a one-element list.
type ClaimValues []claim.Value

var claimValuesType = reflect.TypeOf(ClaimValues(nil))

// maxClaimName bounds a configured claim name; real ones are short.
const maxClaimName = 256

// decodeClaimValues keeps each YAML scalar's type, which the generic
// decoder (strings only) would lose.
func (d *decoder) decodeClaimValues(n *yaml.Node, v reflect.Value, path string) {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
		if len(items) == 0 {
			d.fail(path, "list at least one value; an empty list could never match")
			return
		}
	}
	out := make(ClaimValues, 0, len(items))
	for i, it := range items {
		p := path
		if n.Kind == yaml.SequenceNode {
			p = fmt.Sprintf("%s[%d]", path, i)
		}
		for it.Kind == yaml.AliasNode {
			it = it.Alias
		}
		if it.Kind != yaml.ScalarNode {
			d.fail(p, "expected a string, number or boolean, got %s", describe(it))
			continue
		}
		switch it.ShortTag() {
		case "!!str":
			s, ok := d.scalar(it, p)
			if ok {
				out = append(out, claim.StringValue(s))
			}
		case "!!bool":
			b, err := strconv.ParseBool(it.Value)
			if err != nil {
				d.fail(p, "expected true or false, got %q", it.Value)
				continue
			}
			out = append(out, claim.BoolValue(b))
		case "!!int", "!!float":
			num, err := claim.NumberValue(strings.ReplaceAll(it.Value, "_", ""))
			if err != nil {
				d.fail(p, "%v", err)
				continue
			}
			out = append(out, num)
		case "!!null":
			d.fail(p, "null never matches a claim; list strings, numbers or booleans")
		default:
			d.fail(p, "unsupported value %q (tag %s); list strings, numbers or booleans", it.Value, it.ShortTag())
		}
	}
	v.Set(reflect.ValueOf(out))
}

// validClaimName reports whether name can name a claim: non-empty, bounded,
// no control characters.
func validClaimName(name string) bool {
	return name != "" && len(name) <= maxClaimName && !claim.HasControl(name)
}

func checkScopeClaims(c *checker, p string, names []string) {
	seen := map[string]bool{}
	for i, n := range names {
		switch {
		case !validClaimName(n):
			c.fail(fmt.Sprintf("%s[%d]", p, i), "%q is not a claim name (non-empty, at most %d bytes, no control characters)", n, maxClaimName)
		case seen[n]:
			c.fail(fmt.Sprintf("%s[%d]", p, i), "%q is listed twice", n)
		}
		seen[n] = true
	}
}

func checkRouteClaims(c *checker, p string, r Route) {
	switch {
	case len(r.Claims) > 0 && r.Auth == "none":
		c.fail(p+".claims", "auth: none ignores tokens, so claims can never be checked; use auth: required")
	case len(r.Claims) > 0 && r.Auth == "optional":
		c.warn(p+".claims", "auth: optional lets requests without a token through; claims are checked only when a token is sent")
	}
	for _, name := range slices.Sorted(maps.Keys(r.Claims)) {
		cp := p + ".claims." + name
		if !validClaimName(name) {
			c.fail(cp, "%q is not a claim name (non-empty, at most %d bytes, no control characters)", name, maxClaimName)
		}
		for i, v := range r.Claims[name] {
			if v.Kind == claim.String && claim.HasControl(v.Text) {
				c.fail(fmt.Sprintf("%s[%d]", cp, i), "value contains a control character; no token can hold it")
			}
		}
	}
}

// reservedHeaders may not carry a claim: they frame the request, carry
// credentials, or are set by Portcullis itself.
var reservedHeaders = []string{
	"authorization", "proxy-authorization", "cookie", "host", "connection", "keep-alive",
	"te", "trailer", "transfer-encoding", "upgrade", "content-length", "content-type",
	"content-encoding", "expect", "forwarded", "x-forwarded-for", "x-forwarded-host",
	"x-forwarded-proto", "x-real-ip", "x-request-id", "x-auth-client-cert-subject",
}

// headerFold compares header names as CGI-style servers read them:
// case-insensitive, with '_' and '.' as '-'.
func headerFold(name string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
}

func checkClaimHeaders(c *checker, ih IdentityHeaders, security map[string]string) {
	taken := map[string]string{}
	for name := range security {
		taken[headerFold(name)] = "security_headers." + name
	}
	for k, v := range map[string]string{"subject": ih.Subject, "client_id": ih.ClientID, "scopes": ih.Scopes, "issuer": ih.Issuer, "token_id": ih.TokenID} {
		taken[headerFold(v)] = "identity_headers." + k
	}
	for _, name := range slices.Sorted(maps.Keys(ih.Claims)) {
		p := "identity_headers.claims." + name
		folded := headerFold(name)
		switch {
		case !validToken(name):
			c.fail(p, "%q is not a valid header name", name)
		case slices.Contains(reservedHeaders, folded):
			c.fail(p, "%s is reserved (credentials, framing or set by Portcullis); choose another name such as X-Auth-%s", name, name)
		case taken[folded] != "":
			c.fail(p, "%s is also %s (header names compare case-insensitively, with _ and . read as -)", name, taken[folded])
		}
		taken[folded] = p
		if cn := ih.Claims[name]; !validClaimName(cn) {
			c.fail(p, "claim name %q is not valid (non-empty, at most %d bytes, no control characters)", cn, maxClaimName)
		}
	}
}

// ReferencedClaims lists, sorted and without repeats, every claim name that
// routes or identity headers use: the only claims a verified token keeps,
// which bounds what the token cache holds per entry.
func (c *Config) ReferencedClaims() []string {
	var names []string
	for _, r := range c.Routes {
		for n := range r.Claims {
			names = append(names, n)
		}
	}
	for _, n := range c.IdentityHeaders.Claims {
		names = append(names, n)
	}
	slices.Sort(names)
	return slices.Compact(names)
}
