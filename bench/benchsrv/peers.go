package main

import (
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sort"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// writeProtoset writes the FileDescriptorSet of Envoy's ext_authz API and
// everything it imports, from the generated Go types (no .proto files), so
// ghz can call Check without server reflection.
func writeProtoset(path string) {
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		imports := fd.Imports()
		for i := 0; i < imports.Len(); i++ {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(fd))
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	b, err := proto.Marshal(set)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		log.Fatal(err)
	}
}

// checkRequestJSON prints a CheckRequest as Envoy sends it for GET path
// with the bearer token, in ghz's -d JSON form.
func checkRequestJSON(path, token string) {
	req := map[string]any{"attributes": map[string]any{
		"source": map[string]any{"address": map[string]any{"socketAddress": map[string]any{"address": "192.0.2.10", "portValue": 40000}}},
		"request": map[string]any{"http": map[string]any{
			"method": "GET", "path": path, "host": "bench.local", "scheme": "http", "protocol": "HTTP/1.1",
			"headers": map[string]string{":authority": "bench.local", ":method": "GET", ":path": path, "authorization": "Bearer " + token, "accept": "*/*"},
		}},
	}}
	_ = json.NewEncoder(os.Stdout).Encode(req)
}

// ghzSummary reads ghz's JSON report on stdin and prints
// "rps p50_ms p99_ms non_ok", the columns run.sh records; calls cut off
// by the end of the run are not failures.
func ghzSummary(in io.Reader) {
	var r struct {
		RPS                 float64 `json:"rps"`
		LatencyDistribution []struct {
			Percentage int     `json:"percentage"`
			Latency    float64 `json:"latency"` // nanoseconds
		} `json:"latencyDistribution"`
		ErrorDistribution map[string]int `json:"errorDistribution"`
	}
	if err := json.NewDecoder(in).Decode(&r); err != nil {
		log.Fatalf("ghz report: %v", err)
	}
	p := map[int]float64{}
	for _, l := range r.LatencyDistribution {
		p[l.Percentage] = l.Latency / 1e6
	}
	nonOK := 0
	for msg, n := range r.ErrorDistribution {
		// Calls still in flight when ghz's -z runs out are cut off
		// (canceled, or the transport closes under them): not failures.
		if !strings.Contains(msg, "transport is closing") && !strings.Contains(msg, "context canceled") {
			nonOK += n
		}
	}
	fmt.Printf("%.0f %.3f %.3f %d\n", r.RPS, p[50], p[99], nonOK)
}

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
