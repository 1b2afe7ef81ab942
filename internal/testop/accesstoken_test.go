package testop

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

func TestAccessTokensAreOpaqueByDefault(t *testing.T) {
	p := newOP(t, Config{})
	l := newRP(t, p).mustLogin(t)
	if strings.Count(l.token.AccessToken, ".") != 0 || len(l.token.AccessToken) != 64 {
		t.Errorf("access token %q is not a 64-character opaque string", l.token.AccessToken)
	}
	if !slices.Contains(p.IssuedTokens(), l.token.AccessToken) {
		t.Error("the access token is not among the issued tokens")
	}
}

func TestJWTAccessTokensFollowRFC9068(t *testing.T) {
	p := newOP(t, Config{
		AccessTokenFormat:   AccessTokenJWT,
		AccessTokenAudience: []string{"https://api.example"},
		Claims:              map[string]any{"groups": []string{"admins"}},
	})
	before := time.Now().Add(-time.Second)
	l := newRP(t, p).mustLogin(t)
	raw := l.token.AccessToken

	if h := jwtHeader(t, raw); h["typ"] != "at+jwt" || h["alg"] != "RS256" || h["kid"] == "" {
		t.Errorf("header %v, want typ at+jwt, RS256 and a kid", h)
	}
	c, err := verifyJWT(t, p, raw)
	if err != nil {
		t.Fatalf("the access token does not verify with the published key: %v", err)
	}
	for k, want := range map[string]any{
		"iss": p.Issuer(), "sub": "user-1", "aud": "https://api.example",
		"client_id": p.ClientID(), "scope": "openid email", "email": "alice@example.com",
	} {
		if c[k] != want {
			t.Errorf("%s = %v, want %v", k, c[k], want)
		}
	}
	if g, _ := c["groups"].([]any); len(g) != 1 || g[0] != "admins" {
		t.Errorf("groups = %v: the user's claims are not in the access token", c["groups"])
	}
	if jti, _ := c["jti"].(string); len(jti) < 16 {
		t.Errorf("jti = %v", c["jti"])
	}
	iat, exp := time.Unix(int64(c["iat"].(float64)), 0), time.Unix(int64(c["exp"].(float64)), 0)
	if iat.Before(before.Truncate(time.Second)) || exp.Sub(iat) != time.Hour {
		t.Errorf("iat %v, exp %v: want now and an hour later", iat, exp)
	}

	// The userinfo endpoint takes it like any access token.
	if resp, body := userinfo(t, p, raw); resp.StatusCode != 200 {
		t.Errorf("userinfo with the JWT access token: %d %s", resp.StatusCode, body)
	}
	// A refresh issues another one.
	fresh, _ := newRP(t, p).mustRefresh(t, l.token)
	if fresh.AccessToken == raw || jwtHeader(t, fresh.AccessToken)["typ"] != "at+jwt" {
		t.Error("the refresh did not issue a new JWT access token")
	}
}

func TestJWTAccessTokenAudienceFromTheAuthorizationRequest(t *testing.T) {
	p := newOP(t, Config{AccessTokenFormat: AccessTokenJWT, AccessTokenAudience: []string{"configured"}})
	r := newRP(t, p)
	for _, c := range []struct {
		name  string
		param []oauth2.AuthCodeOption
		want  any
	}{
		{"none asked: the configured one", nil, "configured"},
		{"resource (RFC 8707)", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("resource", "https://orders.example")}, "https://orders.example"},
		{"audience, space-separated", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("audience", "a b")}, []any{"a", "b"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			opts := append([]oauth2.AuthCodeOption{oidc.Nonce("n"), oauth2.S256ChallengeOption(verifier)}, c.param...)
			loc := r.mustAuthorize(t, r.conf.AuthCodeURL("s", opts...))
			tok, err := r.conf.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			got := jwtClaims(t, tok.AccessToken)["aud"]
			if !equalJSON(got, c.want) {
				t.Errorf("aud = %v, want %v", got, c.want)
			}
			// Its refreshes keep it.
			fresh, _ := r.mustRefresh(t, tok)
			if got := jwtClaims(t, fresh.AccessToken)["aud"]; !equalJSON(got, c.want) {
				t.Errorf("refreshed aud = %v, want %v", got, c.want)
			}
		})
	}
}

func equalJSON(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}

func TestSetAccessTokenFormat(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	if err := p.SetAccessTokenFormat(AccessTokenJWT); err != nil {
		t.Fatal(err)
	}
	if tok := r.mustLogin(t).token.AccessToken; strings.Count(tok, ".") != 2 {
		t.Errorf("after switching to JWT: %q", tok)
	}
	if err := p.SetAccessTokenFormat(AccessTokenOpaque); err != nil {
		t.Fatal(err)
	}
	if tok := r.mustLogin(t).token.AccessToken; strings.Contains(tok, ".") {
		t.Errorf("after switching back: %q", tok)
	}
	if err := p.SetAccessTokenFormat("paseto"); err == nil {
		t.Error("an unknown format was taken")
	}
	if _, err := New(Config{AccessTokenFormat: "paseto"}); err == nil {
		t.Error("New took an unknown format")
	}
}

