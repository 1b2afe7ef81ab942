package verify

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/oidcgate/caddy-oidc/internal/keyset"
)

const api = "https://api.example"

// signAccess signs claims merged over a valid access token's (RFC 9068
// 2.2) with key, and the typ header (none if empty).
func (f *fixture) signAccess(claims map[string]any, typ string, key *rsa.PrivateKey) string {
	c := map[string]any{
		"iss": issuer, "sub": "user", "aud": api, "client_id": client,
		"iat": f.now.Unix(), "exp": f.now.Add(time.Hour).Unix(), "jti": "j1",
		"scope": "openid orders:read",
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	payload, _ := json.Marshal(c)
	return f.signPayload(payload, typ, key)
}

func (f *fixture) signPayload(payload []byte, typ string, key *rsa.PrivateKey) string {
	if key == nil {
		key = f.key
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		f.t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

var apiRules = AccessTokenRules{Audiences: []string{api}}

// TestAccessTokenChecksOfRFC9068: every reason an access token is
// refused for.
func TestAccessTokenChecksOfRFC9068(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	valid := f.signAccess(nil, "at+jwt", nil)
	corrupted := valid[:len(valid)-8] + strings.Repeat("A", 8)
	enc := base64.RawURLEncoding
	hs256 := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt"}`)) + "." + strings.Split(valid, ".")[1] + "." + enc.EncodeToString([]byte("mac"))

	cases := []struct {
		name   string
		raw    string
		rules  AccessTokenRules
		reason string
	}{
		{"not a JWT", "opaque-token", apiRules, "malformed"},
		{"a header that is not JSON", enc.EncodeToString([]byte("{")) + ".e30.sig", apiRules, "malformed"},
		{"alg none", unsigned(`{"alg":"none","typ":"at+jwt"}`, strings.Split(valid, ".")[1]), apiRules, "algorithm"},
		{"HS256, keyed with a shared secret", hs256, apiRules, "algorithm"},
		{"typ JWT where at+jwt is required", f.signAccess(nil, "JWT", nil), AccessTokenRules{Audiences: []string{api}, RequireTyp: true}, "typ"},
		{"no typ where at+jwt is required", f.signAccess(nil, "", nil), AccessTokenRules{Audiences: []string{api}, RequireTyp: true}, "typ"},
		{"signed with another key", f.signAccess(nil, "at+jwt", other), apiRules, "signature"},
		{"a corrupted signature", corrupted, apiRules, "signature"},
		{"claims that are not an object", f.signPayload([]byte(`["a"]`), "at+jwt", nil), apiRules, "malformed"},
		{"another issuer", f.signAccess(map[string]any{"iss": "https://evil.example"}, "at+jwt", nil), apiRules, "issuer"},
		{"no exp", f.signAccess(map[string]any{"exp": nil}, "at+jwt", nil), apiRules, "expired"},
		{"expired", f.signAccess(map[string]any{"exp": f.now.Add(-time.Second).Unix()}, "at+jwt", nil), apiRules, "expired"},
		{"expiring this second", f.signAccess(map[string]any{"exp": f.now.Unix()}, "at+jwt", nil), apiRules, "expired"},
		{"nbf past the leeway", f.signAccess(map[string]any{"nbf": f.now.Add(nbfLeeway + time.Second).Unix()}, "at+jwt", nil), apiRules, "nbf"},
		{"nbf not a number", f.signAccess(map[string]any{"nbf": "soon"}, "at+jwt", nil), apiRules, "malformed"},
		{"another audience", f.signAccess(map[string]any{"aud": "https://other.example"}, "at+jwt", nil), apiRules, "audience"},
		{"other audiences", f.signAccess(map[string]any{"aud": []string{"a", "b"}}, "at+jwt", nil), apiRules, "audience"},
		{"no aud", f.signAccess(map[string]any{"aud": nil}, "at+jwt", nil), apiRules, "audience"},
		{"an aud that is a number", f.signAccess(map[string]any{"aud": 7}, "at+jwt", nil), apiRules, "audience"},
		{"no audience configured", valid, AccessTokenRules{}, "audience"},
		{"no sub", f.signAccess(map[string]any{"sub": nil}, "at+jwt", nil), apiRules, "subject"},
		{"a scope not granted", valid, AccessTokenRules{Audiences: []string{api}, Scopes: []string{"orders:write"}}, "scope"},
		{"a scope of another name", f.signAccess(map[string]any{"scope": "orders:readx"}, "at+jwt", nil), AccessTokenRules{Audiences: []string{api}, Scopes: []string{"orders:read"}}, "scope"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			at, err := f.v.AccessToken(ctx, c.raw, c.rules)
			if at != nil {
				t.Errorf("got a token with the error")
			}
			wantReason(t, err, c.reason)
		})
	}
}

func TestAccessTokenAccepted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		claims map[string]any
		typ    string
		rules  AccessTokenRules
		scopes []string
	}{
		{"typ at+jwt required", nil, "at+jwt", AccessTokenRules{Audiences: []string{api}, RequireTyp: true, Scopes: []string{"orders:read"}}, []string{"openid", "orders:read"}},
		{"typ application/at+jwt", nil, "application/at+jwt", AccessTokenRules{Audiences: []string{api}, RequireTyp: true}, []string{"openid", "orders:read"}},
		{"typ JWT when not required", nil, "JWT", apiRules, []string{"openid", "orders:read"}},
		{"one of several audiences", map[string]any{"aud": []string{"x", api}}, "at+jwt", AccessTokenRules{Audiences: []string{"y", api}}, []string{"openid", "orders:read"}},
		{"scp as an array (Entra ID, Okta)", map[string]any{"scope": nil, "scp": []string{"orders:read", "orders:write"}}, "", AccessTokenRules{Audiences: []string{api}, Scopes: []string{"orders:write"}}, []string{"orders:read", "orders:write"}},
		{"nbf within the leeway", map[string]any{"nbf": f.now.Add(nbfLeeway).Unix()}, "", apiRules, []string{"openid", "orders:read"}},
		{"exp with a fraction", map[string]any{"exp": float64(f.now.Add(time.Hour).Unix()) + 0.5}, "", apiRules, []string{"openid", "orders:read"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			at, err := f.v.AccessToken(ctx, f.signAccess(c.claims, c.typ, nil), c.rules)
			if err != nil {
				t.Fatalf("refused: %v (%s)", err, Reason(err))
			}
			if at.Subject != "user" || !at.Expiry.Equal(f.now.Add(time.Hour)) || strings.Join(at.Scopes, " ") != strings.Join(c.scopes, " ") {
				t.Errorf("subject %q, expiry %v, scopes %v", at.Subject, at.Expiry, at.Scopes)
			}
			if at.Claims["client_id"] != client || !strings.Contains(string(at.ClaimsJSON), `"jti":"j1"`) {
				t.Errorf("claims %v, JSON %s", at.Claims, at.ClaimsJSON)
			}
		})
	}
}

