package testop

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// rp is a minimal relying party built from go-oidc and x/oauth2, the same
// libraries the plugin uses.
type rp struct {
	op       *Provider
	conf     oauth2.Config
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	noFollow *http.Client
}

func newOP(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func newRP(t *testing.T, p *Provider) *rp {
	t.Helper()
	prov, err := oidc.NewProvider(t.Context(), p.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &rp{
		op:       p,
		provider: prov,
		verifier: prov.Verifier(&oidc.Config{ClientID: p.ClientID()}),
		conf: oauth2.Config{
			ClientID:     p.ClientID(),
			ClientSecret: p.ClientSecret(),
			Endpoint:     prov.Endpoint(),
			RedirectURL:  "http://127.0.0.1:1/callback",
			Scopes:       []string{oidc.ScopeOpenID, "email"},
		},
		noFollow: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
}

// authorize performs the front-channel step and returns the redirect target.
// It reports errors instead of failing the test so goroutines can use it.
func (r *rp) authorize(authURL string) (*url.URL, error) {
	resp, err := r.noFollow.Get(authURL)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("authorize: status %d, want 302", resp.StatusCode)
	}
	return url.Parse(resp.Header.Get("Location"))
}

func (r *rp) mustAuthorize(t *testing.T, authURL string) *url.URL {
	t.Helper()
	loc, err := r.authorize(authURL)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

type login struct {
	nonce, verifier string
	code            string
	token           *oauth2.Token
	rawIDToken      string
}

// errAuthorize is an error response of the authorization endpoint.
type errAuthorize string

func (e errAuthorize) Error() string { return string(e) }

// login runs the whole authorization-code flow with PKCE, state and nonce.
func (r *rp) login(ctx context.Context) (*login, error) {
	l := &login{nonce: randomString(16), verifier: oauth2.GenerateVerifier()}
	state := "st&=/ ?" + randomString(8) // must survive escaping intact
	loc, err := r.authorize(r.conf.AuthCodeURL(state, oidc.Nonce(l.nonce), oauth2.S256ChallengeOption(l.verifier)))
	if err != nil {
		return l, err
	}
	if got := loc.Query().Get("state"); got != state {
		return l, fmt.Errorf("state = %q, want %q", got, state)
	}
	if e := loc.Query().Get("error"); e != "" {
		return l, errAuthorize(e)
	}
	l.code = loc.Query().Get("code")
	tok, err := r.conf.Exchange(ctx, l.code, oauth2.VerifierOption(l.verifier))
	if err != nil {
		return l, err
	}
	l.token = tok
	l.rawIDToken, _ = tok.Extra("id_token").(string)
	return l, nil
}

func (r *rp) mustLogin(t *testing.T) *login {
	t.Helper()
	l, err := r.login(t.Context())
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	return l
}

func jwtHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatalf("header: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("header: %v", err)
	}
	return m
}

func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("payload: %v", err)
	}
	return m
}

func fetchJWKS(t *testing.T, p *Provider) jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(p.Issuer() + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	return set
}

func TestHappyPath(t *testing.T) {
	p := newOP(t, Config{Claims: map[string]any{
		"groups": []string{"admins", "devs"},
		"org":    map[string]any{"id": 42, "name": "Acme"},
		"name":   nil, // removes a default
	}})
	r := newRP(t, p)
	if !strings.HasPrefix(p.Issuer(), "http://127.0.0.1:") || strings.HasSuffix(p.Issuer(), "/") {
		t.Errorf("Issuer() = %q", p.Issuer())
	}
	l := r.mustLogin(t)

	idt, err := r.verifier.Verify(t.Context(), l.rawIDToken)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if idt.Nonce != l.nonce {
		t.Errorf("nonce = %q, want %q", idt.Nonce, l.nonce)
	}
	if err := idt.VerifyAccessToken(l.token.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	var c struct {
		Sub      string   `json:"sub"`
		Email    string   `json:"email"`
		Verified bool     `json:"email_verified"`
		Name     *string  `json:"name"`
		Sid      string   `json:"sid"`
		AuthTime int64    `json:"auth_time"`
		Groups   []string `json:"groups"`
		Org      struct {
			ID int `json:"id"`
		} `json:"org"`
	}
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.Sub != "user-1" || c.Email != "alice@example.com" || !c.Verified || c.Name != nil ||
		c.Sid == "" || c.AuthTime == 0 || len(c.Groups) != 2 || c.Org.ID != 42 {
		t.Errorf("claims = %+v", c)
	}
	if kid := jwtHeader(t, l.rawIDToken)["kid"]; kid == nil || kid == "" {
		t.Error("ID token header lacks kid")
	}

	if len(l.token.AccessToken) != 64 || !p.ValidAccessToken(l.token.AccessToken) || p.ValidAccessToken("nope") {
		t.Errorf("access token %q not as expected", l.token.AccessToken)
	}
	if l.token.RefreshToken == "" || l.token.TokenType != "Bearer" {
		t.Errorf("token = %+v", l.token)
	}
	if d := time.Until(l.token.Expiry); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expires in %v, want 1h", d)
	}

	ui, err := r.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(l.token))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	if ui.Subject != "user-1" || ui.Email != "alice@example.com" {
		t.Errorf("userinfo = %+v", ui)
	}
	bad := &oauth2.Token{AccessToken: "forged", TokenType: "Bearer"}
	if _, err := r.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(bad)); err == nil {
		t.Error("userinfo accepted a forged token")
	}

	q := p.LastAuthorizeRequest()
	if q.Get("redirect_uri") != r.conf.RedirectURL || q.Get("code_challenge_method") != "S256" || q.Get("nonce") != l.nonce {
		t.Errorf("LastAuthorizeRequest = %v", q)
	}
	if p.TokenCalls() != 1 || p.RefreshCalls() != 0 {
		t.Errorf("calls = %d/%d", p.TokenCalls(), p.RefreshCalls())
	}
}

