package main

import (
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"sort"
)

// serveOIDC is a minimal OpenID provider for peers that find their keys by
// discovery (oauth2-proxy's --extra-jwt-issuers): the discovery document
// and a JWKS with the benchmark key's public half, nothing else.
func serveOIDC(addr, iss string, key *ecdsa.PrivateKey) {
	enc := base64.RawURLEncoding
	pad := func(b []byte) string { // fixed-width P-256 coordinates (RFC 7518 §6.2.1.2)
		out := make([]byte, 32)
		copy(out[32-len(b):], b)
		return enc.EncodeToString(out)
	}
	ecdh, err := key.PublicKey.ECDH()
	if err != nil {
		log.Fatal(err)
	}
	raw := ecdh.Bytes() // 0x04 || X || Y
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig", "x": pad(raw[1:33]), "y": pad(raw[33:65]),
	}}})
	disc, _ := json.Marshal(map[string]any{
		"issuer": iss, "jwks_uri": iss + "/jwks", "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token",
		"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
		"id_token_signing_alg_values_supported": []string{"ES256"},
	})
	docs := map[string][]byte{"/.well-known/openid-configuration": disc, "/jwks": jwks}
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	serve(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := docs[r.URL.Path]
		if !ok {
			http.Error(w, fmt.Sprintf("only %v", keys), http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
}
