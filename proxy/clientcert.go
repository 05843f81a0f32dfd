package proxy

import (
	"crypto/x509"
	"net/http"
	"strings"
)

// HeaderClientCertSubject carries a verified TLS client certificate's
// subject to the upstream, in RFC 4514 form. Its name is an X-Auth-* one,
// so a client's own copy is always scrubbed first.
const HeaderClientCertSubject = "X-Auth-Client-Cert-Subject"

// maxSubjectLen bounds the header: a subject is chosen by whoever the CA
// signed for, and upstreams have header limits of their own.
const maxSubjectLen = 1024

// setClientCert passes on the subject of a client certificate that verified
// against client_ca_file. An unverified one never gets this far: the
// handshake refuses it.
func setClientCert(hdr http.Header, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return
	}
	if s := certSubject(r.TLS.VerifiedChains[0][0]); s != "" {
		hdr[HeaderClientCertSubject] = []string{s}
	}
}

// certSubject is the RFC 4514 string of the subject ("CN=…,O=…"), with
// control characters escaped as \XX (RFC 4514 §2.4) so the value is a valid
// header field; "" when it is too long to pass on.
func certSubject(c *x509.Certificate) string {
	s := c.Subject.String()
	if len(s) > maxSubjectLen {
		return ""
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c == 0x7f {
			b.WriteByte('\\')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