func TestClientAuthMethods(t *testing.T) {
	p := newOP(t, Config{ClientID: "c i+d", ClientSecret: "s:e/c%ret"}) // needs escaping
	for name, style := range map[string]oauth2.AuthStyle{"basic": oauth2.AuthStyleInHeader, "post": oauth2.AuthStyleInParams} {
		t.Run(name, func(t *testing.T) {
			r := newRP(t, p)
			r.conf.Endpoint.AuthStyle = style
			r.mustLogin(t)
			r.conf.ClientSecret = "wrong"
			_, err := r.login(t.Context())
			var re *oauth2.RetrieveError
			if !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized || re.ErrorCode != "invalid_client" {
				t.Errorf("wrong secret: err = %v", err)
			}
		})
	}
}

func wantGrantError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusBadRequest || re.ErrorCode != code {
		t.Errorf("err = %v, want 400 %s", err, code)
	}
}

func TestLastTokenRequest(t *testing.T) {
	p := newOP(t, Config{})
	if form, hdr := p.LastTokenRequest(); form != nil || hdr != nil {
		t.Errorf("before any request: %v %v", form, hdr)
	}
	r := newRP(t, p)
	r.conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	l := r.mustLogin(t)
	form, hdr := p.LastTokenRequest()
	if form.Get("grant_type") != "authorization_code" || form.Get("code") != l.code ||
		form.Get("code_verifier") != l.verifier || form.Has("client_secret") {
		t.Errorf("form = %v", form)
	}
	if !strings.HasPrefix(hdr.Get("Authorization"), "Basic ") || hdr.Get("Content-Type") != "application/x-www-form-urlencoded" {
		t.Errorf("header = %v", hdr)
	}
	form.Set("grant_type", "changed") // copies: the provider's record stays
	hdr.Del("Authorization")
	if form, hdr := p.LastTokenRequest(); form.Get("grant_type") != "authorization_code" || hdr.Get("Authorization") == "" {
		t.Error("LastTokenRequest returned the provider's own maps")
	}

	r.conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	r.mustRefresh(t, l.token)
	form, hdr = p.LastTokenRequest()
	if form.Get("grant_type") != "refresh_token" || form.Get("refresh_token") != l.token.RefreshToken ||
		form.Get("client_secret") != p.ClientSecret() || hdr.Get("Authorization") != "" {
		t.Errorf("refresh: form %v, header %v", form, hdr)
	}

	p.SetDown(true) // recorded even when refused
	defer p.SetDown(false)
	_, _ = r.refresh(t.Context(), l.token)
	if form, _ := p.LastTokenRequest(); form.Get("refresh_token") != l.token.RefreshToken || p.TokenCalls() != 3 {
		t.Errorf("while down: form %v", form)
	}
}

func TestCodeChecks(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)

	t.Run("single use", func(t *testing.T) {
		l := r.mustLogin(t)
		_, err := r.conf.Exchange(t.Context(), l.code, oauth2.VerifierOption(l.verifier))
		wantGrantError(t, err, "invalid_grant")
	})
	t.Run("wrong verifier", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		loc := r.mustAuthorize(t, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)))
		_, err := r.conf.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(oauth2.GenerateVerifier()))
		wantGrantError(t, err, "invalid_grant")
	})
	t.Run("missing verifier", func(t *testing.T) {
		loc := r.mustAuthorize(t, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		_, err := r.conf.Exchange(t.Context(), loc.Query().Get("code"))
		wantGrantError(t, err, "invalid_grant")
	})
	t.Run("redirect_uri mismatch", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		loc := r.mustAuthorize(t, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)))
		other := r.conf
		other.RedirectURL = "http://127.0.0.1:1/other"
		_, err := other.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(v))
		wantGrantError(t, err, "invalid_grant")
	})
	t.Run("no openid scope", func(t *testing.T) {
		plain := *r
		plain.conf.Scopes = []string{"email"}
		if l := plain.mustLogin(t); l.rawIDToken != "" {
			t.Error("ID token issued without the openid scope")
		}
	})
}

