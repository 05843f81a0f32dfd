package issuer

import "slices"

// Inherit gives a freshly built Issuer the remote key sets that prev
// already fetched — trusted issuers' and jwks_url clients' — for every one
// whose JWKS URL and algorithms are unchanged: after a reload, their tokens
// and assertions verify from the first request, and readiness does not drop
// while the new Issuer's first fetch runs. Call it before the new Issuer
// serves; the new Issuer still fetches on Start as usual.
func (iss *Issuer) Inherit(prev *Issuer) {
	if prev == nil {
		return
	}
	for name, r := range iss.remotes {
		if old, ok := prev.remotes[name]; ok {
			r.inherit(old.jwksSource)
		}
	}
	for _, s := range iss.clients.sources {
		for _, old := range prev.clients.sources {
			if old.name == s.name {
				s.inherit(old)
				break
			}
		}
	}
}

// inherit copies old's keys when it fetched the same document for the same
// algorithms.
func (s *jwksSource) inherit(old *jwksSource) {
	if old.url != s.url || !slices.Equal(old.algorithms, s.algorithms) || !old.fetched.Load() {
		return
	}
	s.keys.Store(old.keys.Load())
	s.fetched.Store(true)
}
