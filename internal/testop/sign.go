package testop

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// signingKey is an RSA key with the kid under which the JWKS publishes it.
type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

func newSigningKey() (*signingKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("testop: generating key: %w", err)
	}
	// The RFC 7638 thumbprint gives every key a distinct, meaningful kid.
	tp, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("testop: key thumbprint: %w", err)
	}
	return &signingKey{kid: base64.RawURLEncoding.EncodeToString(tp), priv: priv}, nil
}

func jwks(keys []*signingKey) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: string(jose.RS256), Use: "sig",
		})
	}
	return set
}

// randomString returns n URL-safe characters from crypto/rand.
func randomString(n int) string {
	b := make([]byte, n*3/4+3)
	_, _ = rand.Read(b) // never fails (crypto/rand guarantees it since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}

// atHash is OIDC Core 3.1.3.6: the left half of the SHA-256 of the access
// token, base64url-encoded (SHA-256 because every token here uses a
// SHA-256 based algorithm).
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:len(sum)/2])
}

// SignIDToken signs arbitrary claims with the current key (RS256, with kid,
// unless SetSigningAlg chose another), exactly as given: no defaults and
// no misbehaviour are applied.
func (p *Provider) SignIDToken(claims map[string]any) (string, error) {
	return p.sign(claims, MisbehaveNone, "JWT")
}

// LogoutToken returns a signed back-channel logout token for sub and/or sid
// (empty values are omitted; the spec requires at least one, which is left
// to the relying party to check). The active misbehaviour applies where it
// makes sense: issuer, audience, times, signature, kid, and WrongNonce adds
// the nonce claim that logout tokens must not carry.
func (p *Provider) LogoutToken(sub, sid string) (string, error) {
	p.mu.Lock()
	m := p.misbehavior
	p.mu.Unlock()
	c := p.logoutClaims()
	if sub != "" {
		c["sub"] = sub
	}
	if sid != "" {
		c["sid"] = sid
	}
	p.applyMisbehavior(c, m, time.Now(), logoutTokenTTL)
	// The spec recommends explicit typing so that an ID token cannot be
	// confused with a logout token.
	return p.sign(c, m, "logout+jwt")
}

// logoutTokenTTL is the lifetime of logout tokens. exp is required by the
// final back-channel logout spec; keep it short.
const logoutTokenTTL = 2 * time.Minute

