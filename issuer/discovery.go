package issuer

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/config"
)

// jwksMaxAge lets resource servers cache our keys for five minutes; key
// rotation adds the new key before it signs, so this is safe.
const jwksMaxAge = "public, max-age=300"

// JWKSHandler serves GET /.well-known/jwks.json: the public half of every
// asymmetric key, never an HS secret.
func (iss *Issuer) JWKSHandler() http.Handler {
	set := jwkSet{Keys: []jwk{}}
	for _, k := range iss.keys {
		if j, ok := publicJWK(k); ok {
			set.Keys = append(set.Keys, j)
		}
	}
	body, _ := json.Marshal(set)
	return staticJSON(body, jwksMaxAge, "application/jwk-set+json")
}

// MetadataHandler serves RFC 8414 authorization server metadata.
func (iss *Issuer) MetadataHandler() http.Handler {
	base := strings.TrimSuffix(iss.url, "/")
	var scopes []string
	for _, c := range iss.clients.clients {
		scopes = append(scopes, c.scopes...)
	}
	slices.Sort(scopes)
	algs := []string{}
	for _, k := range iss.keys {
		if !slices.Contains(algs, k.Alg) {
			algs = append(algs, k.Alg)
		}
	}
	authMethods := []string{"client_secret_basic", "client_secret_post"}
	if iss.clients.privateKeyJWT() {
		authMethods = append(authMethods, "private_key_jwt")
	}
	md := map[string]any{
		"issuer":                                        iss.url,
		"token_endpoint":                                base + "/token",
		"jwks_uri":                                      base + "/.well-known/jwks.json",
		"revocation_endpoint":                           base + "/revoke",
		"introspection_endpoint":                        base + "/introspect",
		"grant_types_supported":                         []string{"client_credentials"},
		"response_types_supported":                      []string{},
		"token_endpoint_auth_methods_supported":         authMethods,
		"revocation_endpoint_auth_methods_supported":    authMethods,
		"introspection_endpoint_auth_methods_supported": authMethods,
		"scopes_supported":                              slices.Compact(scopes),
		"access_token_signing_alg_values_supported":     algs,
	}
	if iss.clients.privateKeyJWT() {
		// RFC 8414 §2: the algorithms private_key_jwt assertions may use.
		for _, p := range []string{"token", "revocation", "introspection"} {
			md[p+"_endpoint_auth_signing_alg_values_supported"] = config.AssertionAlgorithms
		}
	}
	body, _ := json.Marshal(md)
	return staticJSON(body, "public, max-age=3600", "application/json")
}

func staticJSON(body []byte, cacheControl, contentType string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeOAuthError(w, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", desc: "use GET"})
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", cacheControl)
		_, _ = w.Write(body)
	})
}
