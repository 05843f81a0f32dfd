// Package policy decides what a request may do. It is pure: routes are
// compiled once into an immutable table, and Decide looks only at the route
// and the caller's scopes and claims. No I/O, no JWT, no Redis.
package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/claim"
	"github.com/portcullis/portcullis/config"
)

// Auth is a route's authentication mode.
type Auth uint8

// Authentication modes.
const (
	// AuthRequired needs a valid token (and the route's scopes).
	AuthRequired Auth = iota
	// AuthOptional verifies a token when one is sent; none is anonymous.
	AuthOptional
	// AuthNone ignores tokens entirely; no identity is forwarded.
	AuthNone
)

// Route is one compiled route. Routes are immutable.
type Route struct {
	// Name labels metrics and logs: the configured path, a closed set.
	Name     string
	Index    int
	prefix   string // "" for the root route
	methods  []string
	host     string
	Auth     Auth
	Scopes   []string
	Audience []string
	// Claims are the route's claim requirements, sorted by name.
	Claims []ClaimRequirement
	// Limit is the route's own rate limit; nil means the default applies.
	Limit *config.Limit
}

// Table is the compiled, immutable routing table. Safe for concurrent use.
type Table struct {
	routes []*Route
}

// Compile builds the table and returns warnings about routes that can never
// match because an earlier route catches all their requests.
func Compile(routes []config.Route) (*Table, []string, error) {
	t := &Table{}
	var warnings []string
	var errs []string
	for i, r := range routes {
		p, err := CleanPath(r.Path)
		if err != nil || p.Match != r.Path {
			errs = append(errs, fmt.Sprintf("routes[%d].path: %q is not a plain path (no //, dot segments, encodings or ;)", i, r.Path))
			continue
		}
		host, herrs := compileHost(i, r)
		errs = append(errs, herrs...)
		errs = append(errs, checkMethods(i, r)...)
		cr := &Route{
			Name: r.Path, Index: i, prefix: strings.TrimRight(r.Path, "/"), methods: r.Methods,
			host: host, Scopes: r.Scopes, Audience: r.Audience, Limit: r.RateLimit,
		}
		for _, name := range slices.Sorted(maps.Keys(r.Claims)) {
			cr.Claims = append(cr.Claims, ClaimRequirement{Name: name, Values: r.Claims[name]})
		}
		switch r.Auth {
		case "none":
			cr.Auth = AuthNone
		case "optional":
			cr.Auth = AuthOptional
		}
		for j, earlier := range t.routes {
			if earlier.shadows(cr) {
				warnings = append(warnings, fmt.Sprintf("routes[%d] (%s) is shadowed by routes[%d] (%s) and never matches", i, r.Path, j, earlier.Name))
				break
			}
		}
		t.routes = append(t.routes, cr)
	}
	if len(errs) > 0 {
		return nil, warnings, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return t, warnings, nil
}

// shadows reports whether every request r matches also matches a.
func (a *Route) shadows(r *Route) bool {
	if !segmentPrefix(r.prefix, a.prefix) {
		return false
	}
	if a.host != "" && a.host != r.host {
		return false
	}
	if len(a.methods) == 0 {
		return true
	}
	if len(r.methods) == 0 {
		return false
	}
	for _, m := range r.methods {
		if !slices.Contains(a.methods, m) {
			return false
		}
	}
	return true
}

// segmentPrefix reports whether prefix is a whole-segment prefix of path:
// /public matches /public and /public/x, never /publicity.
func segmentPrefix(path, prefix string) bool {
	if prefix == "" {
		return true
	}
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// Match returns the first route matching the decoded path, method and host,
// or nil. The host is read as ParseHost does (case, a port and one trailing
// dot ignored; an invalid host matches no host-restricted route); the
// method and path are case-sensitive, and the query is never looked at.
func (t *Table) Match(method, host, path string) *Route {
	// The host is read once, and only when a host-restricted route is
	// reached; r.host is canonical (lower case), so a case-insensitive
	// comparison needs no lower-cased copy. A caller may pass a host
	// ParseTarget already made canonical; reading it again costs a scan.
	canon, hostRead, hostOK := "", false, false
	for _, r := range t.routes {
		if !segmentPrefix(path, r.prefix) {
			continue
		}
		if len(r.methods) > 0 && !slices.Contains(r.methods, method) {
			continue
		}
		if r.host != "" {
			if !hostRead {
				var err error
				canon, err = hostName(host)
				hostRead, hostOK = true, err == nil
			}
			if !hostOK || !strings.EqualFold(canon, r.host) {
				continue
			}
		}
		return r
	}
	return nil
}

// Routes returns the compiled routes in order.
func (t *Table) Routes() []*Route { return t.routes }

// Outcome is a policy decision.
type Outcome uint8

// Outcomes.
const (
	Allow Outcome = iota
	// Unauthenticated: 401, a token is needed.
	Unauthenticated
	// Forbidden: 403 insufficient_scope, the token lacks a scope or
	// audience.
	Forbidden
	// Denied: 403 access_denied, a claim requirement is not met.
	Denied
)

// ClaimRequirement demands that the claim Name hold one of Values.
type ClaimRequirement struct {
	Name   string
	Values []claim.Value
}

// Caller is what policy needs to know about a verified token.
type Caller interface {
	HasScope(string) bool
	InAudience(string) bool
	// Claim returns the named claim (looked up whole, then as a dotted
	// path) and whether the token has it.
	Claim(name string) (claim.Claim, bool)
}

// Decide applies the route to the caller (nil when no valid token was
// presented) and returns the outcome and, for Forbidden, the missing scope.
// Scopes are checked before claims, so a token lacking both learns about
// the scope it can ask for. An anonymous caller on an optional route is
// allowed without claims, as without scopes.
func Decide(r *Route, c Caller) (Outcome, string) {
	if r.Auth == AuthNone {
		return Allow, ""
	}
	if c == nil {
		if r.Auth == AuthOptional {
			return Allow, ""
		}
		return Unauthenticated, ""
	}
	for _, s := range r.Scopes {
		if !c.HasScope(s) {
			return Forbidden, strings.Join(r.Scopes, " ")
		}
	}
	if len(r.Audience) > 0 && !slices.ContainsFunc(r.Audience, c.InAudience) {
		return Forbidden, ""
	}
	for i := range r.Claims {
		req := &r.Claims[i]
		if got, ok := c.Claim(req.Name); !ok || !got.Matches(req.Values) {
			return Denied, ""
		}
	}
	return Allow, ""
}
