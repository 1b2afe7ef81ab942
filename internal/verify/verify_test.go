package verify

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

const (
	issuer = "https://op.example"
	client = "client"
)

type fixture struct {
	t   *testing.T
	key *rsa.PrivateKey
	v   *Verifier
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, key: key, now: time.Unix(1_800_000_000, 0)}
	f.v = New(Config{Issuer: issuer, ClientID: client, Keys: &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&key.PublicKey}},
		Now: func() time.Time { return f.now }})
	return f
}

// sign signs claims (merged over a valid ID token's) with RS256.
func (f *fixture) sign(claims map[string]any, typ string) string {
	c := map[string]any{"iss": issuer, "sub": "user", "aud": client, "iat": f.now.Unix(), "exp": f.now.Add(time.Hour).Unix(), "nonce": "n"}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	payload, _ := json.Marshal(c)
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: f.key}, opts)
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

func atHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want refused for %s", reason)
	}
	if got := Reason(err); got != reason {
		t.Fatalf("refused for %q (%v), want %q", got, err, reason)
	}
	for _, leak := range []string{"oidc:", "go-jose", "failed to verify"} {
		if strings.Contains(err.Error(), leak) {
			t.Fatalf("the error %q names %q", err, leak)
		}
	}
}

// TestIDTokenChecksOfOpenIDConnectCore3137: every rule the package adds
// to go-oidc's, each refused with its reason.
func TestIDTokenChecksOfOpenIDConnectCore3137(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		claims map[string]any
		reason string
	}{
		{"several audiences, no azp", map[string]any{"aud": []string{client, "other"}}, "azp"},
		{"azp of another party", map[string]any{"azp": "other"}, "azp"},
		{"no iat", map[string]any{"iat": nil}, "iat"},
		{"iat in the future", map[string]any{"iat": f.now.Add(time.Hour).Unix()}, "iat"},
		{"no sub", map[string]any{"sub": nil}, "subject"},
		{"wrong nonce", map[string]any{"nonce": "other"}, "nonce"},
		{"no nonce", map[string]any{"nonce": nil}, "nonce"},
		{"at_hash of another token", map[string]any{"at_hash": atHash("other")}, "at_hash"},
		{"another issuer", map[string]any{"iss": "https://evil.example"}, "issuer"},
		{"another audience", map[string]any{"aud": "other"}, "audience"},
		{"expired", map[string]any{"exp": f.now.Add(-time.Minute).Unix()}, "expired"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.v.IDToken(ctx, f.sign(c.claims, ""), "access", "n")
			wantReason(t, err, c.reason)
		})
	}
	for name, claims := range map[string]map[string]any{
		"plain":                      nil,
		"several audiences with azp": {"aud": []string{client, "other"}, "azp": client},
		"at_hash of the token":       {"at_hash": atHash("access")},
	} {
		if _, err := f.v.IDToken(ctx, f.sign(claims, ""), "access", "n"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	_, err := f.v.IDToken(ctx, "", "access", "n")
	wantReason(t, err, "missing")
	_, err = f.v.IDToken(ctx, unsigned(`{"alg":"none"}`, `{}`), "access", "n")
	wantReason(t, err, "algorithm")
	_, err = f.v.IDToken(ctx, unsigned(`{"alg":"ES256","kid":"k"}`, `{}`), "access", "n")
	wantReason(t, err, "algorithm")
	if !strings.Contains(err.Error(), "ES256, which signing_algs does not allow (it allows RS256)") {
		t.Errorf("the algorithm error names neither the algorithm nor the option: %v", err)
	}
}

func unsigned(header, payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)) + "."
}

// TestRefreshedIDTokenKeepsTheSessionsIdentity: OpenID Connect Core 12.2.
func TestRefreshedIDTokenKeepsTheSessionsIdentity(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	authTime := f.now.Add(-time.Hour).Unix()
	firstClaims := map[string]any{"aud": []string{client, "other"}, "azp": client, "auth_time": authTime}
	first := f.sign(firstClaims, "")
	_, payload, _ := strings.Cut(first, ".")
	payload, _, _ = strings.Cut(payload, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(payload)
	original, err := IdentityOf(raw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.v.RefreshedIDToken(ctx, f.sign(merge(firstClaims, map[string]any{"nonce": nil}), ""), "access", original); err != nil {
		t.Fatalf("the same identity: %v", err)
	}
	for _, c := range []struct {
		name   string
		claims map[string]any
		reason string
	}{
		{"another subject", map[string]any{"sub": "other"}, "subject"},
		{"one audience fewer", map[string]any{"aud": client}, "audience"},
		{"no azp any more", map[string]any{"aud": client, "azp": nil}, "audience"},
		{"another auth_time", map[string]any{"auth_time": authTime + 1}, "auth_time"},
		{"no iat", map[string]any{"iat": nil}, "iat"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.v.RefreshedIDToken(ctx, f.sign(merge(firstClaims, c.claims), ""), "access", original)
			wantReason(t, err, c.reason)
		})
	}
	// azp alone: the original had one, the new one not (one audience each).
	single := Identity{Issuer: issuer, Subject: "user", Audience: []string{client}, AuthorizedParty: client}
	_, err = f.v.RefreshedIDToken(ctx, f.sign(nil, ""), "access", single)
	wantReason(t, err, "azp")
	// The session's issuer, not only the configured one.
	moved := single
	moved.Issuer, moved.AuthorizedParty = "https://old-op.example", ""
	_, err = f.v.RefreshedIDToken(ctx, f.sign(nil, ""), "access", moved)
	wantReason(t, err, "issuer")
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// TestLogoutTokenChecksOfBackChannelLogout26: typ, iat, and what go-oidc
// checks, with RememberUntil bounded by the iat rule.
func TestLogoutTokenChecksOfBackChannelLogout26(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	valid := map[string]any{"nonce": nil, "jti": "j", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	for _, c := range []struct {
		name   string
		claims map[string]any
		typ    string
		reason string
	}{
		{"typ JWT", nil, "JWT", "typ"},
		{"no iat", map[string]any{"iat": nil}, "logout+jwt", "iat"},
		{"iat too old", map[string]any{"iat": f.now.Add(-16 * time.Minute).Unix()}, "logout+jwt", "iat"},
		{"iat in the future", map[string]any{"iat": f.now.Add(6 * time.Minute).Unix()}, "logout+jwt", "iat"},
		{"no event", map[string]any{"events": nil}, "logout+jwt", "event"},
		{"a nonce", map[string]any{"nonce": "n"}, "logout+jwt", "nonce"},
		{"no jti", map[string]any{"jti": nil}, "logout+jwt", "jti"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.v.LogoutToken(ctx, f.sign(merge(valid, c.claims), c.typ))
			wantReason(t, err, c.reason)
		})
	}
	lt, err := f.v.LogoutToken(ctx, f.sign(valid, "logout+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	if want := f.now.Add(MaxLogoutTokenAge + MaxClockSkew); !lt.RememberUntil.Equal(want) {
		t.Errorf("RememberUntil %v, want %v (exp is later)", lt.RememberUntil, want)
	}
	lt, err = f.v.LogoutToken(ctx, f.sign(merge(valid, map[string]any{"exp": f.now.Add(time.Minute).Unix()}), ""))
	if err != nil {
		t.Fatal(err)
	}
	if want := f.now.Add(time.Minute); !lt.RememberUntil.Equal(want) {
		t.Errorf("RememberUntil %v, want the exp %v", lt.RememberUntil, want)
	}
}
