package proxy

import (
	"net/http"
	"net/textproto"
	"strings"
)

// Upgrade headers (RFC 9110 §7.8) and HTTP/2's upgrade settings (RFC 7540
// §3.2, removed in RFC 9113).
const (
	hUpgrade       = "Upgrade"
	hHTTP2Settings = "Http2-Settings"
)

// upgradeAllowed is the one protocol a request may switch to through the
// proxy. A switched connection is a tunnel the proxy no longer reads: only
// WebSocket, whose handshake is the request that was just decided, may
// open one. h2c in particular would carry HTTP/2 requests past every route
// and token check ("h2c smuggling").
const upgradeAllowed = "websocket"

// limitUpgrade removes any upgrade but a single WebSocket one, with
// HTTP2-Settings and the "upgrade" token in Connection, so the request is
// forwarded as an ordinary one. It runs after the decision, just before
// forwarding. It allocates only when it removes something.
func limitUpgrade(r *http.Request) {
	h := r.Header
	delete(h, hHTTP2Settings)
	up := h[hUpgrade]
	if len(up) == 0 {
		return
	}
	// RFC 9110 §7.8: an Upgrade in an HTTP/1.0 request is ignored; so is
	// any list, repeat or protocol other than websocket.
	if r.ProtoAtLeast(1, 1) && len(up) == 1 && strings.EqualFold(textproto.TrimString(up[0]), upgradeAllowed) {
		return
	}
	delete(h, hUpgrade)
	conn := h[hConnection]
	for i, v := range conn {
		var kept []string
		for _, tok := range strings.Split(v, ",") {
			tok = textproto.TrimString(tok)
			if tok != "" && !strings.EqualFold(tok, "upgrade") && !strings.EqualFold(tok, hHTTP2Settings) {
				kept = append(kept, tok)
			}
		}
		conn[i] = strings.Join(kept, ", ")
	}
}
