package testop

// Access tokens. The token endpoint issues opaque access tokens (random
// strings) unless Config.AccessTokenFormat is "jwt": then it issues JWT
// access tokens as RFC 9068 profiles them, so that a resource server can
// verify them with the provider's keys. Whatever their format, the
// introspection endpoint (introspect.go) knows every access token the
// provider issued or minted.
//
// Tests that need a token of their own choosing (expired, for another
// audience, unsigned, ...) mint it with MintAccessToken or
// MintOpaqueAccessToken rather than going through a sign-in.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Access token formats of Config.AccessTokenFormat.
const (
	// AccessTokenOpaque: random strings, which only the provider can
	// tell anything about (by introspection). The default.
	AccessTokenOpaque = "opaque"
	// AccessTokenJWT: JWT access tokens (RFC 9068), signed RS256 with the
	// current key and its kid, with typ at+jwt.
	AccessTokenJWT = "jwt"
)

// atJWTType is the typ header of JWT access tokens (RFC 9068 2.1).
const atJWTType = "at+jwt"

// accessTokenState is what the provider keeps for access tokens beyond the
// userinfo endpoint's needs. It is guarded by Provider.mu.
type accessTokenState struct {
	format string
	// audienceOfGrant is what a sign-in's authorization request asked the
	// access tokens to be for (resource, RFC 8707, or audience), by the
	// grant's sid.
	audienceOfGrant map[string][]string
	// known are the access tokens introspection answers for, by value.
	known map[string]*tokenRecord
	// introspection endpoint behaviour (introspect.go)
	introspection introspectionState
}

// tokenRecord is what the provider knows about an access token it issued
// or minted.
type tokenRecord struct {
	subject   string
	clientID  string
	scope     string
	audience  []string
	issuedAt  time.Time
	notBefore time.Time // zero if none
	expires   time.Time
	// claims are further members of the introspection answer: a JWT's
	// claims, or those a test gave an opaque token.
	claims  map[string]any
	revoked bool
}

// setUpAccessTokens checks the configuration and prepares the state; New
// calls it.
func (p *Provider) setUpAccessTokens() error {
	switch p.cfg.AccessTokenFormat {
	case "", AccessTokenOpaque:
		p.at.format = AccessTokenOpaque
	case AccessTokenJWT:
		p.at.format = AccessTokenJWT
	default:
		return fmt.Errorf("testop: access token format %q: want %q or %q", p.cfg.AccessTokenFormat, AccessTokenOpaque, AccessTokenJWT)
	}
	p.cfg.AccessTokenAudience = slices.Clone(p.cfg.AccessTokenAudience) // the caller may reuse its slice
	p.at.audienceOfGrant = map[string][]string{}
	p.at.known = map[string]*tokenRecord{}
	return nil
}

// SetAccessTokenFormat switches the format of the access tokens the token
// endpoint issues from now on: AccessTokenOpaque or AccessTokenJWT.
func (p *Provider) SetAccessTokenFormat(format string) error {
	if format != AccessTokenOpaque && format != AccessTokenJWT {
		return fmt.Errorf("testop: access token format %q: want %q or %q", format, AccessTokenOpaque, AccessTokenJWT)
	}
	p.mu.Lock()
	p.at.format = format
	p.mu.Unlock()
	return nil
}

// rememberAudienceLocked keeps what an authorization request asked the
// sign-in's access tokens to be for: its resource parameters (RFC 8707)
// and its audience parameter (space-separated, as Auth0 and Zitadel take
// it). p.mu must be held.
func (p *Provider) rememberAudienceLocked(sid string, params map[string][]string) {
	aud := slices.Clone(params["resource"])
	for _, a := range params["audience"] {
		aud = append(aud, strings.Fields(a)...)
	}
	if len(aud) > 0 {
		p.at.audienceOfGrant[sid] = aud
	}
}

// audienceLocked is what access tokens of the sign-in sid are for: what
// its authorization request asked for, else Config.AccessTokenAudience,
// else the client. p.mu must be held.
func (p *Provider) audienceLocked(sid string) []string {
	if aud, ok := p.at.audienceOfGrant[sid]; ok {
		return slices.Clone(aud)
	}
	if len(p.cfg.AccessTokenAudience) > 0 {
		return slices.Clone(p.cfg.AccessTokenAudience)
	}
	return []string{p.cfg.ClientID}
}

