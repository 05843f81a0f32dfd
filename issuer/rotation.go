package issuer

import (
	"bytes"
	"crypto"
	"fmt"

	"github.com/portcullis/portcullis/config"
)

// RotationWarnings compares the keys of a previous and a next configuration
// and says which steps of a rotation would break verifiers. Relying parties
// cache the JWKS, so a key must be published (publish_only) before it
// signs, and a key must keep verifying until its last token has expired.
// The warnings name the key ids; they are advice, not errors. Key files that
// cannot be read are only compared by id.
func RotationWarnings(prev, next []config.Key) []string {
	var out []string
	prevByID := make(map[string]config.Key, len(prev))
	for _, k := range prev {
		prevByID[k.ID] = k
	}
	nextIDs := make(map[string]bool, len(next))
	for _, k := range next {
		nextIDs[k.ID] = true
	}
	if i := config.SigningKey(next); i >= 0 {
		k := next[i]
		if _, ok := prevByID[k.ID]; !ok {
			out = append(out, fmt.Sprintf("issuer.keys[%d]: signing key %q was not published in the previous configuration: "+
				"verifiers that cached the previous JWKS refuse its tokens until they refetch; "+
				"add it with publish_only: true first, wait for JWKS caches to refresh, then make it sign", i, k.ID))
		}
	}
	for i, k := range next {
		if p, ok := prevByID[k.ID]; ok && !sameKey(p, k) {
			out = append(out, fmt.Sprintf("issuer.keys[%d]: key %q has different key material than in the previous configuration: "+
				"verifiers that cached the previous JWKS refuse tokens signed with it; give a new key a new id", i, k.ID))
		}
	}
	for _, k := range prev {
		if !nextIDs[k.ID] {
			out = append(out, fmt.Sprintf("issuer.keys: key %q of the previous configuration is removed: "+
				"tokens it signed may still be live (for up to token_ttl + clock_skew after it stopped signing) and are refused from now on", k.ID))
		}
	}
	return out
}

// sameKey reports whether two configured keys with the same id verify the
// same tokens. When either cannot be loaded, they are assumed the same: the
// configuration check reports unreadable files on its own.
func sameKey(a, b config.Key) bool {
	if a.Algorithm != b.Algorithm {
		return false
	}
	ka, errA := loadKey(a)
	kb, errB := loadKey(b)
	if errA != nil || errB != nil {
		return true
	}
	if sa, ok := ka.public.([]byte); ok {
		sb, ok := kb.public.([]byte)
		return ok && bytes.Equal(sa, sb)
	}
	pa, ok := ka.public.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pa.Equal(kb.public)
}
