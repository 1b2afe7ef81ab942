// Package verify checks the tokens an OpenID provider issues to a relying
// party: ID tokens at sign-in (OpenID Connect Core 3.1.3.7) and after a
// refresh (12.2), and back-channel logout tokens (Back-Channel Logout 1.0,
// 2.6). Signatures and the standard claims are checked by go-oidc with a
// key set that follows the provider's key rotation (package keyset); this
// package adds the rules go-oidc leaves to its callers.
//
// Every error is an *Error whose text names the rule that failed and no
// URL, key or token: it may be shown on an error page.
package verify

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// Defaults.
const (
	// MaxClockSkew is how far in the future an iat may lie.
	MaxClockSkew = 5 * time.Minute
	// MaxLogoutTokenAge is how old a logout token's iat may be. Providers
	// send logout tokens as the session ends; an old one is a replay.
	MaxLogoutTokenAge = 10 * time.Minute
)

// Asymmetric are the JWS algorithms that may be configured. "none" and
// the HMAC algorithms (keyed with the client secret, which the relying
// party shares with the provider) are never among them.
var Asymmetric = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.EdDSA,
}

// Error is a refused token: Reason is a short, stable name of the rule
// (for logs and metrics), Error the sentence for people.
type Error struct {
	Reason string
	msg    string
}

func (e *Error) Error() string { return e.msg }

func refuse(reason, format string, args ...any) error {
	return &Error{Reason: reason, msg: fmt.Sprintf(format, args...)}
}

// Reason returns the reason of a refused token, or "" for other errors.
func Reason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Verifier checks the tokens of one provider for one client.
type Verifier struct {
	issuer   string
	template string   // a multi-tenant issuer, with {tenantid}; "" if none
	tenants  []string // the tenants admitted with template; "*" for every one
	clientID string
	algs     []string
	option   string // the configuration option that sets algs, for messages
	keys     oidc.KeySet
	oidc     *oidc.IDTokenVerifier
	now      func() time.Time
}

// Config configures a Verifier.
type Config struct {
	// Issuer is the provider's issuer, exactly as tokens carry it, unless
	// IssuerTemplate is set.
	Issuer string
	// IssuerTemplate is a multi-tenant provider's issuer with "{tenantid}"
	// for the tenant (Microsoft Entra ID's `/common/v2.0`): a token's iss
	// must be the template with its own tid, and tid one of Tenants ("*":
	// any).
	IssuerTemplate string
	Tenants        []string
	// ClientID is the relying party's client ID: the audience tokens must
	// be for.
	ClientID string
	// Algorithms are the JWS algorithms tokens may be signed with; default
	// RS256, the OpenID default for a client that registered none.
	Algorithms []string
	// AlgorithmsOption names the setting that chooses Algorithms, for the
	// error that refuses another algorithm. Default "signing_algs".
	AlgorithmsOption string
	// Keys verifies signatures (a *keyset.Set).
	Keys oidc.KeySet
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// New returns a Verifier.
func New(cfg Config) *Verifier {
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{oidc.RS256}
	}
	if cfg.AlgorithmsOption == "" {
		cfg.AlgorithmsOption = "signing_algs"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{
		issuer:   cfg.Issuer,
		template: cfg.IssuerTemplate,
		tenants:  cfg.Tenants,
		clientID: cfg.ClientID,
		algs:     cfg.Algorithms,
		option:   cfg.AlgorithmsOption,
		keys:     cfg.Keys,
		now:      cfg.Now,
		oidc: oidc.NewVerifier(cfg.Issuer, cfg.Keys, &oidc.Config{
			ClientID:             cfg.ClientID,
			SupportedSigningAlgs: cfg.Algorithms,
			Now:                  cfg.Now,
			// A multi-tenant issuer is checked here, against the token's tid.
			SkipIssuerCheck: cfg.IssuerTemplate != "",
		}),
	}
}

// header is what a JWT's header must say before its signature is checked.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// checkHeader refuses an unsigned token and one signed with an algorithm
// the configuration does not allow, with an error that names both.
func (v *Verifier) checkHeader(raw string) (header, error) {
	var h header
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return h, refuse("malformed", "the token is not a compact JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil || json.Unmarshal(b, &h) != nil {
		return h, refuse("malformed", "the token's header is not base64url JSON")
	}
	switch {
	case h.Alg == "" || strings.EqualFold(h.Alg, "none"):
		return h, refuse("algorithm", `the token is unsigned (alg "none")`)
	case !slices.Contains(v.algs, h.Alg):
		return h, refuse("algorithm", "the token is signed with algorithm %s, which %s does not allow (it allows %s)",
			truncate(h.Alg, 20), v.option, strings.Join(v.algs, ", "))
	}
	return h, nil
}

// IDToken is a verified ID token.
type IDToken struct {
	*oidc.IDToken
	// Raw is the compact JWT.
	Raw string
	// AuthorizedParty is the azp claim, if any.
	AuthorizedParty string
	// AuthTime is the auth_time claim, if any.
	AuthTime time.Time
	// SessionID is the sid claim, if any.
	SessionID string
}

type idClaims struct {
	TID      string          `json:"tid"`
	AZP      string          `json:"azp"`
	AuthTime *json.Number    `json:"auth_time"`
	SID      string          `json:"sid"`
	Nonce    json.RawMessage `json:"nonce"`
}

// IDToken verifies the ID token of a sign-in (OpenID Connect Core
// 3.1.3.7): signature with an allowed algorithm and a key of the
// provider's, iss, aud, exp (go-oidc), and here: azp when there are
// several audiences, or when present; iat present and not in the future;
// nonce equal to the sign-in's (it binds the token to this browser's login
// attempt, against injected tokens); at_hash when present (it binds the
// access token to the ID token); a sub.
func (v *Verifier) IDToken(ctx context.Context, raw, accessToken, nonce string) (*IDToken, error) {
	t, err := v.idToken(ctx, raw, accessToken)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(t.Nonce), []byte(nonce)) != 1 {
		return nil, refuse("nonce", "the nonce does not match this sign-in")
	}
	return t, nil
}

