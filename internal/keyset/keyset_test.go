package keyset

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// provider publishes a key set that tests change, and counts requests.
type provider struct {
	*httptest.Server
	mu       sync.Mutex
	keys     []jose.JSONWebKey
	requests atomic.Int64
	down     bool
}

func newProvider(t *testing.T, keys ...jose.JSONWebKey) *provider {
	p := &provider{keys: keys}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: p.keys})
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *provider) publish(keys ...jose.JSONWebKey) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

type signer struct {
	priv any
	pub  jose.JSONWebKey
	alg  jose.SignatureAlgorithm
}

func rsaSigner(t *testing.T, kid string) signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{k, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Use: "sig"}, jose.RS256}
}

func ecSigner(t *testing.T, kid string) signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{k, jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid}, jose.ES256}
}

// sign makes a compact JWS; kid "" leaves the header without one.
func (s signer) sign(t *testing.T, kid string) string {
	var key any = s.priv
	if kid != "" {
		key = jose.JSONWebKey{Key: s.priv, KeyID: kid}
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sig.Sign([]byte(`{"sub":"u"}`))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func TestVerifiesWithTheKeyTheTokenNames(t *testing.T) {
	a, b := rsaSigner(t, "a"), rsaSigner(t, "b")
	p := newProvider(t, a.pub, b.pub)
	s := New(p.URL, nil, time.Minute, nil)
	for _, sg := range []signer{a, b} {
		payload, err := s.VerifySignature(context.Background(), sg.sign(t, sg.pub.KeyID))
		if err != nil || string(payload) != `{"sub":"u"}` {
			t.Fatalf("kid %s: %q, %v", sg.pub.KeyID, payload, err)
		}
	}
	// Signed by b but naming a: the named key does not verify it.
	if _, err := s.VerifySignature(context.Background(), b.sign(t, "a")); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a token naming the wrong key: %v, want ErrBadSignature", err)
	}
	if p.requests.Load() != 2 { // the first load, and one refetch for the bad signature
		t.Fatalf("%d key set requests, want 2", p.requests.Load())
	}
}

// TestKidMayBeAbsentOnlyWhenOnePublishedKeyFits: OpenID Connect Core 10.1.
func TestKidMayBeAbsentOnlyWhenOnePublishedKeyFits(t *testing.T) {
	rsa1, rsa2, ec := rsaSigner(t, "r1"), rsaSigner(t, "r2"), ecSigner(t, "e1")
	ctx := context.Background()
	one := New(newProvider(t, rsa1.pub).URL, nil, time.Minute, nil)
	if _, err := one.VerifySignature(ctx, rsa1.sign(t, "")); err != nil {
		t.Fatalf("no kid, one key published: %v", err)
	}
	mixed := New(newProvider(t, rsa1.pub, ec.pub).URL, nil, time.Minute, nil)
	if _, err := mixed.VerifySignature(ctx, rsa1.sign(t, "")); err != nil {
		t.Fatalf("no kid, one RSA and one EC key published, RS256 token: %v", err)
	}
	if _, err := mixed.VerifySignature(ctx, ec.sign(t, "")); err != nil {
		t.Fatalf("no kid, one RSA and one EC key published, ES256 token: %v", err)
	}
	two := New(newProvider(t, rsa1.pub, rsa2.pub).URL, nil, time.Minute, nil)
	if _, err := two.VerifySignature(ctx, rsa1.sign(t, "")); !errors.Is(err, ErrAmbiguousKey) {
		t.Fatalf("no kid, two RSA keys published: %v, want ErrAmbiguousKey", err)
	}
}

// TestKeysThatDoNotFitTheAlgorithmAreNotUsed: a key published for
// encryption, or for another algorithm, does not verify signatures.
func TestKeysThatDoNotFitTheAlgorithmAreNotUsed(t *testing.T) {
	a := rsaSigner(t, "a")
	for name, mod := range map[string]func(*jose.JSONWebKey){
		"use enc":   func(k *jose.JSONWebKey) { k.Use = "enc" },
		"alg RS384": func(k *jose.JSONWebKey) { k.Algorithm = "RS384" },
	} {
		k := a.pub
		mod(&k)
		s := New(newProvider(t, k).URL, nil, time.Minute, nil)
		if _, err := s.VerifySignature(context.Background(), a.sign(t, "a")); !errors.Is(err, ErrNoKey) {
			t.Errorf("%s: %v, want ErrNoKey", name, err)
		}
	}
}

// TestUnknownKeysRefetchAtMostOncePerInterval: every token naming a key
// the set lacks may make it fetch the keys again, but anyone can make such
// tokens: 25 of them, sequential and concurrent, cause one request.
func TestUnknownKeysRefetchAtMostOncePerInterval(t *testing.T) {
	a := rsaSigner(t, "a")
	p := newProvider(t, a.pub)
	s := New(p.URL, nil, 10*time.Second, nil)
	now := time.Unix(1_800_000_000, 0)
	var clock sync.Mutex
	s.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	ctx := context.Background()
	if _, err := s.VerifySignature(ctx, a.sign(t, "a")); err != nil {
		t.Fatal(err)
	}
	rogue := rsaSigner(t, "x")
	var wg sync.WaitGroup
	for i := range 25 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := rogue.sign(t, "forged-"+string(rune('a'+i)))
			if _, err := s.VerifySignature(ctx, tok); !errors.Is(err, ErrNoKey) {
				t.Errorf("forged token: %v, want ErrNoKey", err)
			}
		}()
	}
	wg.Wait()
	if got := p.requests.Load(); got != 2 {
		t.Fatalf("%d key set requests for 25 forged tokens, want 2 (the first load and one refetch)", got)
	}
	// A rotation is still followed, once the interval has passed.
	b := rsaSigner(t, "b")
	p.publish(b.pub)
	clock.Lock()
	now = now.Add(11 * time.Second)
	clock.Unlock()
	if _, err := s.VerifySignature(ctx, b.sign(t, "b")); err != nil {
		t.Fatalf("after a rotation: %v", err)
	}
	if got := p.requests.Load(); got != 3 {
		t.Fatalf("%d key set requests, want 3", got)
	}
}

