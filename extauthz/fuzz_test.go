package extauthz

import (
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/portcullis/portcullis/policy"
)

// FuzzTarget: whatever attributes.request.http holds, the request line is
// refused or it yields a target that passed the path firewall with the
// query Envoy sent; never a panic.
func FuzzTarget(f *testing.F) {
	f.Add("GET", "/orders/1?x=1", "", "")
	f.Add("GET", "/public/../admin", "", "")
	f.Add("get", "/orders", "", "")
	f.Add("GET", "/public", "access_token=x", "")
	f.Add("GET", "/public?a", "b", "")
	f.Add("GET", "/public", "", "frag")
	f.Add("POST", "/a%2fb", "", "")
	f.Add("GET", "", "", "")
	f.Fuzz(func(t *testing.T, method, path, query, fragment string) {
		in, err := target(&authv3.AttributeContext_HttpRequest{Method: method, Path: path, Query: query, Fragment: fragment})
		if err != nil {
			return
		}
		if fragment != "" {
			t.Fatalf("accepted a fragment %q", fragment)
		}
		if p, err := policy.CleanPath(in.Path.Raw); err != nil || p.Match != in.Path.Match {
			t.Fatalf("accepted path %+v that the firewall refuses: %v", in.Path, err)
		}
		if in.Method != method {
			t.Fatalf("method %q became %q", method, in.Method)
		}
	})
}
