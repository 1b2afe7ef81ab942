package testop

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"sync"

	jose "github.com/go-jose/go-jose/v4"
)

// KeySet shapes the JWKS the provider publishes, as the OpenID Foundation
// conformance suite's provider does for every test module: several
// signing keys of several types, keys a relying party cannot read, keys
// published for encryption, with or without kid. Signing keys are
// published with use "sig" and without alg, as the suite's are.
type KeySet struct {
	// RSA is the number of RSA signing keys (at least one): tokens signed
	// RS256 are signed with one of them, chosen at random when the set is
	// published.
	RSA int
	// EC is the number of EC P-256 signing keys: tokens signed ES256 (see
	// SetSigningAlg and SignLogoutTokenWith) are signed with one of them,
	// chosen at random.
	EC int
	// Secp256k1 is the number of EC keys on the secp256k1 curve, which
	// go-jose, like many JOSE libraries, cannot read: a relying party must
	// skip such a key rather than refuse the whole set. They never sign.
	Secp256k1 int
	// Ed25519 is the number of Ed25519 (OKP) signing keys. They never sign.
	Ed25519 int
	// Encryption adds two keys published for encryption (use "enc", with
	// kid): an RSA-OAEP and an ECDH-ES (P-256) one.
	Encryption bool
	// NoKeyIDs publishes the signing keys without kid, and tokens name
	// none, as in the suite's kid-absent modules.
	NoKeyIDs bool
}

// SuiteKeySet is the key set the conformance suite's provider publishes
// unless a module changes it: two RSA, two EC P-256, one secp256k1 and one
// Ed25519 signing key, and the two encryption keys.
var SuiteKeySet = KeySet{RSA: 2, EC: 2, Secp256k1: 1, Ed25519: 1, Encryption: true}

// keyState is the provider's state for this file, guarded by Provider.mu.
type keyState struct {
	shape *KeySet    // the published shape, nil until PublishKeySet
	alg   string     // what tokens are signed with: "" (RS256) or ES256
	ec    []*ecKey   // EC P-256 signing keys, published
	ecUse *ecKey     // the one ES256 tokens are signed with
	other [][]byte   // published keys that never sign, as JSON
	old   [][][]byte // earlier sets' keys kept by RotateKeys(true), as JSON
}

type ecKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

// PublishKeySet replaces the provider's keys by a new set of shape ks:
// new keys under new kids. The JWKS publishes them all; tokens are signed
// with one of its RSA keys (or, with SetSigningAlg("ES256"), one of its EC
// keys). RotateKeys, from then on, publishes a new set of the same shape.
func (p *Provider) PublishKeySet(ks KeySet) error {
	if ks.RSA < 1 {
		return fmt.Errorf("testop: a key set needs an RSA signing key")
	}
	set, err := newKeySet(ks)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.installKeySetLocked(ks, set, false)
	return nil
}

// generatedSet is the keys of a new KeySet.
type generatedSet struct {
	rsa   []*signingKey
	use   int // index of the RSA key that signs
	ec    []*ecKey
	ecUse int
	other [][]byte
}

func newKeySet(ks KeySet) (*generatedSet, error) {
	kid := func() string {
		if ks.NoKeyIDs {
			return ""
		}
		return newUUID()
	}
	nRSA := ks.RSA
	if ks.Encryption {
		nRSA++
	}
	rsaKeys, err := pooledRSAKeys(nRSA)
	if err != nil {
		return nil, err
	}
	set := &generatedSet{use: randomIndex(ks.RSA), ecUse: randomIndex(ks.EC)}
	for _, k := range rsaKeys[:ks.RSA] {
		set.rsa = append(set.rsa, &signingKey{kid: kid(), priv: k})
	}
	for range ks.EC {
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("testop: generating key: %w", err)
		}
		set.ec = append(set.ec, &ecKey{kid: kid(), priv: priv})
	}
	for range ks.Secp256k1 {
		set.other = append(set.other, secp256k1Key(kid()))
	}
	for range ks.Ed25519 {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("testop: generating key: %w", err)
		}
		set.other = append(set.other, publicJWK(pub, kid(), "sig", ""))
	}
	if ks.Encryption {
		set.other = append(set.other, publicJWK(&rsaKeys[ks.RSA].PublicKey, newUUID(), "enc", "RSA-OAEP"))
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("testop: generating key: %w", err)
		}
		set.other = append(set.other, publicJWK(&priv.PublicKey, newUUID(), "enc", "ECDH-ES"))
	}
	return set, nil
}