// TestFirstRotationIsFollowedAtOnce: the first refetch needs no waiting.
func TestFirstRotationIsFollowedAtOnce(t *testing.T) {
	a, b := rsaSigner(t, "a"), rsaSigner(t, "b")
	p := newProvider(t, a.pub)
	s := New(p.URL, nil, time.Hour, nil)
	if _, err := s.VerifySignature(context.Background(), a.sign(t, "a")); err != nil {
		t.Fatal(err)
	}
	p.publish(b.pub)
	if _, err := s.VerifySignature(context.Background(), b.sign(t, "b")); err != nil {
		t.Fatalf("after a rotation: %v", err)
	}
}

// TestErrorsNameNoURL: the errors may reach whoever sent the token.
func TestErrorsNameNoURL(t *testing.T) {
	a := rsaSigner(t, "a")
	p := newProvider(t, a.pub)
	p.down = true
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close() // connection refused
	for _, url := range []string{p.URL, closed.URL} {
		s := New(url, nil, time.Minute, nil)
		for _, tok := range []string{a.sign(t, "a"), "garbage", "a.b.c"} {
			_, err := s.VerifySignature(context.Background(), tok)
			if err == nil || strings.Contains(err.Error(), "127.0.0.1") || strings.Contains(err.Error(), "http") {
				t.Fatalf("error %v", err)
			}
		}
	}
}

// TestKidlessTokenAfterTheProviderDroppedAKey: a token without kid is
// ambiguous against cached keys the provider has since reduced to one; the
// set fetches the keys again (within its limit) and accepts it.
func TestKidlessTokenAfterTheProviderDroppedAKey(t *testing.T) {
	a, b := rsaSigner(t, "a"), rsaSigner(t, "b")
	p := newProvider(t, a.pub, b.pub)
	s := New(p.URL, nil, time.Minute, nil)
	if _, err := s.VerifySignature(context.Background(), a.sign(t, "a")); err != nil {
		t.Fatal(err)
	}
	p.publish(b.pub)
	if _, err := s.VerifySignature(context.Background(), b.sign(t, "")); err != nil {
		t.Fatalf("kid-less token, one key published now: %v", err)
	}
}
