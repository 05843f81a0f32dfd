package proxy

import "net/http"

// forwardingHeaders name the client, the original host or the original
// scheme for the upstream: the X-Forwarded-* family (matched by prefix, see
// isForwarding) and the headers CDNs, load balancers and frameworks use in
// its place. Frameworks trust them for the client address (rate limits,
// allow-lists, audit logs), for redirects and for "is this HTTPS". Only a
// trusted proxy may supply them; Portcullis sets its own X-Forwarded-For,
// -Host and -Proto. Lower-case, "-" separated.
var forwardingHeaders = []string{
	"forwarded", "x-real-ip", "true-client-ip", "cf-connecting-ip", "cf-connecting-ipv6",
	"x-client-ip", "x-cluster-client-ip", "fastly-client-ip", "akamai-client-ip",
	"x-original-forwarded-for", "x-originating-ip", "x-remote-ip", "x-remote-addr",
	"client-ip", "x-proxyuser-ip", "x-azure-clientip", "x-azure-socketip", "x-appengine-user-ip",
	"x-envoy-external-address", "x-envoy-internal", "x-host", "x-original-host",
	"x-http-host-override", "x-scheme", "x-url-scheme", "front-end-https",
}

const xForwardedPrefix = "x-forwarded-"

// isForwarding reports a forwarding header, spelled any way a CGI-style
// server reads as the same variable (X_Forwarded_For is HTTP_X_FORWARDED_FOR).
func isForwarding(name string) bool {
	if len(name) > len(xForwardedPrefix) && sepFoldEqual(name[:len(xForwardedPrefix)], xForwardedPrefix) {
		return true
	}
	for _, n := range forwardingHeaders {
		if len(n) == len(name) && sepFoldEqual(name, n) {
			return true
		}
	}
	return false
}

// scrubForwarding removes the forwarding headers a request may not pass
// on: all of them from a peer outside trusted_proxies (anyone can write
// them), and from anyone the CGI-alias spellings ("X_Real_IP"), which no
// proxy sends and which could shadow the real header in the application.
// setForwarded then sets Portcullis's own.
func scrubForwarding(h http.Header, trusted bool) {
	for name := range h {
		if isForwarding(name) && (!trusted || aliasSpelling(name)) {
			delete(h, name)
		}
	}
}

// aliasSpelling reports a header name with "_" or ".", which CGI-style
// servers read as "-".
func aliasSpelling(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] == '_' || name[i] == '.' {
			return true
		}
	}
	return false
}
