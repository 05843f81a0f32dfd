package issuer

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/config"
)

const (
	// credCacheMax bounds the verified-credential cache; each entry is a
	// 32-byte MAC and a pointer, so the cache stays well under a MiB.
	credCacheMax = 4096
	// bcryptQueueWait is how long a request waits for a bcrypt slot before
	// it is told to retry: a flood of wrong secrets queues behind itself
	// and then gets 503, while the proxy path keeps its CPU.
	bcryptQueueWait = 2 * time.Second
	// maxBcryptInput is bcrypt's input limit; longer secrets never match
	// (x/crypto refuses rather than silently truncating).
	maxBcryptInput = 72
)

// ErrBusy means every bcrypt slot stayed taken for bcryptQueueWait.
var ErrBusy = errors.New("client authentication is busy")

// client is one registered OAuth client.
type client struct {
	id       string
	hash     []byte
	scopes   []string
	audience []string
}

// clientAuth checks client secrets. A correct secret, once checked with
// bcrypt, is remembered by an HMAC of (id, secret) under a per-process key,
// so repeat requests cost a MAC instead of ~200 ms of bcrypt; a wrong secret
// is never remembered. Safe for concurrent use.
type clientAuth struct {
	clients  map[string]*client
	fakeHash []byte
	sem      chan struct{}
	macKey   [32]byte

	mu    sync.RWMutex
	cache map[[32]byte]*client
}

func newClientAuth(cfg []config.Client) (*clientAuth, error) {
	a := &clientAuth{
		clients: make(map[string]*client, len(cfg)),
		sem:     make(chan struct{}, runtime.NumCPU()),
		cache:   make(map[[32]byte]*client),
	}
	if _, err := rand.Read(a.macKey[:]); err != nil {
		return nil, fmt.Errorf("creating credential cache key: %w", err)
	}
	cost := bcrypt.DefaultCost
	for _, c := range cfg {
		a.clients[c.ID] = &client{id: c.ID, hash: []byte(c.SecretHash.Reveal()), scopes: c.Scopes, audience: c.Audience}
		if n, err := bcrypt.Cost([]byte(c.SecretHash.Reveal())); err == nil && n > cost {
			cost = n
		}
	}
	// An unknown client id is checked against this hash of the same cost,
	// so its answer takes as long as a wrong secret's (no user enumeration
	// by timing).
	fake, err := bcrypt.GenerateFromPassword([]byte("portcullis-no-such-client"), cost)
	if err != nil {
		return nil, fmt.Errorf("preparing client authentication: %w", err)
	}
	a.fakeHash = fake
	return a, nil
}

func (a *clientAuth) mac(id, secret string) [32]byte {
	h := hmac.New(sha256.New, a.macKey[:])
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// authenticate returns the client when id and secret match, nil when they do
// not (unknown id and wrong secret are indistinguishable), and ErrBusy or the
// context's error when it could not decide.
func (a *clientAuth) authenticate(ctx context.Context, id, secret string) (*client, error) {
	key := a.mac(id, secret)
	a.mu.RLock()
	c := a.cache[key]
	a.mu.RUnlock()
	if c != nil {
		return c, nil
	}
	timer := time.NewTimer(bcryptQueueWait)
	defer timer.Stop()
	select {
	case a.sem <- struct{}{}:
	case <-timer.C:
		return nil, ErrBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-a.sem }()

	c = a.clients[id]
	hash := a.fakeHash
	if c != nil {
		hash = c.hash
	}
	pw := secret
	if len(pw) > maxBcryptInput {
		pw = pw[:maxBcryptInput] // spend the same time, then refuse below
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(pw))
	if err != nil || c == nil || len(secret) > maxBcryptInput {
		return nil, nil
	}
	a.mu.Lock()
	if len(a.cache) >= credCacheMax {
		for k := range a.cache { // arbitrary eviction keeps the bound
			delete(a.cache, k)
			break
		}
	}
	a.cache[key] = c
	a.mu.Unlock()
	return c, nil
}