func TestAuthorizeValidation(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	cases := map[string]struct {
		opts    []oauth2.AuthCodeOption
		wantErr string
	}{
		"no PKCE":    {nil, "invalid_request"},
		"plain PKCE": {[]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("code_challenge", "abc"), oauth2.SetAuthURLParam("code_challenge_method", "plain")}, "invalid_request"},
		"token flow": {[]oauth2.AuthCodeOption{oauth2.S256ChallengeOption("x"), oauth2.SetAuthURLParam("response_type", "token")}, "unsupported_response_type"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			loc := r.mustAuthorize(t, r.conf.AuthCodeURL("xyz", tc.opts...))
			if q := loc.Query(); q.Get("error") != tc.wantErr || q.Get("state") != "xyz" || q.Has("code") {
				t.Errorf("redirect = %v", loc)
			}
		})
	}
	// No redirect may happen for an unknown client or without redirect_uri.
	for _, u := range []string{
		p.Issuer() + "/authorize?response_type=code&client_id=evil&redirect_uri=http://x/cb",
		p.Issuer() + "/authorize?response_type=code&client_id=test-client",
		p.Issuer() + "/authorize?response_type=code&client_id=test-client&redirect_uri=relative",
	} {
		resp, err := r.noFollow.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", u, resp.StatusCode)
		}
	}
}

func TestRefresh(t *testing.T) {
	p := newOP(t, Config{AccessTokenTTL: 10 * time.Minute, AccessTokenSize: 100})
	r := newRP(t, p)
	l := r.mustLogin(t)
	if len(l.token.AccessToken) != 100 {
		t.Errorf("access token length %d, want 100", len(l.token.AccessToken))
	}
	first := l.token

	stale := *first
	stale.Expiry = time.Now().Add(-time.Minute) // force the token source to refresh
	fresh, err := r.conf.TokenSource(t.Context(), &stale).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if fresh.AccessToken == first.AccessToken || fresh.RefreshToken == first.RefreshToken {
		t.Error("refresh did not issue new tokens")
	}
	if d := time.Until(fresh.Expiry); d > 10*time.Minute || d < 9*time.Minute {
		t.Errorf("expires in %v, want 10m", d)
	}
	raw, _ := fresh.Extra("id_token").(string)
	idt, err := r.verifier.Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("refreshed ID token: %v", err)
	}
	if idt.Nonce != "" || idt.Subject != "user-1" {
		t.Errorf("refreshed ID token: nonce %q sub %q", idt.Nonce, idt.Subject)
	}
	if p.RefreshCalls() != 1 || p.TokenCalls() != 2 {
		t.Errorf("calls = %d/%d", p.TokenCalls(), p.RefreshCalls())
	}

	// Rotation: the spent refresh token is no longer accepted.
	_, err = r.conf.TokenSource(t.Context(), &stale).Token()
	wantGrantError(t, err, "invalid_grant")

	p.RevokeRefreshTokens()
	fresh.Expiry = time.Now().Add(-time.Minute)
	_, err = r.conf.TokenSource(t.Context(), fresh).Token()
	wantGrantError(t, err, "invalid_grant")
}

// idTokenMisbehaviors are the misbehaviours that show in the ID token itself.
var idTokenMisbehaviors = []Misbehavior{
	WrongNonce, WrongAudience, WrongIssuer, BadSignature, AlgNone, Expired, IssuedInFuture,
	MissingKid, UnknownKid, WrongAzp, BadAtHash, HS256Signed,
	NoIat, SeveralAudiencesNoAzp, OtherSubject, AzpOfOtherParty,
}

