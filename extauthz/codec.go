package extauthz

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// codec is the server's gRPC codec: gRPC's own proto codec, except that a
// CheckRequest's request headers are decoded here. protobuf-go decodes a
// map field by reflection, five allocations an entry, and the headers map
// was a third of everything a Check allocated. The result is exactly what
// proto.Unmarshal gives (FuzzCheckCodec holds it to that): the message
// without its header entries goes to proto.Unmarshal, the entries become
// one string and one map, and anything this decoder does not expect is
// handed whole to proto.Unmarshal.
type codec struct{ base encoding.CodecV2 }

func newCodec() codec { return codec{base: encoding.GetCodecV2(protoenc.Name)} }

// Name is the proto codec's, so clients' content-subtype still matches.
func (c codec) Name() string { return c.base.Name() }

// Marshal is gRPC's.
func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

// Unmarshal decodes a CheckRequest itself and any other message (health
// checks) with gRPC's codec.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*authv3.CheckRequest)
	if !ok {
		return c.base.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return unmarshalCheck(buf.ReadOnlyData(), req)
}

// headersPath is the field path CheckRequest.attributes.request.http.headers,
// read from the generated descriptors rather than written down.
var headersPath = func() []protowire.Number {
	var path []protowire.Number
	md := (&authv3.CheckRequest{}).ProtoReflect().Descriptor()
	for _, name := range []protoreflect.Name{"attributes", "request", "http", "headers"} {
		fd := md.Fields().ByName(name)
		path = append(path, fd.Number())
		md = fd.Message()
	}
	return path
}()

// maxPooledBytes: decoders that grew past this for one large request are
// not kept.
const maxPooledBytes = 64 << 10

var decoders = sync.Pool{New: func() any { return new(checkDecoder) }}

// checkDecoder holds one decode's scratch space, reused across calls.
type checkDecoder struct {
	rest    []byte      // the message without its header entries
	entries [][]byte    // each header entry's encoded key/value message
	kv      [][2][]byte // each entry's key and value
}

// unmarshalCheck is proto.Unmarshal(b, req) with the headers map built
// without reflection.
func unmarshalCheck(b []byte, req *authv3.CheckRequest) error {
	d := decoders.Get().(*checkDecoder)
	defer func() {
		if cap(d.rest) <= maxPooledBytes && cap(d.kv) <= maxHeaderMapEntries {
			clear(d.entries[:cap(d.entries)]) // drop references to b
			clear(d.kv[:cap(d.kv)])
			decoders.Put(d)
		}
	}()
	d.rest, d.entries, d.kv = d.rest[:0], d.entries[:0], d.kv[:0]
	if !d.strip(b, headersPath) || len(d.entries) == 0 {
		return proto.Unmarshal(b, req)
	}
	m, ok := d.headers()
	if !ok {
		return proto.Unmarshal(b, req)
	}
	if err := proto.Unmarshal(d.rest, req); err != nil {
		return proto.Unmarshal(b, req) // its own error, on the bytes sent
	}
	hr := req.GetAttributes().GetRequest().GetHttp()
	if hr == nil { // cannot happen: an entry implies its enclosing messages
		return proto.Unmarshal(b, req)
	}
	hr.Headers = m
	return nil
}

// strip appends b to d.rest without the fields at path, descending into
// each occurrence of path[0]; the fields at the end of the path are
// collected in d.entries instead. Repeated occurrences of a message field
// stay repeated, so proto.Unmarshal merges them as it would have. False
// when b is not well-formed wire data.
func (d *checkDecoder) strip(b []byte, path []protowire.Number) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		if num != path[0] || typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return false
			}
			d.rest = append(d.rest, b[:n+m]...)
			b = b[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return false
		}
		if len(path) == 1 {
			d.entries = append(d.entries, v)
		} else {
			d.rest = append(d.rest, b[:n]...)
			at := len(d.rest)
			if !d.strip(v, path[1:]) {
				return false
			}
			var size [binary.MaxVarintLen64]byte
			d.rest = slices.Insert(d.rest, at, protowire.AppendVarint(size[:0], uint64(len(d.rest)-at))...)
		}
		b = b[n+m:]
	}
	return true
}

// Field numbers of a map entry message (the protobuf encoding of maps).
const (
	entryKey   protowire.Number = 1
	entryValue protowire.Number = 2
)

// headers decodes d.entries into one map whose keys and values share one
// string. False for anything proto.Unmarshal should judge: a field other
// than a string key or value, or invalid UTF-8 (proto3 strings).
func (d *checkDecoder) headers() (map[string]string, bool) {
	total := 0
	for _, e := range d.entries {
		var kv [2][]byte
		for len(e) > 0 {
			num, typ, n := protowire.ConsumeTag(e)
			if n < 0 || typ != protowire.BytesType || (num != entryKey && num != entryValue) {
				return nil, false
			}
			v, m := protowire.ConsumeBytes(e[n:])
			if m < 0 || !utf8.Valid(v) {
				return nil, false
			}
			kv[num-entryKey] = v // a repeated field: the last one wins
			e = e[n+m:]
		}
		total += len(kv[0]) + len(kv[1])
		d.kv = append(d.kv, kv)
	}
	var sb strings.Builder
	sb.Grow(total)
	for _, kv := range d.kv {
		sb.Write(kv[0])
		sb.Write(kv[1])
	}
	all := sb.String()
	m := make(map[string]string, len(d.kv))
	at := 0
	for _, kv := range d.kv {
		k := all[at : at+len(kv[0])]
		at += len(kv[0])
		m[k] = all[at : at+len(kv[1])]
		at += len(kv[1])
	}
	return m, true
}