// installKeySetLocked makes set the provider's keys; with keepOld, the
// keys published before stay published. p.mu must be held.
func (p *Provider) installKeySetLocked(ks KeySet, set *generatedSet, keepOld bool) {
	if keepOld {
		p.x.keys.old = append(p.x.keys.old, p.keySetJSONLocked(p.published))
	} else {
		p.x.keys.old = nil
	}
	p.x.keys.shape = &ks
	p.current = set.rsa[set.use]
	p.published = set.rsa
	p.x.keys.ec = set.ec
	p.x.keys.ecUse = nil
	if len(set.ec) > 0 {
		p.x.keys.ecUse = set.ec[set.ecUse]
	}
	p.x.keys.other = set.other
}

// rotateKeySet is RotateKeys for a provider with a shaped key set: a new
// set of the same shape. It reports false when there is no shaped set.
func (p *Provider) rotateKeySet(keepOld bool) bool {
	p.mu.Lock()
	shape := p.x.keys.shape
	p.mu.Unlock()
	if shape == nil {
		return false
	}
	set, err := newKeySet(*shape)
	if err != nil {
		return true // cannot happen with crypto/rand
	}
	p.mu.Lock()
	p.installKeySetLocked(*shape, set, keepOld)
	p.mu.Unlock()
	return true
}

// SetSigningAlg chooses the algorithm of the tokens the provider signs from
// now on (ID tokens, logout tokens, signed userinfo, claim sources): RS256
// (the default) or ES256, with a published EC P-256 key (one of the key
// set's, or one added to the JWKS when it has none). Misbehaviours that
// need an RSA key (MissingKid, UnknownKid) still sign RS256.
func (p *Provider) SetSigningAlg(alg string) error {
	switch alg {
	case "RS256":
		p.mu.Lock()
		p.x.keys.alg = ""
		p.mu.Unlock()
		return nil
	case "ES256":
		if _, err := p.ecSigningKey(); err != nil {
			return err
		}
		p.mu.Lock()
		p.x.keys.alg = alg
		p.mu.Unlock()
		return nil
	}
	return fmt.Errorf("testop: signing algorithm %q: RS256 or ES256", alg)
}

// ecSigningKey returns the EC key that signs ES256 tokens, adding one to
// the JWKS if there is none.
func (p *Provider) ecSigningKey() (*ecKey, error) {
	p.mu.Lock()
	k := p.x.keys.ecUse
	p.mu.Unlock()
	if k != nil {
		return k, nil
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testop: generating key: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.x.keys.ecUse == nil {
		p.x.keys.ecUse = &ecKey{kid: newUUID(), priv: priv}
		p.x.keys.ec = append(p.x.keys.ec, p.x.keys.ecUse)
	}
	return p.x.keys.ecUse, nil
}

// signingKeyLocked is the key tokens are signed with unless a
// misbehaviour says otherwise. p.mu must be held.
func (p *Provider) signingKeyLocked() jose.SigningKey {
	if k := p.x.keys.ecUse; p.x.keys.alg == "ES256" && k != nil {
		return jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}
	}
	return jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: p.current.priv, KeyID: p.current.kid}}
}

// signingKeyFor is the published key that signs alg (RS256 or ES256).
func (p *Provider) signingKeyFor(alg string) (jose.SigningKey, error) {
	switch alg {
	case "RS256":
		p.mu.Lock()
		defer p.mu.Unlock()
		return jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: p.current.priv, KeyID: p.current.kid}}, nil
	case "ES256":
		k, err := p.ecSigningKey()
		if err != nil {
			return jose.SigningKey{}, err
		}
		return jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, nil
	}
	return jose.SigningKey{}, fmt.Errorf("testop: signing algorithm %q: none, RS256 or ES256", alg)
}

