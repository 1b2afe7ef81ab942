// Package keyset keeps an OpenID provider's published signing keys (its
// JWKS) and verifies JWS signatures with them. It implements go-oidc's
// KeySet, which leaves the choice of key to it: the key the token names by
// "kid", or, for a token that names none, the one published key that fits
// its algorithm (OpenID Connect Core 10.1).
//
// A token that names a key the set does not have makes the set fetch the
// provider's keys again, which is how signing-key rotation is followed.
// Anyone who can send a token (a forged logout token, say) can name an
// unknown key, so these refetches happen at most once per interval, and
// concurrent ones share a single request.
package keyset

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// Errors of VerifySignature. Their text names no URL and no key material,
// so they may be shown to whoever sent the token.
var (
	// ErrNoKey: no published key is the one the token names, or fits it.
	ErrNoKey = errors.New("no published signing key fits the token's signature")
	// ErrAmbiguousKey: the token names no key (no kid) and several
	// published keys fit its algorithm.
	ErrAmbiguousKey = errors.New("the token names no signing key (kid) and the provider publishes several that fit")
	// ErrBadSignature: the key the token names does not verify it.
	ErrBadSignature = errors.New("the signature does not verify")
	// ErrUnavailable: the provider's keys could not be fetched.
	ErrUnavailable = errors.New("the provider's signing keys could not be fetched")
	// ErrMalformed: not a compact JWS with one signature.
	ErrMalformed = errors.New("the token is not a signed JWT")
)

// Algorithms are the asymmetric JWS algorithms a Set verifies. "none" and
// the HMAC algorithms are never among them.
var Algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// Defaults.
const (
	// DefaultRefetchInterval is the least time between two fetches that a
	// token's unknown key caused.
	DefaultRefetchInterval = 10 * time.Second
	// retryInterval is the least time between attempts while the keys have
	// never been fetched successfully.
	retryInterval = time.Second
	maxKeySetSize = 1 << 20
)

// Set is a provider's key set. It is safe for concurrent use.
type Set struct {
	url      string
	client   *http.Client
	interval time.Duration
	logger   *zap.Logger
	now      func() time.Time

	onRefetch func()

	mu          sync.Mutex
	keys        []jose.JSONWebKey
	loaded      bool      // keys were fetched successfully at least once
	lastAttempt time.Time // of any fetch
	lastRefetch time.Time // of a fetch that an unknown key caused
	inflight    *fetch

	fetches atomic.Int64
}

type fetch struct {
	done chan struct{}
	keys []jose.JSONWebKey
	err  error
}

// New returns a Set for the key set at url, fetched with client (with its
// timeout) no more than once per interval (DefaultRefetchInterval if zero)
// when tokens name keys it does not have. Nothing is fetched until a token
// needs it. Failed fetches are logged to logger (nil: not logged) and
// reported as ErrUnavailable, without detail.
func New(url string, client *http.Client, interval time.Duration, logger *zap.Logger) *Set {
	if interval <= 0 {
		interval = DefaultRefetchInterval
	}
	if client == nil {
		client = http.DefaultClient
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Set{url: url, client: client, interval: interval, logger: logger, now: time.Now}
}

// OnRefetch sets a function called, in the background, whenever a token's
// unknown key makes the set fetch the keys again: the provider's metadata
// may have moved too. Call it before the set is used.
func (s *Set) OnRefetch(fn func()) { s.onRefetch = fn }

// Fetches is how many times the set has asked the provider for its keys.
func (s *Set) Fetches() int64 { return s.fetches.Load() }

// VerifySignature verifies jwt's signature with the key it names (or the
// one that fits, when it names none) and returns the payload. It
// implements go-oidc's KeySet: the verifier has checked the algorithm
// against its allow-list before.
func (s *Set) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, Algorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, ErrMalformed
	}
	hdr := jws.Signatures[0].Header
	keys, err := s.current(ctx)
	if err != nil {
		return nil, err
	}
	payload, err := verifyWith(jws, hdr, keys)
	if err == nil {
		return payload, nil
	}
	// The provider may have rotated its keys (for a token without kid, to
	// a single one): fetch them again, unless that was done a moment ago.
	keys, refetched, ferr := s.refetch(ctx)
	if ferr != nil {
		return nil, ferr
	}
	if !refetched {
		return nil, err
	}
	return verifyWith(jws, hdr, keys)
}