// Identity is what a refreshed ID token must keep of the session's first:
// who issued it about whom, for which parties, and when the user
// authenticated.
type Identity struct {
	Issuer          string
	Subject         string
	Audience        []string
	AuthorizedParty string
	AuthTime        time.Time
}

// IdentityOf reads an Identity from an ID token's payload.
func IdentityOf(payload []byte) (Identity, error) {
	var c struct {
		Iss      string          `json:"iss"`
		Sub      string          `json:"sub"`
		Aud      json.RawMessage `json:"aud"`
		AZP      string          `json:"azp"`
		AuthTime *json.Number    `json:"auth_time"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return Identity{}, err
	}
	id := Identity{Issuer: c.Iss, Subject: c.Sub, AuthorizedParty: c.AZP}
	var one string
	if err := json.Unmarshal(c.Aud, &one); err == nil {
		id.Audience = []string{one}
	} else if err := json.Unmarshal(c.Aud, &id.Audience); err != nil {
		return Identity{}, errors.New("aud is neither a string nor an array of strings")
	}
	if c.AuthTime != nil {
		if sec, err := c.AuthTime.Int64(); err == nil {
			id.AuthTime = time.Unix(sec, 0)
		}
	}
	return id, nil
}

// RefreshedIDToken verifies an ID token that a refresh returned (OpenID
// Connect Core 12.2): the sign-in's checks but the nonce, and iss, sub,
// aud and azp as in the original token; auth_time, when both have it,
// unchanged.
func (v *Verifier) RefreshedIDToken(ctx context.Context, raw, accessToken string, original Identity) (*IDToken, error) {
	t, err := v.idToken(ctx, raw, accessToken)
	if err != nil {
		return nil, err
	}
	switch {
	case t.Issuer != original.Issuer:
		return nil, refuse("issuer", "the refreshed ID token's issuer differs from the session's")
	case t.Subject != original.Subject:
		return nil, refuse("subject", "the refreshed ID token is about another subject")
	case !sameSet(t.Audience, original.Audience):
		return nil, refuse("audience", "the refreshed ID token's audience differs from the session's")
	case t.AuthorizedParty != original.AuthorizedParty:
		return nil, refuse("azp", "the refreshed ID token's azp differs from the session's")
	case !t.AuthTime.IsZero() && !original.AuthTime.IsZero() && !t.AuthTime.Equal(original.AuthTime):
		return nil, refuse("auth_time", "the refreshed ID token's auth_time differs from the session's")
	}
	return t, nil
}

func (v *Verifier) idToken(ctx context.Context, raw, accessToken string) (*IDToken, error) {
	if raw == "" {
		return nil, refuse("missing", "the token response has no id_token")
	}
	if _, err := v.checkHeader(raw); err != nil {
		return nil, err
	}
	idt, err := v.oidc.Verify(ctx, raw)
	if err != nil {
		return nil, fromOIDC(err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		return nil, refuse("malformed", "the token's claims are not valid JSON")
	}
	if err := v.checkTenant(idt.Issuer, c.TID); err != nil {
		return nil, err
	}
	t := &IDToken{IDToken: idt, Raw: raw, AuthorizedParty: c.AZP, SessionID: c.SID}
	if c.AuthTime != nil {
		if sec, err := c.AuthTime.Int64(); err == nil {
			t.AuthTime = time.Unix(sec, 0)
		}
	}
	switch {
	case len(idt.Audience) > 1 && c.AZP == "":
		return nil, refuse("azp", "the token has several audiences but no azp claim")
	case c.AZP != "" && c.AZP != v.clientID:
		return nil, refuse("azp", "azp %q is not this client", truncate(c.AZP, 100))
	case idt.IssuedAt.IsZero():
		return nil, refuse("iat", "the token has no iat claim")
	case idt.IssuedAt.After(v.now().Add(MaxClockSkew)):
		return nil, refuse("iat", "the token was issued in the future (iat %s)", idt.IssuedAt.UTC().Format(time.RFC3339))
	case idt.Subject == "":
		return nil, refuse("subject", "the token has no sub claim")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(accessToken); err != nil {
			return nil, refuse("at_hash", "at_hash does not match the access token")
		}
	}
	return t, nil
}

// LogoutToken is a verified back-channel logout token.
type LogoutToken struct {
	*oidc.LogoutToken
	// RememberUntil is how long its jti must be remembered to refuse a
	// replay: until it expires, or can no longer pass the iat check.
	RememberUntil time.Time
}

// LogoutToken verifies a back-channel logout token (Back-Channel Logout
// 1.0, 2.6): typ, when present, logout+jwt (so that no other JWT of the
// provider's passes for one); signature with an allowed algorithm, iss,
// aud, exp, the back-channel logout event, no nonce, a jti, a sub or a sid
// (go-oidc); and here iat present and recent. That the jti was not seen
// before is the caller's to check, until RememberUntil.
func (v *Verifier) LogoutToken(ctx context.Context, raw string) (*LogoutToken, error) {
	h, err := v.checkHeader(raw)
	if err != nil {
		return nil, err
	}
	if h.Typ != "" && !strings.EqualFold(strings.TrimPrefix(strings.ToLower(h.Typ), "application/"), "logout+jwt") {
		return nil, refuse("typ", "the token's typ is %q, not logout+jwt", truncate(h.Typ, 40))
	}
	lt, err := v.oidc.VerifyLogout(ctx, raw)
	if err != nil {
		return nil, fromOIDC(err)
	}
	var tc struct {
		TID string `json:"tid"`
	}
	_ = lt.Claims(&tc)
	if err := v.checkTenant(lt.Issuer, tc.TID); err != nil {
		return nil, err
	}
	now := v.now()
	switch {
	case lt.IssuedAt.IsZero():
		return nil, refuse("iat", "the logout token has no iat claim")
	case lt.IssuedAt.After(now.Add(MaxClockSkew)):
		return nil, refuse("iat", "the logout token was issued in the future")
	case lt.IssuedAt.Before(now.Add(-MaxLogoutTokenAge - MaxClockSkew)):
		return nil, refuse("iat", "the logout token is too old")
	}
	until := lt.IssuedAt.Add(MaxLogoutTokenAge + MaxClockSkew)
	if lt.Expiry.Before(until) {
		until = lt.Expiry
	}
	return &LogoutToken{LogoutToken: lt, RememberUntil: until}, nil
}

// checkTenant checks a multi-tenant issuer: iss must be the template with
// the token's own tid, and the tenant admitted. go-oidc has checked iss
// against the configured issuer otherwise.
func (v *Verifier) checkTenant(iss, tid string) error {
	if v.template == "" {
		return nil
	}
	if tid == "" || strings.ContainsAny(tid, "/{}") {
		return refuse("issuer", "the token of a multi-tenant provider has no tid")
	}
	if iss != strings.ReplaceAll(v.template, "{tenantid}", tid) {
		return refuse("issuer", "the token's issuer %q is not its tenant's", truncate(iss, 200))
	}
	if !slices.Contains(v.tenants, "*") && !slices.Contains(v.tenants, tid) {
		return refuse("tenant", "tenant %q is not admitted", truncate(tid, 100))
	}
	return nil
}

// IssuerOfTenant reports whether iss is a multi-tenant provider's issuer
// for an admitted tenant (front-channel logout names the issuer alone).
func (v *Verifier) IssuerOfTenant(iss string) bool {
	if v.template == "" {
		return false
	}
	prefix, suffix, ok := strings.Cut(v.template, "{tenantid}")
	if !ok || !strings.HasPrefix(iss, prefix) || !strings.HasSuffix(iss, suffix) || len(iss) < len(prefix)+len(suffix) {
		return false
	}
	return v.checkTenant(iss, iss[len(prefix):len(iss)-len(suffix)]) == nil
}

// SignedUserinfo verifies a userinfo response the provider signed (OpenID
// Connect Core 5.3.2): the signature with an allowed algorithm, and iss and
// aud when present. It returns the claims.
func (v *Verifier) SignedUserinfo(ctx context.Context, raw string) ([]byte, error) {
	if _, err := v.checkHeader(raw); err != nil {
		return nil, err
	}
	payload, err := v.keys.VerifySignature(ctx, raw)
	if err != nil {
		return nil, refuse("signature", "%s", err.Error())
	}
	var c struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		TID string          `json:"tid"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, refuse("malformed", "the signed userinfo's claims are not a JSON object")
	}
	if c.Iss != "" {
		if v.template != "" {
			if err := v.checkTenant(c.Iss, c.TID); err != nil {
				return nil, err
			}
		} else if c.Iss != v.issuer {
			return nil, refuse("issuer", "the signed userinfo's issuer %q is not the provider's", truncate(c.Iss, 200))
		}
	}
	if len(c.Aud) > 0 {
		var one string
		var many []string
		if json.Unmarshal(c.Aud, &one) == nil {
			many = []string{one}
		} else if json.Unmarshal(c.Aud, &many) != nil {
			return nil, refuse("audience", "the signed userinfo's aud is neither a string nor strings")
		}
		if !slices.Contains(many, v.clientID) {
			return nil, refuse("audience", "the signed userinfo is not for this client")
		}
	}
	return payload, nil
}

