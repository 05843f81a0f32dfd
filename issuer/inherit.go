package issuer

import "slices"

// Inherit gives a freshly built Issuer the trusted issuers' key sets that
// prev already fetched, for every trusted issuer whose JWKS URL and
// algorithms are unchanged: after a reload, tokens of those issuers verify
// from the first request instead of waiting for the new Issuer's first
// fetch. Call it before the new Issuer serves; the new Issuer still fetches
// on Start as usual.
func (iss *Issuer) Inherit(prev *Issuer) {
	if prev == nil {
		return
	}
	for name, r := range iss.remotes {
		old, ok := prev.remotes[name]
		if !ok || old.jwksURL != r.jwksURL || !slices.Equal(old.algorithms, r.algorithms) {
			continue
		}
		r.keys.Store(old.keys.Load())
	}
}