// verifyWith picks the key hdr names, or the only one that fits its
// algorithm, from keys and verifies jws with it.
func verifyWith(jws *jose.JSONWebSignature, hdr jose.Header, keys []jose.JSONWebKey) ([]byte, error) {
	var candidates []jose.JSONWebKey
	for _, k := range keys {
		if (hdr.KeyID == "" || k.KeyID == hdr.KeyID) && fits(k, hdr.Algorithm) {
			candidates = append(candidates, k)
		}
	}
	switch {
	case len(candidates) == 0:
		return nil, ErrNoKey
	case hdr.KeyID == "" && len(candidates) > 1:
		return nil, ErrAmbiguousKey
	}
	for _, k := range candidates {
		if payload, err := jws.Verify(k); err == nil {
			return payload, nil
		}
	}
	return nil, ErrBadSignature
}

// fits reports whether k can verify signatures made with alg: a signing
// key (not one published for encryption), of alg's type and curve, whose
// own "alg", if it has one, is alg.
func fits(k jose.JSONWebKey, alg string) bool {
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		switch jose.SignatureAlgorithm(alg) {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case *ecdsa.PublicKey:
		switch jose.SignatureAlgorithm(alg) {
		case jose.ES256:
			return pub.Curve == elliptic.P256()
		case jose.ES384:
			return pub.Curve == elliptic.P384()
		case jose.ES512:
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return jose.SignatureAlgorithm(alg) == jose.EdDSA
	}
	return false
}

// Load fetches the keys if they never were, and reports whether the set
// has keys: ErrUnavailable if they cannot be had.
func (s *Set) Load(ctx context.Context) error {
	_, err := s.current(ctx)
	return err
}

// current returns the keys, fetching them first if they never were.
func (s *Set) current(ctx context.Context) ([]jose.JSONWebKey, error) {
	s.mu.Lock()
	if s.loaded {
		keys := s.keys
		s.mu.Unlock()
		return keys, nil
	}
	f := s.start(retryInterval)
	s.mu.Unlock()
	if f == nil {
		return nil, ErrUnavailable
	}
	return s.wait(ctx, f)
}

// refetch fetches the keys again if the last refetch is at least an
// interval ago; refetched is false when it was not.
func (s *Set) refetch(ctx context.Context) (keys []jose.JSONWebKey, refetched bool, err error) {
	s.mu.Lock()
	if s.inflight == nil && s.now().Sub(s.lastRefetch) < s.interval {
		s.mu.Unlock()
		return nil, false, nil
	}
	f := s.inflight
	if f == nil {
		s.lastRefetch = s.now()
		f = s.start(0)
		if s.onRefetch != nil {
			go s.onRefetch()
		}
	}
	s.mu.Unlock()
	keys, err = s.wait(ctx, f)
	return keys, err == nil, err
}

// start begins a fetch, or joins the one under way; with minGap it starts
// none if the last attempt was more recent (nil). s.mu must be held.
func (s *Set) start(minGap time.Duration) *fetch {
	if s.inflight != nil {
		return s.inflight
	}
	if minGap > 0 && !s.lastAttempt.IsZero() && s.now().Sub(s.lastAttempt) < minGap {
		return nil
	}
	f := &fetch{done: make(chan struct{})}
	s.inflight, s.lastAttempt = f, s.now()
	go func() {
		// Not the caller's context: the others waiting for this fetch
		// must not fail because that request went away.
		keys, err := s.fetch()
		if err != nil {
			s.logger.Warn("fetching the provider's signing keys failed", zap.String("url", s.url), zap.Error(err))
			err = ErrUnavailable
		}
		s.mu.Lock()
		if err == nil {
			s.keys, s.loaded = keys, true
		}
		s.inflight = nil
		s.mu.Unlock()
		f.keys, f.err = keys, err
		close(f.done)
	}()
	return f
}

func (s *Set) wait(ctx context.Context, f *fetch) ([]jose.JSONWebKey, error) {
	select {
	case <-f.done:
		return f.keys, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetch GETs the key set. Keys of types or algorithms go-jose does not
// know are skipped, as RFC 7517 5 asks. Its errors carry detail for the
// log.
func (s *Set) fetch() ([]jose.JSONWebKey, error) {
	s.fetches.Add(1)
	req, err := http.NewRequest(http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeySetSize))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("not a JWK set: %v", err)
	}
	keys := make([]jose.JSONWebKey, 0, len(raw.Keys))
	for _, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(r, &k); err != nil || !k.Valid() || !k.IsPublic() {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}