// SignedBy verifies a JWT the provider signed (an aggregated or
// distributed claims source, OpenID Connect Core 5.6.2): signature and
// algorithm, and an iss, when present, of the provider's. It returns the
// claims.
func (v *Verifier) SignedBy(ctx context.Context, raw string) ([]byte, error) {
	return v.SignedUserinfo(ctx, raw)
}

// fromOIDC turns go-oidc's errors into refusals with a reason, keeping
// their wording (which names claims, never keys or URLs) but its prefix.
func fromOIDC(err error) error {
	var expired *oidc.TokenExpiredError
	if errors.As(err, &expired) {
		return refuse("expired", "the token expired at %s", expired.Expiry.UTC().Format(time.RFC3339))
	}
	msg := err.Error()
	reason := "invalid"
	switch {
	case strings.Contains(msg, "failed to verify signature: "):
		// The key set's own errors, which name no URL or key material.
		_, msg, _ = strings.Cut(msg, "failed to verify signature: ")
		reason = "signature"
		if strings.Contains(msg, "could not be fetched") {
			reason = "keys_unavailable"
		}
	case strings.Contains(msg, "different provider"):
		reason = "issuer"
	case strings.Contains(msg, "audience"):
		reason = "audience"
	case strings.Contains(msg, "malformed jwt"):
		reason = "malformed"
		msg = "the token is not a signed JWT"
	case strings.Contains(msg, "nonce"):
		reason = "nonce"
	case strings.Contains(msg, "event"):
		reason = "event"
	case strings.Contains(msg, "jti"):
		reason = "jti"
	}
	return refuse(reason, "%s", truncate(strings.TrimPrefix(msg, "oidc: "), 300))
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
