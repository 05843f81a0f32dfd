package extauthz

import (
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// maxHeaderMapEntries bounds the header_map a CheckRequest may carry.
const maxHeaderMapEntries = 1024

// headers are a CheckRequest's request headers. Envoy lower-cases their
// names and joins a repeated header's values with ","; a name is still
// looked up case-insensitively, so a client that does neither cannot hide
// a second Authorization behind another spelling. Read-only.
type headers struct {
	m map[string]string
}

// requestHeaders reads headers, or header_map when Envoy was told to send
// raw headers (encode_raw_headers) and left headers empty.
func requestHeaders(hr *authv3.AttributeContext_HttpRequest) headers {
	if m := hr.GetHeaders(); len(m) > 0 || hr.GetHeaderMap() == nil {
		return headers{m: m}
	}
	hv := hr.GetHeaderMap().GetHeaders()
	m := make(map[string]string, min(len(hv), maxHeaderMapEntries))
	for i, h := range hv {
		if i == maxHeaderMapEntries {
			break
		}
		v := h.GetValue()
		if raw := h.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		k := strings.ToLower(h.GetKey())
		if prev, ok := m[k]; ok {
			v = prev + "," + v
		}
		m[k] = v
	}
	return headers{m: m}
}

// Get returns the value of the named header (any case), for header:<name>
// rate-limit keys.
func (h headers) Get(name string) string { return h.get(name) }

func (h headers) get(name string) string {
	if v, ok := h.m[name]; ok {
		return v
	}
	for k, v := range h.m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// all returns every value of the named header, one per spelling of its
// name; nil when absent.
func (h headers) all(lower string) []string {
	var out []string
	for k, v := range h.m {
		if len(k) == len(lower) && strings.EqualFold(k, lower) {
			out = append(out, v)
		}
	}
	return out
}
