package policy

import (
	"testing"

	"github.com/portcullis/portcullis/claim"
)

// claimsCaller holds ready claims, as a cached principal does.
type claimsCaller map[string]claim.Claim

func (c claimsCaller) HasScope(string) bool   { return true }
func (c claimsCaller) InAudience(string) bool { return true }
func (c claimsCaller) Claim(name string) (claim.Claim, bool) {
	v, ok := c[name]
	return v, ok
}

// BenchmarkDecideClaims: a route requiring two claims costs lookups and
// comparisons, no allocation.
func BenchmarkDecideClaims(b *testing.B) {
	r := claimRoute(b, `{realm_access.roles: [admin], email_verified: true}`)
	var c Caller = claimsCaller{
		"realm_access.roles": {Values: []claim.Value{claim.StringValue("user"), claim.StringValue("admin")}, Array: true},
		"email_verified":     {Values: []claim.Value{claim.BoolValue(true)}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if got, _ := Decide(r, c); got != Allow {
			b.Fatal(got)
		}
	}
}