// checkIDToken proves that raw, issued with accessToken in answer to an
// authorization request with nonce, really shows misbehaviour m. r should
// have a fresh key cache.
func checkIDToken(t *testing.T, r *rp, m Misbehavior, raw, accessToken, nonce string) {
	t.Helper()
	idt, verr := r.verifier.Verify(t.Context(), raw)
	c := jwtClaims(t, raw)
	switch m {
	case WrongAudience, WrongIssuer, BadSignature, AlgNone, Expired, UnknownKid, HS256Signed:
		if verr == nil {
			t.Fatal("go-oidc accepted the token")
		}
	case WrongNonce:
		// go-oidc leaves the nonce to the caller.
		if verr != nil || idt.Nonce == nonce || idt.Nonce == "" {
			t.Errorf("err %v, nonce %q", verr, idt.Nonce)
		}
	case BadAtHash:
		if verr != nil || idt.VerifyAccessToken(accessToken) == nil {
			t.Errorf("err %v; at_hash accepted", verr)
		}
	case IssuedInFuture:
		// go-oidc does not check iat; the relying party has to.
		if verr != nil || time.Until(idt.IssuedAt) < 30*time.Minute {
			t.Errorf("err %v, iat %v", verr, idt.IssuedAt)
		}
	case WrongAzp:
		// go-oidc does not check azp (OIDC Core 3.1.3.7 step 5).
		if verr != nil || c["azp"] == r.op.ClientID() || len(idt.Audience) < 2 {
			t.Errorf("err %v, claims %v", verr, c)
		}
	case MissingKid:
		// go-oidc tries every key; OIDC Core 10.1 demands a kid
		// when the JWKS holds several keys.
		if _, ok := jwtHeader(t, raw)["kid"]; ok {
			t.Error("header has a kid")
		}
		if n := len(fetchJWKS(t, r.op).Keys); n < 2 {
			t.Errorf("JWKS has %d keys, want >= 2", n)
		}
	case NoIat:
		// go-oidc does not require iat; the relying party has to.
		_, has := c["iat"]
		if verr != nil || has || time.Until(idt.Expiry) < 59*time.Minute || time.Until(idt.Expiry) > time.Hour {
			t.Errorf("err %v, claims %v", verr, c)
		}
	case SeveralAudiencesNoAzp:
		_, has := c["azp"]
		if verr != nil || has || !slices.Equal(idt.Audience, []string{r.op.ClientID(), "other-audience"}) {
			t.Errorf("err %v, claims %v", verr, c)
		}
	case OtherSubject:
		if verr != nil || idt.Subject != "someone-else" {
			t.Errorf("err %v, sub %q", verr, idt.Subject)
		}
	case AzpOfOtherParty:
		if verr != nil || c["aud"] != r.op.ClientID() || c["azp"] != "someone-else" {
			t.Errorf("err %v, claims %v", verr, c)
		}
	default:
		t.Fatalf("untested misbehavior %v", m)
	}
	if m == HS256Signed { // really an HMAC of the raw client secret
		input := raw[:strings.LastIndexByte(raw, '.')]
		mac := hmac.New(sha256.New, []byte(r.op.ClientSecret()))
		mac.Write([]byte(input))
		want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		if !strings.HasSuffix(raw, "."+want) || jwtHeader(t, raw)["alg"] != "HS256" {
			t.Error("not HMAC-SHA256 signed with the client secret")
		}
	}
}

