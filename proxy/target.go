package proxy

import (
	"errors"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/policy"
)

// requestTarget reads what a proxied request asks for from its request line
// exactly as sent (r.URL is already decoded and, for absolute-form, already
// split by net/http) and validates it with parseTarget, as every front door
// does. net/http has taken r.Host from an absolute-form target (RFC 9112
// §3.2.2), and the upstream is sent that same host.
func requestTarget(r *http.Request) (Input, error) {
	authority, rawPath, rawQuery, err := policy.SplitTarget(r.RequestURI)
	if err != nil {
		return Input{}, err
	}
	if authority != "" && authority != r.Host {
		return Input{}, policy.ErrHost // not the request net/http parsed
	}
	return parseTarget(r.Method, r.Host, rawPath, rawQuery)
}

// forwardHost is the Host sent upstream: the canonical host the routes were
// matched on (see policy.ParseHost), with the port the client named, so an
// upstream that routes by host sees the host that was decided on, not
// "Secure.Example.COM." spelled another way. The host as sent is returned
// (no allocation) when it is already canonical.
func forwardHost(sent, canon string) string {
	port := ""
	if i := strings.LastIndexByte(sent, ':'); i >= 0 && i > strings.LastIndexByte(sent, ']') && i < len(sent)-1 {
		port = sent[i:]
	}
	if len(sent) == len(canon)+len(port) && strings.HasPrefix(sent, canon) && strings.HasSuffix(sent, port) {
		return sent
	}
	return canon + port
}

// targetProblem is the client-facing description of a refused target.
func targetProblem(err error) string {
	switch {
	case errors.Is(err, policy.ErrMethod):
		return "invalid request method: methods are upper-case tokens"
	case errors.Is(err, policy.ErrMethodOverride):
		return "method overrides are not accepted; send the method itself"
	case errors.Is(err, policy.ErrHost):
		return "invalid host"
	case errors.Is(err, policy.ErrAmbiguousPath):
		return "ambiguous request path"
	}
	return "invalid request target"
}

// hasQueryToken reports an access_token query parameter (RFC 6750 §2.3),
// which we refuse on routes that verify: URLs end up in logs and Referer
// headers. Names are read as the most lenient upstream would read them.
func hasQueryToken(rawQuery string) bool { return policy.HasAccessToken(rawQuery) }

// splitOriginal splits a forward-auth original URL, a path ("/p?q") or a
// full URL ("https://host/p?q"), without decoding or re-encoding it.
func splitOriginal(uri string) (authority, rawPath, rawQuery string, err error) {
	// RFC 9112 §3.2: no fragment is ever part of a request. A "#" here,
	// raw or encoded, means an ingress and Portcullis could disagree about
	// where the path ends; "%23" too, since an ingress may decode once
	// before building this header.
	if strings.IndexByte(uri, '#') >= 0 || strings.Contains(uri, "%23") {
		return "", "", "", policy.ErrTarget
	}
	return policy.SplitTarget(uri)
}