// logoutClaims returns the claims every logout token carries, except the
// times.
func (p *Provider) logoutClaims() map[string]any {
	c := map[string]any{
		"iss":    p.issuer,
		"aud":    p.cfg.ClientID,
		"jti":    randomString(22),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
	p.setTenant(c, "")
	return c
}

// SignLogoutToken builds a logout token from the defaults (iss, aud = the
// client, a random jti, iat now, exp in two minutes and the back-channel
// logout events claim) with claims merged over them; a key mapped to nil
// removes that default. It is signed with the provider's signing key (RS256
// with the current key and kid, unless SetSigningAlg chose another), with
// the header typ set to typ, or no typ header at all if typ is empty. The
// active misbehaviour is not applied.
func (p *Provider) SignLogoutToken(claims map[string]any, typ string) (string, error) {
	return p.sign(p.mergeLogoutClaims(claims), MisbehaveNone, typ)
}

// SignLogoutTokenWith is SignLogoutToken signed with algorithm alg and the
// published key of its type, whatever the provider signs its ID tokens
// with: "RS256" (the current RSA key), "ES256" (a published EC P-256 key,
// see SetSigningAlg), or "none" (unsigned: header {"alg":"none"} and an
// empty signature).
func (p *Provider) SignLogoutTokenWith(alg string, claims map[string]any, typ string) (string, error) {
	payload, err := json.Marshal(p.mergeLogoutClaims(claims))
	if err != nil {
		return "", fmt.Errorf("testop: encoding claims: %w", err)
	}
	if alg == "none" {
		return unsigned(payload, typ), nil
	}
	key, err := p.signingKeyFor(alg)
	if err != nil {
		return "", err
	}
	return signJWS(payload, key, typ)
}

// mergeLogoutClaims is the default logout token claims with claims merged
// over them (nil removes).
func (p *Provider) mergeLogoutClaims(claims map[string]any) map[string]any {
	now := time.Now()
	c := p.logoutClaims()
	c["iat"] = now.Unix()
	c["exp"] = now.Add(logoutTokenTTL).Unix()
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// SignWithUnknownKid signs the claims exactly as given (RS256) with a key
// that the JWKS never publishes, under a new random kid on every call, so
// that each token names a kid the relying party has not seen before.
func (p *Provider) SignWithUnknownKid(claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("testop: encoding claims: %w", err)
	}
	rogue, err := p.extraKey(&p.rogue)
	if err != nil {
		return "", err
	}
	key := jose.JSONWebKey{Key: rogue.priv, KeyID: "unpublished-" + randomString(22)}
	return signJWS(payload, jose.SigningKey{Algorithm: jose.RS256, Key: key}, "JWT")
}

// idToken builds and signs the ID token for a grant (a refresh if
// refresh). nonce is empty for refreshes, as OIDC Core 12.2 does not
// repeat it, unless TokenResponseShape.RepeatNonce asks for it.
func (p *Provider) idToken(g grant, nonce, accessToken string, m Misbehavior, refresh bool) (string, error) {
	p.mu.Lock()
	c := maps.Clone(p.claims) // shallow is enough: values are never mutated
	p.mu.Unlock()
	c["iss"] = p.issuer
	c["sub"] = g.subject
	c["aud"] = g.clientID
	c["auth_time"] = g.authTime.Unix()
	c["sid"] = g.sid
	c["at_hash"] = atHash(accessToken)
	if nonce != "" {
		c["nonce"] = nonce
	}
	if err := p.addIDTokenExtras(c, g, accessToken); err != nil {
		return "", err
	}
	p.applyMisbehavior(c, m, time.Now(), time.Hour)
	switch m {
	case WrongAzp:
		c["aud"] = []string{g.clientID, "other-audience"}
		c["azp"] = "someone-else"
	case BadAtHash:
		c["at_hash"] = atHash("not-" + accessToken)
	case SeveralAudiencesNoAzp:
		c["aud"] = []string{g.clientID, "other-audience"}
		delete(c, "azp") // in case the configured claims carry one
	case OtherSubject:
		c["sub"] = "someone-else"
	case AzpOfOtherParty:
		c["azp"] = "someone-else"
	}
	p.editIDToken(c, refresh)
	return p.signPadded(c, m)
}

// applyMisbehavior sets iat and exp and applies the claim-level
// misbehaviours shared by ID and logout tokens.
func (p *Provider) applyMisbehavior(c map[string]any, m Misbehavior, now time.Time, life time.Duration) {
	iat := now
	switch m {
	case Expired:
		iat = now.Add(-time.Hour - life) // so exp is an hour in the past
	case IssuedInFuture:
		iat = now.Add(time.Hour)
	case WrongIssuer:
		c["iss"] = "https://wrong-issuer.example"
	case WrongAudience:
		c["aud"] = "some-other-client"
	case WrongNonce:
		c["nonce"] = "wrong-" + randomString(16)
	}
	c["iat"] = iat.Unix()
	c["exp"] = iat.Add(life).Unix()
	if m == NoIat {
		delete(c, "iat")
	}
}

// signPadded signs an ID token and, if configured, re-signs it with a "pad"
// claim sized from the first attempt so the result is close to the target.
func (p *Provider) signPadded(c map[string]any, m Misbehavior) (string, error) {
	tok, err := p.sign(c, m, "JWT")
	want := p.cfg.IDTokenPadding
	if err != nil || want <= 0 || len(tok) >= want {
		return tok, err
	}
	// base64url grows the payload by 4/3; `,"pad":""` costs 9 JSON bytes.
	n := (want-len(tok))*3/4 - 9
	if n <= 0 {
		return tok, nil
	}
	c["pad"] = strings.Repeat("x", n)
	return p.sign(c, m, "JWT")
}

// sign produces a compact JWS for the claims, applying the signature-level
// misbehaviours. An empty typ leaves out the typ header.
func (p *Provider) sign(claims map[string]any, m Misbehavior, typ string) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("testop: encoding claims: %w", err)
	}
	p.mu.Lock()
	cur, rogue := p.current, p.rogue
	key := p.signingKeyLocked()
	p.mu.Unlock()

	switch m {
	case AlgNone:
		return unsigned(payload, typ), nil
	case HS256Signed:
		key = jose.SigningKey{Algorithm: jose.HS256, Key: hmacKey(p.cfg.ClientSecret)}
	case MissingKid:
		// A bare RSA key carries no key ID, so go-jose writes no kid header.
		key = jose.SigningKey{Algorithm: jose.RS256, Key: cur.priv}
	case UnknownKid:
		if rogue == nil {
			return "", errors.New("testop: no unpublished key available")
		}
		key = jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: rogue.priv, KeyID: rogue.kid}}
	}
	tok, err := signJWS(payload, key, typ)
	if err == nil && m == BadSignature {
		tok = corruptSignature(tok)
	}
	return tok, err
}

// signJWS signs payload into a compact JWS; an empty typ leaves out the typ
// header.
func signJWS(payload []byte, key jose.SigningKey, typ string) (string, error) {
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	return signWithOptions(payload, key, opts)
}

// signWithOptions signs payload with key and the header opts give, as a
// compact JWS.
func signWithOptions(payload []byte, key jose.SigningKey, opts *jose.SignerOptions) (string, error) {
	signer, err := jose.NewSigner(key, opts)
	if err != nil {
		return "", fmt.Errorf("testop: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("testop: signing: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("testop: serializing: %w", err)
	}
	return tok, nil
}

// hmacKey returns the client secret as an HS256 key. go-jose refuses keys
// shorter than 256 bits (RFC 7518 3.2), but HMAC zero-pads any key shorter
// than the 64-byte SHA-256 block, so padding the secret with zero bytes to
// 32 yields exactly the MAC keyed with the raw client secret (OIDC Core 10.1).
func hmacKey(secret string) []byte {
	k := []byte(secret)
	for len(k) < 32 {
		k = append(k, 0)
	}
	return k
}

// unsigned builds an "alg":"none" JWS by hand: go-jose deliberately cannot
// produce one, and no cryptography is involved.
func unsigned(payload []byte, typ string) string {
	h := map[string]string{"alg": "none"}
	if typ != "" {
		h["typ"] = typ
	}
	hdr, _ := json.Marshal(h)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(hdr) + "." + enc.EncodeToString(payload) + "."
}

// corruptSignature flips the bits of one signature byte. Editing decoded
// bytes (not characters) guarantees the signature really changes, since the
// last base64 character may carry ignored padding bits.
func corruptSignature(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if i < 0 || err != nil || len(sig) == 0 {
		return tok + "AAAA" // not a signed JWS; still break it
	}
	sig[len(sig)/2] ^= 0xff
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}
