package issuer

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/portcullis/portcullis/config"
)

// bigToken signs a token of about 7 KiB, most of it a long scope list, as
// an IdP with many fine-grained scopes issues them.
func bigToken(t testing.TB, iss *Issuer, i int, now time.Time) string {
	t.Helper()
	scopes := make([]string, 0, 560)
	for j := 0; j < 560; j++ {
		scopes = append(scopes, fmt.Sprintf("s%03d:%03d", i%1000, j))
	}
	tok, err := iss.Sign(Claims{RegisteredClaims: jwt.RegisteredClaims{
		Issuer: testIssuer, Subject: fmt.Sprintf("client-%d", i), Audience: jwt.ClaimStrings{"orders-api"},
		ID: fmt.Sprintf("jti-%d", i), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now),
	}, ClientID: "billing", Scope: strings.Join(scopes, " ")})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func heapAfterGC() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// TestCacheFloodOfLargeTokens verifies 12,000 distinct valid 7 KiB tokens
// twice each, so every one is cached (and as many forged ones): the cache stays within CacheMaxBytes, and the
// heap it holds after GC within the bound plus what the test itself keeps.
func TestCacheFloodOfLargeTokens(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a memory flood: run without -race and -short (make test does)")
	}
	const n = 12_000
	// HS256 keeps signing 12,000 tokens cheap; the cache does not care.
	iss := newTestIssuer(t, testConfig(t, config.Key{ID: "h", Algorithm: "HS256", Secret: "0123456789abcdef0123456789abcdef"}), Options{})
	now := time.Now()
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = bigToken(t, iss, i, now)
	}
	if l := len(tokens[0]); l < 6<<10 || l > MaxTokenBytes {
		t.Fatalf("token of %d bytes, want about 7 KiB", l)
	}
	base := heapAfterGC()
	for i, tok := range tokens {
		for range 2 { // a token enters the cache on its second use
			if _, err := iss.Verify(tok); err != nil {
				t.Fatalf("token %d: %v", i, err)
			}
		}
	}
	valid := heapAfterGC() - base
	entries, bytes := iss.cache.size()
	t.Logf("%d valid 7 KiB tokens: %d cached, %.1f MiB accounted, heap +%.1f MiB", n, entries, float64(bytes)/(1<<20), float64(valid)/(1<<20))
	if bytes > CacheMaxBytes {
		t.Errorf("cache accounts %d bytes, bound %d", bytes, CacheMaxBytes)
	}
	if valid > CacheMaxBytes+4<<20 {
		t.Errorf("heap grew %.1f MiB verifying %d large tokens, bound %d MiB", float64(valid)/(1<<20), n, CacheMaxBytes>>20)
	}
	// Forged: the same tokens with a signature from nobody's key are
	// refused and never cached.
	before, _ := iss.cache.size()
	base = heapAfterGC()
	for i, tok := range tokens {
		forged := tok[:strings.LastIndexByte(tok, '.')+1] + strings.Repeat("A", 43)
		if _, err := iss.Verify(forged); err == nil {
			t.Fatalf("forged token %d accepted", i)
		}
	}
	after, _ := iss.cache.size()
	forged := heapAfterGC() - base
	t.Logf("%d forged tokens: cache %d → %d entries, heap %+.1f MiB", n, before, after, float64(forged)/(1<<20))
	if after != before || forged > 4<<20 {
		t.Errorf("forged tokens grew the cache (%d → %d) or the heap (%d bytes)", before, after, forged)
	}
	runtime.KeepAlive(tokens)
}
