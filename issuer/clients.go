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

	"github.com/portcullis/portcullis/claim"
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

// client is one registered OAuth client. It authenticates with exactly one
// of: a bcrypt secret (hash), its own keys (keys inline, or source for a
// jwks_url), or a trusted issuer's token (federated).
type client struct {
	id        string
	hash      []byte
	scopes    []string
	audience  []string
	keys      map[string]*Key
	source    *jwksSource
	federated *config.Federated
}

// usesKeys reports whether the client authenticates with private_key_jwt.
func (c *client) usesKeys() bool { return c.keys != nil || c.source != nil }

// clientAuth holds the registered clients and checks client secrets (client
// assertions are checked in assertion.go). A correct secret, once checked with
// bcrypt, is remembered by an HMAC of (id, secret) under a per-process key,
// so repeat requests cost a MAC instead of ~200 ms of bcrypt; a wrong secret
// is never remembered. Safe for concurrent use.
type clientAuth struct {
	clients map[string]*client
	// federated finds a federated client by the issuer and subject of the
	// token it presents.
	federated map[federatedID]*client
	sources   []*jwksSource // jwks_url clients' key sets
	fakeHash  []byte
	sem       chan struct{}
	macKey    [32]byte

	mu    sync.RWMutex
	cache map[[32]byte]*client
}

// federatedID is the issuer and subject of a federated client's tokens.
type federatedID struct{ issuer, subject string }

// newClientAuth builds the clients. so carries what jwks_url clients need
// to fetch their keys (client, log, clock).
func newClientAuth(cfg []config.Client, so sourceOptions) (*clientAuth, error) {
	a := &clientAuth{
		clients:   make(map[string]*client, len(cfg)),
		federated: map[federatedID]*client{},
		sem:       make(chan struct{}, runtime.NumCPU()),
		cache:     make(map[[32]byte]*client),
	}
	if _, err := rand.Read(a.macKey[:]); err != nil {
		return nil, fmt.Errorf("creating credential cache key: %w", err)
	}
	var errs []error
	costs := map[int]int{}
	for i, c := range cfg {
		cl := &client{id: c.ID, scopes: c.Scopes, audience: c.Audience, federated: c.Federated}
		if c.SecretHash != "" {
			cl.hash = []byte(c.SecretHash.Reveal())
			if n, err := bcrypt.Cost(cl.hash); err == nil {
				costs[n]++
			}
		}
		if c.JWKS != nil {
			keys, err := inlineJWKS(c.JWKS)
			if err != nil {
				errs = append(errs, fmt.Errorf("issuer.clients[%d].jwks: %w", i, err))
			}
			cl.keys = keys
		}
		if c.JWKSURL != "" {
			o := so
			o.name, o.algorithms = "client "+c.ID, config.AssertionAlgorithms
			src, err := newSource(c.JWKSURL, o)
			if err != nil {
				errs = append(errs, fmt.Errorf("issuer.clients[%d].jwks_url: %w", i, err))
				continue
			}
			cl.source = src
			a.sources = append(a.sources, src)
		}
		if f := c.Federated; f != nil {
			a.federated[federatedID{f.Issuer, f.Subject}] = cl
		}
		a.clients[c.ID] = cl
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// An unknown client id is checked against this hash of the configured
	// clients' cost, so its answer takes as long as a wrong secret's (no
	// client enumeration by timing).
	fake, err := decoyHash(decoyCost(costs))
	if err != nil {
		return nil, fmt.Errorf("preparing client authentication: %w", err)
	}
	a.fakeHash = fake
	return a, nil
}

// decoyHashes keeps one decoy hash per bcrypt cost for the process's
// life: making one costs as much as a client's secret check (a quarter of
// a second at cost 12), and a configuration reload would otherwise spend it
// again though nothing about it changed.
var decoyHashes sync.Map // cost → []byte

func decoyHash(cost int) ([]byte, error) {
	if h, ok := decoyHashes.Load(cost); ok {
		return h.([]byte), nil
	}
	h, err := bcrypt.GenerateFromPassword([]byte("portcullis-no-such-client"), cost)
	if err != nil {
		return nil, err
	}
	h2, _ := decoyHashes.LoadOrStore(cost, h)
	return h2.([]byte), nil
}

// decoyCost is the bcrypt cost most secret clients use (the higher one on
// a tie), so that an unknown id costs what a typical wrong secret costs;
// bcrypt's default when no client has a secret.
func decoyCost(costs map[int]int) int {
	best, n := bcrypt.DefaultCost, 0
	for c, k := range costs {
		if k > n || (k == n && c > best) {
			best, n = c, k
		}
	}
	return best
}

// privateKeyJWT reports whether some client authenticates with its keys.
func (a *clientAuth) privateKeyJWT() bool {
	for _, c := range a.clients {
		if c.usesKeys() {
			return true
		}
	}
	return false
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

	// A client id with a control character is simply unknown (no client
	// can have one); a client without a secret (one that authenticates
	// with keys or a federated token) is refused after the same work.
	c = a.clients[id]
	if claim.HasControl(id) || (c != nil && c.hash == nil) {
		c = nil
	}
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