func TestMisbehaviors(t *testing.T) {
	p := newOP(t, Config{})
	for m := WrongNonce; int(m) < len(misbehaviorNames); m++ {
		t.Run(m.String(), func(t *testing.T) {
			r := newRP(t, p) // fresh key cache per case
			p.SetMisbehavior(m)
			defer p.SetMisbehavior(MisbehaveNone)
			l, err := r.login(t.Context())
			switch m {
			case AccessDenied:
				if err != errAuthorize("access_denied") {
					t.Errorf("err = %v", err)
				}
				return
			case TokenEndpointError:
				var re *oauth2.RetrieveError
				if !errors.As(err, &re) || re.Response.StatusCode != http.StatusInternalServerError {
					t.Errorf("err = %v, want 500", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("login: %v", err)
			}
			if m == NoIDToken {
				if l.rawIDToken != "" || l.token.AccessToken == "" {
					t.Errorf("token = %+v", l.token)
				}
				return
			}
			checkIDToken(t, r, m, l.rawIDToken, l.token.AccessToken, l.nonce)
		})
	}
	// Everything is back to normal afterwards.
	r := newRP(t, p)
	if _, err := r.verifier.Verify(t.Context(), r.mustLogin(t).rawIDToken); err != nil {
		t.Errorf("after reset: %v", err)
	}
}

// refresh forces a refresh_token grant for tok.
func (r *rp) refresh(ctx context.Context, tok *oauth2.Token) (*oauth2.Token, error) {
	stale := *tok
	stale.Expiry = time.Now().Add(-time.Minute)
	return r.conf.TokenSource(ctx, &stale).Token()
}

func (r *rp) mustRefresh(t *testing.T, tok *oauth2.Token) (*oauth2.Token, string) {
	t.Helper()
	fresh, err := r.refresh(t.Context(), tok)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	raw, _ := fresh.Extra("id_token").(string)
	return fresh, raw
}

func TestRefreshMisbehavior(t *testing.T) {
	p := newOP(t, Config{})
	for _, m := range idTokenMisbehaviors {
		t.Run(m.String(), func(t *testing.T) {
			r := newRP(t, p) // fresh key cache per case
			p.SetRefreshMisbehavior(m)
			defer p.SetRefreshMisbehavior(MisbehaveNone)
			l := r.mustLogin(t)
			if _, err := r.verifier.Verify(t.Context(), l.rawIDToken); err != nil {
				t.Fatalf("the code grant misbehaved: %v", err)
			}
			fresh, raw := r.mustRefresh(t, l.token)
			checkIDToken(t, r, m, raw, fresh.AccessToken, "")
		})
	}

	t.Run("wins over SetMisbehavior", func(t *testing.T) {
		r := newRP(t, p)
		p.SetMisbehavior(WrongIssuer)
		defer p.SetMisbehavior(MisbehaveNone)
		p.SetRefreshMisbehavior(OtherSubject)
		l := r.mustLogin(t)
		if iss := jwtClaims(t, l.rawIDToken)["iss"]; iss == p.Issuer() {
			t.Error("the code grant ignored SetMisbehavior")
		}
		tok, raw := r.mustRefresh(t, l.token)
		checkIDToken(t, r, OtherSubject, raw, tok.AccessToken, "")

		p.SetRefreshMisbehavior(MisbehaveNone) // refreshes follow SetMisbehavior again
		_, raw = r.mustRefresh(t, tok)
		if iss := jwtClaims(t, raw)["iss"]; iss == p.Issuer() {
			t.Error("refresh ignored SetMisbehavior")
		}
	})

	t.Run("endpoint errors", func(t *testing.T) {
		r := newRP(t, p)
		defer p.SetRefreshMisbehavior(MisbehaveNone)
		l := r.mustLogin(t)
		p.SetRefreshMisbehavior(NoIDToken)
		tok, raw := r.mustRefresh(t, l.token)
		if raw != "" || tok.AccessToken == "" {
			t.Errorf("NoIDToken: token = %+v", tok)
		}
		p.SetRefreshMisbehavior(TokenEndpointError)
		_, err := r.refresh(t.Context(), tok)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.Response.StatusCode != http.StatusInternalServerError {
			t.Errorf("TokenEndpointError: err = %v, want 500", err)
		}
		r.mustLogin(t) // the code grant still works
	})
}

func TestRefreshIDTokens(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	p.RefreshIDTokens(false)
	l := r.mustLogin(t)
	if l.rawIDToken == "" {
		t.Fatal("the code grant lost its ID token")
	}
	tok, raw := r.mustRefresh(t, l.token)
	if raw != "" || tok.AccessToken == "" {
		t.Errorf("refresh with RefreshIDTokens(false): token = %+v", tok)
	}
	p.RefreshIDTokens(true)
	if _, raw := r.mustRefresh(t, tok); raw == "" {
		t.Error("refresh with RefreshIDTokens(true) has no ID token")
	} else if _, err := r.verifier.Verify(t.Context(), raw); err != nil {
		t.Errorf("refreshed ID token: %v", err)
	}
}

// refreshResult is the outcome of a refresh run in a goroutine.
type refreshResult struct {
	tok *oauth2.Token
	err error
}

func (r *rp) refreshAsync(ctx context.Context, tok *oauth2.Token) <-chan refreshResult {
	done := make(chan refreshResult, 1)
	go func() {
		fresh, err := r.refresh(ctx, tok)
		done <- refreshResult{fresh, err}
	}()
	return done
}

func TestPauseTokenEndpoint(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	l := r.mustLogin(t)

	t.Run("holds one request", func(t *testing.T) {
		arrived, resume := p.PauseTokenEndpoint()
		done := r.refreshAsync(t.Context(), l.token)
		<-arrived
		if p.RefreshCalls() != 1 {
			t.Errorf("RefreshCalls = %d while held, want 1", p.RefreshCalls())
		}
		if form, _ := p.LastTokenRequest(); form.Get("refresh_token") != l.token.RefreshToken {
			t.Errorf("LastTokenRequest while held: %v", form)
		}
		r.mustLogin(t) // only one request is held
		select {
		case res := <-done:
			t.Fatalf("the request was not held: %+v", res)
		default:
		}
		resume()
		resume() // idempotent
		res := <-done
		if res.err != nil {
			t.Fatalf("held refresh: %v", res.err)
		}
		l.token = res.tok
		r.mustRefresh(t, l.token) // the pause is spent
		l = r.mustLogin(t)
	})

	t.Run("decided after resume", func(t *testing.T) {
		arrived, resume := p.PauseTokenEndpoint()
		done := r.refreshAsync(t.Context(), l.token)
		<-arrived
		p.RevokeRefreshTokens()
		resume()
		wantGrantError(t, (<-done).err, "invalid_grant")
		l = r.mustLogin(t)
	})

	t.Run("resume before arrival", func(t *testing.T) {
		arrived, resume := p.PauseTokenEndpoint()
		resume()
		l = r.mustLogin(t)
		<-arrived
	})

	t.Run("Close lets go", func(t *testing.T) {
		p := newOP(t, Config{})
		r := newRP(t, p)
		l := r.mustLogin(t)
		arrived, _ := p.PauseTokenEndpoint()
		done := r.refreshAsync(t.Context(), l.token)
		<-arrived
		p.Close()
		<-done
	})
}

func TestRotateKeys(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	old := r.mustLogin(t).rawIDToken
	oldKid := jwtHeader(t, old)["kid"]

	p.RotateKeys(true)
	if n := len(fetchJWKS(t, p).Keys); n != 2 {
		t.Errorf("JWKS has %d keys, want 2", n)
	}
	cur := r.mustLogin(t).rawIDToken
	if jwtHeader(t, cur)["kid"] == oldKid {
		t.Error("kid unchanged after rotation")
	}
	for _, tok := range []string{old, cur} { // the cached verifier refetches on a new kid
		if _, err := r.verifier.Verify(t.Context(), tok); err != nil {
			t.Errorf("verify: %v", err)
		}
	}

	p.RotateKeys(false)
	if n := len(fetchJWKS(t, p).Keys); n != 1 {
		t.Errorf("JWKS has %d keys, want 1", n)
	}
	if _, err := newRP(t, p).verifier.Verify(t.Context(), old); err == nil {
		t.Error("token of a withdrawn key still verifies")
	}
}

func TestLogoutToken(t *testing.T) {
	p := newOP(t, Config{})
	v := newRP(t, p).verifier
	raw, err := p.LogoutToken("user-1", "sid-9")
	if err != nil {
		t.Fatal(err)
	}
	lt, err := v.VerifyLogout(t.Context(), raw)
	if err != nil {
		t.Fatalf("VerifyLogout: %v", err)
	}
	if lt.Subject != "user-1" || lt.SessionID != "sid-9" || lt.TokenID == "" {
		t.Errorf("logout token = %+v", lt)
	}
	if typ := jwtHeader(t, raw)["typ"]; typ != "logout+jwt" {
		t.Errorf("typ = %v", typ)
	}
	p.SetMisbehavior(NoIat)
	raw, err = p.LogoutToken("user-1", "")
	if err != nil {
		t.Fatal(err)
	}
	if c := jwtClaims(t, raw); c["iat"] != nil || c["exp"] == nil {
		t.Errorf("NoIat: logout token claims %v", c)
	}
	for _, m := range []Misbehavior{WrongNonce, WrongIssuer, WrongAudience, Expired, BadSignature, AlgNone} {
		p.SetMisbehavior(m)
		raw, err := p.LogoutToken("", "sid-9")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyLogout(t.Context(), raw); err == nil {
			t.Errorf("%v: logout token accepted", m)
		}
	}
}

func TestSignLogoutToken(t *testing.T) {
	p := newOP(t, Config{})
	v := newRP(t, p).verifier
	p.SetMisbehavior(WrongIssuer) // must not apply
	defer p.SetMisbehavior(MisbehaveNone)

	raw, err := p.SignLogoutToken(map[string]any{"sub": "user-1", "sid": "sid-9"}, "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	lt, err := v.VerifyLogout(t.Context(), raw)
	if err != nil {
		t.Fatalf("VerifyLogout: %v", err)
	}
	if lt.Issuer != p.Issuer() || lt.Subject != "user-1" || lt.SessionID != "sid-9" || lt.TokenID == "" ||
		time.Since(lt.IssuedAt) > time.Minute || time.Until(lt.Expiry) < time.Minute || time.Until(lt.Expiry) > 2*time.Minute {
		t.Errorf("logout token = %+v", lt)
	}
	h := jwtHeader(t, raw)
	if h["typ"] != "logout+jwt" || h["alg"] != "RS256" || h["kid"] != fetchJWKS(t, p).Keys[0].KeyID {
		t.Errorf("header = %v", h)
	}
	other, err := p.SignLogoutToken(map[string]any{"sub": "user-1"}, "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if jwtClaims(t, other)["jti"] == jwtClaims(t, raw)["jti"] {
		t.Error("jti repeats")
	}

	// Overrides, removals and no typ header.
	raw, err = p.SignLogoutToken(map[string]any{"sid": "s", "iat": nil, "events": nil, "aud": []string{"x", p.ClientID()}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := jwtHeader(t, raw)["typ"]; ok {
		t.Errorf("header = %v, want no typ", jwtHeader(t, raw))
	}
	c := jwtClaims(t, raw)
	_, hasIat := c["iat"]
	_, hasEvents := c["events"]
	aud, _ := c["aud"].([]any)
	if hasIat || hasEvents || c["exp"] == nil || c["jti"] == nil || len(aud) != 2 {
		t.Errorf("claims = %v", c)
	}
	if _, err := v.VerifyLogout(t.Context(), raw); err == nil {
		t.Error("logout token without events accepted")
	}
	if _, err := p.SignLogoutToken(map[string]any{"bad": func() {}}, ""); err == nil {
		t.Error("unencodable claims accepted")
	}
}

func TestSignWithUnknownKid(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	claims := map[string]any{"iss": p.Issuer(), "aud": p.ClientID(), "sub": "x", "exp": time.Now().Add(time.Minute).Unix()}
	published := map[string]bool{}
	for _, k := range fetchJWKS(t, p).Keys {
		published[k.KeyID] = true
	}
	seen := map[string]bool{}
	var rogue *signingKey
	for range 2 {
		raw, err := p.SignWithUnknownKid(claims)
		if err != nil {
			t.Fatal(err)
		}
		p.mu.Lock()
		rogue = p.rogue
		p.mu.Unlock()
		kid, _ := jwtHeader(t, raw)["kid"].(string)
		if kid == "" || published[kid] || seen[kid] {
			t.Errorf("kid %q is empty, published or repeated", kid)
		}
		seen[kid] = true
		if _, err := r.verifier.Verify(t.Context(), raw); err == nil {
			t.Error("go-oidc accepted a token of an unpublished key")
		}
		// A real RS256 signature over exactly the given claims.
		jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		payload, err := jws.Verify(&rogue.priv.PublicKey)
		if err != nil {
			t.Fatalf("signature: %v", err)
		}
		want, _ := json.Marshal(claims)
		if string(payload) != string(want) {
			t.Errorf("payload = %s, want %s", payload, want)
		}
	}
	for _, k := range fetchJWKS(t, p).Keys {
		if pub, _ := k.Key.(*rsa.PublicKey); seen[k.KeyID] || pub == nil || pub.Equal(&rogue.priv.PublicKey) {
			t.Errorf("JWKS publishes %q", k.KeyID)
		}
	}
	if _, err := p.SignWithUnknownKid(map[string]any{"bad": func() {}}); err == nil {
		t.Error("unencodable claims accepted")
	}
}

func TestSignIDTokenAndPadding(t *testing.T) {
	p := newOP(t, Config{IDTokenPadding: 4000})
	r := newRP(t, p)
	raw, err := p.SignIDToken(map[string]any{
		"iss": p.Issuer(), "aud": p.ClientID(), "sub": "x", "exp": time.Now().Add(time.Minute).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if idt, err := r.verifier.Verify(t.Context(), raw); err != nil || idt.Subject != "x" {
		t.Errorf("SignIDToken: %v", err)
	}
	if _, err := p.SignIDToken(map[string]any{"bad": func() {}}); err == nil {
		t.Error("unencodable claims accepted")
	}

	l := r.mustLogin(t)
	if n := len(l.rawIDToken); n < 3900 || n > 4000 {
		t.Errorf("padded ID token is %d bytes, want about 4000", n)
	}
	if _, err := r.verifier.Verify(t.Context(), l.rawIDToken); err != nil {
		t.Errorf("padded token: %v", err)
	}
}

func TestEndSession(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	resp, err := r.noFollow.Get(p.Issuer() + "/end_session?id_token_hint=abc&post_logout_redirect_uri=" +
		url.QueryEscape("http://127.0.0.1:1/bye?x=1") + "&state=a%26b")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("state") != "a&b" || loc.Query().Get("x") != "1" {
		t.Errorf("status %d, Location %v", resp.StatusCode, loc)
	}
	if p.LastEndSessionRequest().Get("id_token_hint") != "abc" {
		t.Errorf("LastEndSessionRequest = %v", p.LastEndSessionRequest())
	}

	resp, err = http.Get(p.Issuer() + "/end_session")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "signed out") {
		t.Errorf("status %d, body %q", resp.StatusCode, body)
	}
}

func TestDownAndFixedAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // free the port, as a test configuring the RP first would

	p := newOP(t, Config{Addr: addr})
	if p.Issuer() != "http://"+addr {
		t.Errorf("Issuer() = %q, want http://%s", p.Issuer(), addr)
	}
	r := newRP(t, p)
	l := r.mustLogin(t)

	p.SetDown(true)
	for _, path := range []string{"/.well-known/openid-configuration", "/keys", "/authorize"} {
		resp, err := http.Get(p.Issuer() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("%s: status %d, want 503", path, resp.StatusCode)
		}
	}
	l.token.Expiry = time.Now().Add(-time.Minute)
	if _, err := r.conf.TokenSource(t.Context(), l.token).Token(); err == nil {
		t.Error("refresh succeeded while down")
	}
	if p.TokenCalls() != 2 || p.RefreshCalls() != 1 {
		t.Errorf("calls = %d/%d, want 2/1", p.TokenCalls(), p.RefreshCalls())
	}
	p.SetDown(false)
	if _, err := r.conf.TokenSource(t.Context(), l.token).Token(); err != nil {
		t.Errorf("refresh after recovery: %v", err)
	}
	p.Close()
	p.Close() // idempotent
}

func TestFetchCounts(t *testing.T) {
	p := newOP(t, Config{})
	if p.KeyFetches() != 0 || p.DiscoveryFetches() != 0 {
		t.Fatalf("fetches = %d/%d before any request", p.KeyFetches(), p.DiscoveryFetches())
	}
	r := newRP(t, p)
	if p.DiscoveryFetches() != 1 || p.KeyFetches() != 0 {
		t.Errorf("after discovery: fetches = %d/%d, want 1/0", p.DiscoveryFetches(), p.KeyFetches())
	}
	if _, err := r.verifier.Verify(t.Context(), r.mustLogin(t).rawIDToken); err != nil {
		t.Fatal(err)
	}
	if p.KeyFetches() != 1 {
		t.Errorf("after the first verification: KeyFetches = %d, want 1", p.KeyFetches())
	}
	if _, err := r.verifier.Verify(t.Context(), r.mustLogin(t).rawIDToken); err != nil {
		t.Fatal(err)
	}
	if p.KeyFetches() != 1 {
		t.Errorf("go-oidc's key cache was bypassed: KeyFetches = %d, want 1", p.KeyFetches())
	}

	p.SetDown(true)
	for _, path := range []string{"/keys", "/.well-known/openid-configuration"} {
		resp, err := http.Get(p.Issuer() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if p.KeyFetches() != 2 || p.DiscoveryFetches() != 2 {
		t.Errorf("while down: fetches = %d/%d, want 2/2", p.KeyFetches(), p.DiscoveryFetches())
	}
	p.SetDown(false)
	resp, err := http.Post(p.Issuer()+"/keys", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if p.KeyFetches() != 2 {
		t.Errorf("a POST /keys counted: KeyFetches = %d", p.KeyFetches())
	}
}

func TestSigningAlgs(t *testing.T) {
	announced := func(p *Provider) []string {
		t.Helper()
		resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct {
			Algs []string `json:"id_token_signing_alg_values_supported"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		return doc.Algs
	}
	if got := announced(newOP(t, Config{})); !slices.Equal(got, []string{"RS256"}) {
		t.Errorf("default: announced %q, want [RS256]", got)
	}
	algs := []string{"none", "HS256", "RS256"}
	p := newOP(t, Config{SigningAlgs: algs})
	algs[0] = "changed" // the provider keeps its own copy
	if got := announced(p); !slices.Equal(got, []string{"none", "HS256", "RS256"}) {
		t.Errorf("announced %q", got)
	}
	// Tokens are still RS256 signed.
	r := newRP(t, p)
	l := r.mustLogin(t)
	if _, err := r.verifier.Verify(t.Context(), l.rawIDToken); err != nil || jwtHeader(t, l.rawIDToken)["alg"] != "RS256" {
		t.Errorf("verify: %v", err)
	}
}

func TestGarbageInput(t *testing.T) {
	p := newOP(t, Config{})
	reqs := []struct{ method, path, ctype, body string }{
		{"POST", "/token", "application/x-www-form-urlencoded", "%%%"},
		{"POST", "/token", "application/x-www-form-urlencoded", "grant_type=password&client_id=test-client&client_secret=test-secret"},
		{"POST", "/token", "application/x-www-form-urlencoded", "grant_type=authorization_code&client_id=test-client&client_secret=test-secret"},
		{"POST", "/token", "application/x-www-form-urlencoded", "grant_type=refresh_token&client_id=test-client&client_secret=test-secret&refresh_token="},
		{"POST", "/token", "application/json", "{}"},
		{"GET", "/token", "", ""},
		{"GET", "/userinfo", "", ""},
		{"GET", "/authorize?%zz", "", ""},
		{"GET", "/end_session?post_logout_redirect_uri=%3A%2F%2F", "", ""},
	}
	for _, rq := range reqs {
		req, _ := http.NewRequestWithContext(context.Background(), rq.method, p.Issuer()+rq.path, strings.NewReader(rq.body))
		if rq.ctype != "" {
			req.Header.Set("Content-Type", rq.ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", rq.method, rq.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s %s %q: status %d, want 4xx", rq.method, rq.path, rq.body, resp.StatusCode)
		}
	}
}

func TestConcurrentLogins(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			l, err := r.login(t.Context())
			if err != nil {
				t.Errorf("login: %v", err)
				return
			}
			if _, err := r.verifier.Verify(t.Context(), l.rawIDToken); err != nil {
				t.Errorf("verify: %v", err)
			}
		})
	}
	wg.Go(func() { p.RotateKeys(true) })
	wg.Go(func() { _ = p.SetClaims(map[string]any{"x": 1}) })
	wg.Wait()
}

func TestMisbehaviorString(t *testing.T) {
	if WrongAzp.String() != "WrongAzp" || Misbehavior(99).String() != "Misbehavior(99)" {
		t.Error("String() broken")
	}
}