// newAccessToken makes the access token of a grant, in the configured
// format, and remembers it for introspection.
func (p *Provider) newAccessToken(g grant, scope string, ttl time.Duration) (string, error) {
	if tok, ok, err := p.profileAccessToken(g, scope, ttl); ok || err != nil {
		return tok, err
	}
	now := time.Now()
	p.mu.Lock()
	format := p.at.format
	rec := &tokenRecord{
		subject:  g.subject,
		clientID: g.clientID,
		scope:    scope,
		audience: p.audienceLocked(g.sid),
		issuedAt: now,
		expires:  now.Add(ttl),
	}
	userClaims := maps.Clone(p.claims)
	p.mu.Unlock()
	if format != AccessTokenJWT {
		tok := randomString(p.cfg.AccessTokenSize)
		p.remember(tok, rec, false)
		return tok, nil
	}
	// RFC 9068 2.2.3.1 lets identity claims in; like Keycloak's, these
	// carry the user's (groups, roles, email, ...).
	c := userClaims
	maps.Copy(c, rec.protocolClaims(p.issuer))
	c["auth_time"] = g.authTime.Unix()
	if p.cfg.MultiTenant {
		p.setTenant(c, p.grantTenant(g.sid, ""))
	}
	tok, err := p.signAccessToken(c, nil, AccessTokenValid, "")
	if err != nil {
		return "", err
	}
	rec.claims = c
	p.remember(tok, rec, false)
	return tok, nil
}

// protocolClaims are the claims RFC 9068 2.2 requires (and client_id and
// scope, which it names) of the token rec describes.
func (rec *tokenRecord) protocolClaims(issuer string) map[string]any {
	c := map[string]any{
		"iss":       issuer,
		"sub":       rec.subject,
		"client_id": rec.clientID,
		"iat":       rec.issuedAt.Unix(),
		"exp":       rec.expires.Unix(),
		"jti":       randomString(22),
	}
	if len(rec.audience) == 1 {
		c["aud"] = rec.audience[0]
	} else {
		c["aud"] = slices.Clone(rec.audience)
	}
	if rec.scope != "" {
		c["scope"] = rec.scope
	}
	if !rec.notBefore.IsZero() {
		c["nbf"] = rec.notBefore.Unix()
	}
	return c
}

// remember makes a token known to introspection; a minted one joins the
// issued tokens (the token endpoint's are added there by issueTokens).
func (p *Provider) remember(tok string, rec *tokenRecord, minted bool) {
	p.mu.Lock()
	p.at.known[tok] = rec
	if minted {
		p.issued = append(p.issued, tok)
	}
	p.mu.Unlock()
}

// RevokeAccessToken makes introspection answer that tok is not active.
func (p *Provider) RevokeAccessToken(tok string) {
	p.mu.Lock()
	if rec, ok := p.at.known[tok]; ok {
		rec.revoked = true
	}
	p.mu.Unlock()
}

// AccessTokenFault is what is wrong with a minted access token, on
// purpose.
type AccessTokenFault int

// The faults of minted access tokens.
const (
	// AccessTokenValid: nothing is wrong.
	AccessTokenValid AccessTokenFault = iota
	// AccessTokenExpired: exp lies an hour in the past (and iat before it).
	AccessTokenExpired
	// AccessTokenNotYetValid: nbf lies an hour in the future.
	AccessTokenNotYetValid
	// AccessTokenWrongIssuer: iss is another provider's.
	AccessTokenWrongIssuer
	// AccessTokenWrongAudience: aud names another resource only.
	AccessTokenWrongAudience
	// AccessTokenTypJWT: the typ header is "JWT", as ID tokens (and many
	// providers' access tokens) have it, not at+jwt.
	AccessTokenTypJWT
	// AccessTokenNoTyp: no typ header.
	AccessTokenNoTyp
	// AccessTokenAlgNone: unsigned, with "alg":"none".
	AccessTokenAlgNone
	// AccessTokenUnknownKid: signed with a key the JWKS never publishes,
	// under a kid nobody has seen.
	AccessTokenUnknownKid
	// AccessTokenBadSignature: the signature bytes are corrupted.
	AccessTokenBadSignature
	// AccessTokenHS256: HMAC-signed with the client secret.
	AccessTokenHS256
)

var accessTokenFaultNames = [...]string{
	AccessTokenValid:         "AccessTokenValid",
	AccessTokenExpired:       "AccessTokenExpired",
	AccessTokenNotYetValid:   "AccessTokenNotYetValid",
	AccessTokenWrongIssuer:   "AccessTokenWrongIssuer",
	AccessTokenWrongAudience: "AccessTokenWrongAudience",
	AccessTokenTypJWT:        "AccessTokenTypJWT",
	AccessTokenNoTyp:         "AccessTokenNoTyp",
	AccessTokenAlgNone:       "AccessTokenAlgNone",
	AccessTokenUnknownKid:    "AccessTokenUnknownKid",
	AccessTokenBadSignature:  "AccessTokenBadSignature",
	AccessTokenHS256:         "AccessTokenHS256",
}

// String returns the constant's name.
func (f AccessTokenFault) String() string {
	if f >= 0 && int(f) < len(accessTokenFaultNames) {
		return accessTokenFaultNames[f]
	}
	return fmt.Sprintf("AccessTokenFault(%d)", int(f))
}