// unavailableKeys is a key set whose provider cannot be reached.
type unavailableKeys struct{ err error }

func (u unavailableKeys) VerifySignature(context.Context, string) ([]byte, error) { return nil, u.err }

// TestAccessTokenWhileTheKeysCannotBeFetched: keys that cannot be had are
// not the token's fault, and say so with their own reason, which callers
// answer with 503 rather than 401.
func TestAccessTokenWhileTheKeysCannotBeFetched(t *testing.T) {
	f := newFixture(t)
	raw := f.signAccess(nil, "at+jwt", nil)
	for name, err := range map[string]error{
		"fetch failed":     keyset.ErrUnavailable,
		"deadline reached": context.DeadlineExceeded,
	} {
		v := New(Config{Issuer: issuer, ClientID: client, Keys: unavailableKeys{err}, Now: func() time.Time { return f.now }})
		_, got := v.AccessToken(context.Background(), raw, apiRules)
		if Reason(got) != "keys_unavailable" {
			t.Errorf("%s: reason %q (%v), want keys_unavailable", name, Reason(got), got)
		}
	}
	v := New(Config{Issuer: issuer, ClientID: client, Keys: unavailableKeys{keyset.ErrNoKey}, Now: func() time.Time { return f.now }})
	if _, err := v.AccessToken(context.Background(), raw, apiRules); Reason(err) != "signature" {
		t.Errorf("no fitting key: reason %q, want signature", Reason(err))
	}
}

// TestAccessTokenOfAMultiTenantProvider: the issuer is the token's
// tenant's, and the tenant admitted.
func TestAccessTokenOfAMultiTenantProvider(t *testing.T) {
	f := newFixture(t)
	f.multiTenant(tenantA)
	ctx := context.Background()
	if _, err := f.v.AccessToken(ctx, f.signAccess(map[string]any{"iss": tenantIssuer(tenantA), "tid": tenantA}, "", nil), apiRules); err != nil {
		t.Fatalf("a token of tenant A: %v", err)
	}
	_, err := f.v.AccessToken(ctx, f.signAccess(map[string]any{"iss": tenantIssuer(tenantB), "tid": tenantB}, "", nil), apiRules)
	wantReason(t, err, "tenant")
	_, err = f.v.AccessToken(ctx, f.signAccess(map[string]any{"iss": tenantIssuer(tenantB), "tid": tenantA}, "", nil), apiRules)
	wantReason(t, err, "issuer")
}
