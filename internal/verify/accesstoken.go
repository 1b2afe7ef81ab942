package verify

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/claims"
	"github.com/oidcgate/caddy-oidc/internal/keyset"
)

// AccessTokenRules are what a resource server asks of the JWT access
// tokens it accepts.
type AccessTokenRules struct {
	// Audiences: the token's aud must contain one of these (RFC 9068 4:
	// the resource server's own identifier). Required: without it, a token
	// the provider issued for any other API would do.
	Audiences []string
	// RequireTyp: the token's typ header must be at+jwt (RFC 9068 2.1),
	// which tells an access token from an ID token and other JWTs of the
	// provider.
	RequireTyp bool
	// Scopes: the token must grant every one of these (its scope claim,
	// or scp as some providers name it).
	Scopes []string
}

// AccessToken is a verified JWT access token.
type AccessToken struct {
	Subject string
	Expiry  time.Time
	Scopes  []string
	// Claims are the token's claims; ClaimsJSON the payload.
	Claims     map[string]any
	ClaimsJSON []byte
}

// nbfLeeway is how far in the future a not-before may lie.
const nbfLeeway = time.Minute

// AccessToken verifies a JWT access token (RFC 9068 4): the signature with
// an allowed algorithm and a key of the provider's, typ when required, iss,
// exp (required) and nbf, an aud of the resource server, sub, and the
// required scopes.
func (v *Verifier) AccessToken(ctx context.Context, raw string, r AccessTokenRules) (*AccessToken, error) {
	h, err := v.checkHeader(raw)
	if err != nil {
		return nil, err
	}
	if r.RequireTyp && !strings.EqualFold(strings.TrimPrefix(strings.ToLower(h.Typ), "application/"), "at+jwt") {
		return nil, refuse("typ", "the token's typ is %q, not at+jwt", truncate(h.Typ, 40))
	}
	payload, err := v.keys.VerifySignature(ctx, raw)
	switch {
	case errors.Is(err, keyset.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The provider's trouble, not the token's: the caller answers
		// 503, and the client may try again with the same token.
		return nil, refuse("keys_unavailable", "%s", keyset.ErrUnavailable.Error())
	case err != nil:
		return nil, refuse("signature", "%s", err.Error())
	}
	m, err := claims.Decode(payload)
	if err != nil {
		return nil, refuse("malformed", "the token's claims are not a JSON object")
	}
	var c struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp json.Number     `json:"exp"`
		Nbf json.Number     `json:"nbf"`
		TID string          `json:"tid"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, refuse("malformed", "the token's claims are not valid")
	}
	now := v.now()
	switch {
	case v.template != "":
		if err := v.checkTenant(c.Iss, c.TID); err != nil {
			return nil, err
		}
	case c.Iss != v.issuer:
		return nil, refuse("issuer", "the token was issued by %q, not the provider", truncate(c.Iss, 200))
	}
	expiry, ok := numericDate(c.Exp)
	if !ok {
		return nil, refuse("expired", "the token has no exp claim")
	}
	if !now.Before(expiry) {
		return nil, refuse("expired", "the token expired at %s", expiry.UTC().Format(time.RFC3339))
	}
	if c.Nbf != "" {
		if nbf, ok := numericDate(c.Nbf); !ok || now.Add(nbfLeeway).Before(nbf) {
			return nil, refuse("nbf", "the token is not valid yet")
		}
	}
	if len(r.Audiences) == 0 || !anyAudience(c.Aud, r.Audiences) {
		return nil, refuse("audience", "the token is not for this resource")
	}
	if c.Sub == "" {
		return nil, refuse("subject", "the token has no sub claim")
	}
	granted := Scopes(m)
	for _, want := range r.Scopes {
		if !slices.Contains(granted, want) {
			return nil, refuse("scope", "the token does not grant scope %q", truncate(want, 100))
		}
	}
	return &AccessToken{Subject: c.Sub, Expiry: expiry, Scopes: granted, Claims: m, ClaimsJSON: payload}, nil
}

// numericDate reads a NumericDate (RFC 7519 2), which may have a
// fraction; ok is false for none, or one not after 1970.
func numericDate(n json.Number) (t time.Time, ok bool) {
	if sec, err := n.Int64(); err == nil {
		return time.Unix(sec, 0), sec > 0
	}
	f, err := n.Float64()
	if err != nil || f <= 0 || f > math.MaxInt64/2 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// Scopes are the scopes a token or an introspection answer grants: its
// scope claim (space-separated, RFC 8693 4.2), or scp, as a string or an
// array (Microsoft Entra ID, Okta).
func Scopes(m map[string]any) []string {
	var out []string
	for _, name := range []string{"scope", "scp"} {
		switch v := m[name].(type) {
		case string:
			out = append(out, strings.Fields(v)...)
		case []any:
			for _, e := range v {
				if s, ok := e.(string); ok {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

func anyAudience(raw json.RawMessage, want []string) bool {
	var one string
	var many []string
	if json.Unmarshal(raw, &one) == nil {
		many = []string{one}
	} else if json.Unmarshal(raw, &many) != nil {
		return false
	}
	for _, a := range many {
		if slices.Contains(want, a) {
			return true
		}
	}
	return false
}