// AccessTokenSpec describes an access token to mint. The zero value is a
// valid token of the configured subject and audience.
type AccessTokenSpec struct {
	// Subject is the sub claim. Default Config.Subject.
	Subject string
	// Audience is the aud claim (a string when it is one). Default
	// Config.AccessTokenAudience, else the client ID.
	Audience []string
	// ClientID is the client_id claim. Default Config.ClientID.
	ClientID string
	// Scope is the scope claim. Default "openid profile email".
	Scope string
	// TTL is the token's lifetime from now. Default Config.AccessTokenTTL
	// (as SetAccessTokenTTL last set it).
	TTL time.Duration
	// Claims are merged over the claims above and the protocol's (iss,
	// iat, exp, jti); a key mapped to nil removes that claim. For an
	// opaque token they are members of the introspection answer.
	Claims map[string]any
	// Typ is the typ header of a JWT. Default at+jwt.
	Typ string
	// Header are further JOSE header fields of a JWT (alg and kid are the
	// signer's).
	Header map[string]any
	// Fault is what is wrong with the token.
	Fault AccessTokenFault
}

// MintAccessToken signs a JWT access token (RFC 9068) as spec says, with
// the current key unless the fault says otherwise, and makes it known to
// introspection. Unlike the tokens the token endpoint issues, it carries
// no user claims but spec's.
func (p *Provider) MintAccessToken(spec AccessTokenSpec) (string, error) {
	rec, c := p.mintRecord(spec)
	typ := spec.Typ
	if typ == "" {
		typ = atJWTType
	}
	tok, err := p.signAccessToken(c, spec.Header, spec.Fault, typ)
	if err != nil {
		return "", err
	}
	rec.claims = c
	p.remember(tok, rec, true)
	return tok, nil
}

// MintOpaqueAccessToken makes an opaque access token known to
// introspection, as spec describes it (Typ, Header and the signature
// faults do not apply).
func (p *Provider) MintOpaqueAccessToken(spec AccessTokenSpec) string {
	rec, c := p.mintRecord(spec)
	rec.claims = c
	tok := randomString(p.cfg.AccessTokenSize)
	p.remember(tok, rec, true)
	return tok
}

// mintRecord is the record and the claims of a minted token.
func (p *Provider) mintRecord(spec AccessTokenSpec) (*tokenRecord, map[string]any) {
	now := time.Now()
	p.mu.Lock()
	ttl := p.tokenTTL
	aud := p.audienceLocked("")
	p.mu.Unlock()
	if spec.TTL > 0 {
		ttl = spec.TTL
	}
	if len(spec.Audience) > 0 {
		aud = slices.Clone(spec.Audience)
	}
	rec := &tokenRecord{
		subject:  orDefault(spec.Subject, p.cfg.Subject),
		clientID: orDefault(spec.ClientID, p.cfg.ClientID),
		scope:    orDefault(spec.Scope, "openid profile email"),
		audience: aud,
		issuedAt: now,
		expires:  now.Add(ttl),
	}
	switch spec.Fault {
	case AccessTokenExpired:
		rec.issuedAt = now.Add(-time.Hour - ttl)
		rec.expires = now.Add(-time.Hour)
	case AccessTokenNotYetValid:
		rec.notBefore = now.Add(time.Hour)
	case AccessTokenWrongAudience:
		rec.audience = []string{"https://another-api.example"}
	}
	c := rec.protocolClaims(p.issuer)
	if p.cfg.MultiTenant {
		p.setTenant(c, "")
	}
	if spec.Fault == AccessTokenWrongIssuer {
		c["iss"] = "https://wrong-issuer.example"
	}
	for k, v := range spec.Claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return rec, c
}

// signAccessToken signs the claims of an access token with typ (default
// at+jwt) and the extra header fields, doing what fault says is wrong.
func (p *Provider) signAccessToken(c map[string]any, header map[string]any, fault AccessTokenFault, typ string) (string, error) {
	if typ == "" {
		typ = atJWTType
	}
	switch fault {
	case AccessTokenTypJWT:
		typ = "JWT"
	case AccessTokenNoTyp:
		typ = ""
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("testop: encoding claims: %w", err)
	}
	p.mu.Lock()
	cur := p.current
	p.mu.Unlock()
	key := jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: cur.priv, KeyID: cur.kid}}
	switch fault {
	case AccessTokenAlgNone:
		return unsigned(payload, typ), nil
	case AccessTokenHS256:
		key = jose.SigningKey{Algorithm: jose.HS256, Key: hmacKey(p.cfg.ClientSecret)}
	case AccessTokenUnknownKid:
		rogue, err := p.extraKey(&p.rogue)
		if err != nil {
			return "", err
		}
		key.Key = jose.JSONWebKey{Key: rogue.priv, KeyID: "unpublished-" + randomString(22)}
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	for k, v := range header {
		if k == "alg" || k == "kid" || k == "typ" {
			return "", errors.New("testop: alg, kid and typ are not extra header fields")
		}
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	tok, err := signWithOptions(payload, key, opts)
	if err != nil {
		return "", err
	}
	if fault == AccessTokenBadSignature {
		tok = corruptSignature(tok)
	}
	return tok, nil
}