// publishedKeySet is the JWKS document: the RSA keys given (the published
// ones, and a MissingKid decoy), then the other keys.
func (p *Provider) publishedKeySet(rsaKeys []*signingKey) any {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := p.keySetJSONLocked(rsaKeys)
	for _, old := range p.x.keys.old {
		keys = append(keys, old...)
	}
	out := struct {
		Keys []json.RawMessage `json:"keys"`
	}{Keys: []json.RawMessage{}}
	for _, k := range keys {
		out.Keys = append(out.Keys, k)
	}
	return out
}

// keySetJSONLocked is the current set's keys, as JSON, with rsaKeys as its
// RSA keys. p.mu must be held.
func (p *Provider) keySetJSONLocked(rsaKeys []*signingKey) [][]byte {
	var out [][]byte
	alg := string(jose.RS256)
	if p.x.keys.shape != nil {
		alg = "" // the suite publishes its signing keys without alg
	}
	for _, k := range rsaKeys {
		out = append(out, publicJWK(&k.priv.PublicKey, k.kid, "sig", alg))
	}
	for _, k := range p.x.keys.ec {
		a := string(jose.ES256)
		if p.x.keys.shape != nil {
			a = ""
		}
		out = append(out, publicJWK(&k.priv.PublicKey, k.kid, "sig", a))
	}
	return append(out, p.x.keys.other...)
}

func publicJWK(pub any, kid, use, alg string) []byte {
	b, err := (&jose.JSONWebKey{Key: pub, KeyID: kid, Use: use, Algorithm: alg}).MarshalJSON()
	if err != nil {
		panic("testop: encoding a public key: " + err.Error()) // only keys made here
	}
	return b
}

// secp256k1Key is a public key on secp256k1 as a JWK: the curve's
// generator, a valid point. It only has to be published, never to sign,
// and Go has no such curve to make others with.
func secp256k1Key(kid string) []byte {
	gx, _ := new(big.Int).SetString("79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798", 16)
	gy, _ := new(big.Int).SetString("483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8", 16)
	k := map[string]string{
		"kty": "EC", "crv": "secp256k1", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(gx.FillBytes(make([]byte, 32))),
		"y": base64.RawURLEncoding.EncodeToString(gy.FillBytes(make([]byte, 32))),
	}
	if kid != "" {
		k["kid"] = kid
	}
	b, _ := json.Marshal(k)
	return b
}

// newUUID returns a random (version 4) UUID, as the suite's kids and jtis are.
func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func randomIndex(n int) int {
	if n < 2 {
		return 0
	}
	i, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(i.Int64())
}

// rsaPool holds RSA keys generated once per process and handed out again
// under new kids, as the suite does: a 2048-bit key takes tens of
// milliseconds to generate, and tests publish many key sets. Keys handed
// out together are distinct.
var rsaPool struct {
	sync.Mutex
	keys []*rsa.PrivateKey
	next int
}

const rsaPoolSize = 8

func pooledRSAKeys(n int) ([]*rsa.PrivateKey, error) {
	rsaPool.Lock()
	defer rsaPool.Unlock()
	out := make([]*rsa.PrivateKey, 0, n)
	for i := range n {
		// Round robin gives n distinct keys once the pool is full; while
		// it fills, and beyond its size, keys are new.
		if len(rsaPool.keys) == rsaPoolSize && i < rsaPoolSize {
			out = append(out, rsaPool.keys[rsaPool.next%rsaPoolSize])
			rsaPool.next++
			continue
		}
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("testop: generating key: %w", err)
		}
		if len(rsaPool.keys) < rsaPoolSize {
			rsaPool.keys = append(rsaPool.keys, k)
		}
		out = append(out, k)
	}
	return out, nil
}
