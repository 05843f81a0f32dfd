package extauthz

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// envoyRequest is a CheckRequest shaped like Envoy's.
func envoyRequest(headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "192.0.2.10", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "GET", Path: "/orders?x=1", Host: "api.example", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: headers,
		}},
		ContextExtensions: map[string]string{"route": "orders"},
	}}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The codec's result is proto.Unmarshal's, for messages with and without
// headers, repeated occurrences that proto merges, duplicate keys, and
// input that proto refuses.
func TestUnmarshalCheckMatchesProto(t *testing.T) {
	full := marshal(t, envoyRequest(map[string]string{
		":authority": "api.example", ":method": "GET", ":path": "/orders?x=1",
		"authorization": "Bearer abc", "x-forwarded-proto": "https", "empty": "",
	}))
	second := marshal(t, envoyRequest(map[string]string{"authorization": "Bearer second", "x-more": "1"}))
	// One header entry, built by hand: key "k" twice, the last one wins.
	var entry []byte
	entry = protowire.AppendTag(entry, entryKey, protowire.BytesType)
	entry = protowire.AppendString(entry, "first")
	entry = protowire.AppendTag(entry, entryKey, protowire.BytesType)
	entry = protowire.AppendString(entry, "k")
	entry = protowire.AppendTag(entry, entryValue, protowire.BytesType)
	entry = protowire.AppendString(entry, "v")
	nest := func(inner []byte, path ...protowire.Number) []byte {
		for i := len(path) - 1; i >= 0; i-- {
			var b []byte
			b = protowire.AppendTag(b, path[i], protowire.BytesType)
			inner = protowire.AppendBytes(b, inner)
		}
		return inner
	}
	badUTF8 := nest(append(protowire.AppendTag(nil, entryValue, protowire.BytesType), 1, 0xff), headersPath...)
	unknownInEntry := nest(protowire.AppendVarint(protowire.AppendTag(nil, 3, protowire.VarintType), 7), headersPath...)
	tests := []struct {
		name string
		b    []byte
	}{
		{"envoy request", full},
		{"no headers", marshal(t, envoyRequest(nil))},
		{"empty message", nil},
		{"two attributes merged", append(append([]byte{}, full...), second...)},
		{"entry with repeated key", nest(entry, headersPath...)},
		{"empty entry", nest(nil, headersPath...)},
		{"invalid UTF-8 value", badUTF8},
		{"unknown field in entry", unknownInEntry},
		{"truncated", full[:len(full)-3]},
		{"wrong wire type on path", protowire.AppendVarint(protowire.AppendTag(nil, headersPath[0], protowire.VarintType), 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sameAsProto(t, tt.b)
		})
	}
}

func sameAsProto(t testing.TB, b []byte) {
	t.Helper()
	var want, got authv3.CheckRequest
	wantErr := proto.Unmarshal(b, &want)
	gotErr := unmarshalCheck(b, &got)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("proto: %v, codec: %v", wantErr, gotErr)
	}
	if wantErr == nil && !proto.Equal(&want, &got) {
		t.Fatalf("codec decoded\n%v\nproto decoded\n%v", &got, &want)
	}
}

// FuzzCheckCodec: on any bytes, the codec agrees with proto.Unmarshal.
func FuzzCheckCodec(f *testing.F) {
	f.Add(marshal(f, envoyRequest(map[string]string{"authorization": "Bearer abc", ":path": "/a"})))
	f.Add(marshal(f, envoyRequest(nil)))
	f.Fuzz(func(t *testing.T, b []byte) { sameAsProto(t, b) })
}

func BenchmarkUnmarshalCheck(b *testing.B) {
	msg := marshal(b, envoyRequest(map[string]string{
		":authority": "api.example", ":method": "GET", ":path": "/orders?x=1", "accept": "*/*",
		"authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9.c2lnbmF0dXJl",
		"user-agent":    "curl/8.5.0", "x-forwarded-proto": "https", "x-request-id": "0b6f2c1e-5f0c-4b8e-9c1a-1f2e3d4c5b6a",
		"x-envoy-expected-rq-timeout-ms": "15000",
	}))
	for _, tt := range []struct {
		name string
		fn   func([]byte, *authv3.CheckRequest) error
	}{
		{"proto", func(b []byte, m *authv3.CheckRequest) error { return proto.Unmarshal(b, m) }},
		{"codec", unmarshalCheck},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var m authv3.CheckRequest
				if err := tt.fn(msg, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