func TestMintAccessToken(t *testing.T) {
	p := newOP(t, Config{AccessTokenAudience: []string{"https://api.example"}})
	raw, err := p.MintAccessToken(AccessTokenSpec{
		Subject: "svc-1", Scope: "orders:read",
		Claims: map[string]any{"roles": []string{"reader"}, "client_id": nil},
		Header: map[string]any{"x-test": "yes"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if h := jwtHeader(t, raw); h["typ"] != "at+jwt" || h["x-test"] != "yes" {
		t.Errorf("header %v", h)
	}
	c, err := verifyJWT(t, p, raw)
	if err != nil {
		t.Fatal(err)
	}
	if c["sub"] != "svc-1" || c["scope"] != "orders:read" || c["aud"] != "https://api.example" || c["iss"] != p.Issuer() {
		t.Errorf("claims %v", c)
	}
	if _, ok := c["client_id"]; ok {
		t.Error("a claim mapped to nil is still there")
	}
	if _, ok := c["email"]; ok {
		t.Error("a minted token carries the user's claims")
	}
	if !slices.Contains(p.IssuedTokens(), raw) {
		t.Error("a minted token is not among the issued tokens")
	}
}

func TestMintAccessTokenFaults(t *testing.T) {
	p := newOP(t, Config{})
	now := time.Now()
	for _, c := range []struct {
		fault AccessTokenFault
		check func(t *testing.T, raw string, h, claims map[string]any, verifyErr error)
	}{
		{AccessTokenValid, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if err != nil || h["typ"] != "at+jwt" {
				t.Errorf("valid: %v, header %v", err, h)
			}
		}},
		{AccessTokenExpired, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if exp := time.Unix(int64(c["exp"].(float64)), 0); err != nil || exp.After(now.Add(-59*time.Minute)) {
				t.Errorf("exp %v, want an hour ago (%v)", exp, err)
			}
		}},
		{AccessTokenNotYetValid, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if nbf, ok := c["nbf"].(float64); err != nil || !ok || time.Unix(int64(nbf), 0).Before(now.Add(59*time.Minute)) {
				t.Errorf("nbf %v, want in an hour (%v)", c["nbf"], err)
			}
		}},
		{AccessTokenWrongIssuer, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if err != nil || c["iss"] == p.Issuer() {
				t.Errorf("iss %v (%v)", c["iss"], err)
			}
		}},
		{AccessTokenWrongAudience, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if err != nil || c["aud"] == p.ClientID() {
				t.Errorf("aud %v (%v)", c["aud"], err)
			}
		}},
		{AccessTokenTypJWT, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if err != nil || h["typ"] != "JWT" {
				t.Errorf("typ %v (%v)", h["typ"], err)
			}
		}},
		{AccessTokenNoTyp, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if _, ok := h["typ"]; err != nil || ok {
				t.Errorf("typ %v (%v)", h["typ"], err)
			}
		}},
		{AccessTokenAlgNone, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if h["alg"] != "none" || !strings.HasSuffix(raw, ".") || err == nil {
				t.Errorf("header %v, token %q", h, raw)
			}
		}},
		{AccessTokenUnknownKid, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if kid, _ := h["kid"].(string); err == nil || !strings.HasPrefix(kid, "unpublished-") {
				t.Errorf("kid %v verified: %v", h["kid"], err)
			}
		}},
		{AccessTokenBadSignature, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if err == nil {
				t.Error("a corrupted signature verifies")
			}
		}},
		{AccessTokenHS256, func(t *testing.T, raw string, h, c map[string]any, err error) {
			if h["alg"] != "HS256" {
				t.Errorf("alg %v", h["alg"])
			}
		}},
	} {
		t.Run(c.fault.String(), func(t *testing.T) {
			raw, err := p.MintAccessToken(AccessTokenSpec{Fault: c.fault})
			if err != nil {
				t.Fatal(err)
			}
			_, verr := verifyJWT(t, p, raw)
			c.check(t, raw, jwtHeader(t, raw), jwtClaims(t, raw), verr)
		})
	}
	if s := AccessTokenFault(99).String(); s != "AccessTokenFault(99)" {
		t.Errorf("String of an unknown fault: %q", s)
	}
	if _, err := p.MintAccessToken(AccessTokenSpec{Header: map[string]any{"kid": "x"}}); err == nil {
		t.Error("a kid in Header was taken")
	}
}
