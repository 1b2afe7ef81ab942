package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// postLogoutToken posts a logout token and returns the status and body.
func postLogoutToken(t *testing.T, base, tok string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/backchannel-logout", strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header["Sec-Fetch-Site"] = []string{""}
	resp, body := newBrowser(t).do(req)
	if resp.StatusCode != http.StatusOK && resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("a back-channel logout answer without Cache-Control: no-store")
	}
	return resp.StatusCode, body
}

// TestForgedLogoutTokensCannotHammerTheProvider: every logout token that
// names a key Caddy has not seen, or whose signature does not verify, used
// to make Caddy fetch the provider's key set again (25 posts, 25 fetches).
// Refetches now happen at most once per interval, on every verification
// path, and the answers are generic.
func TestForgedLogoutTokensCannotHammerTheProvider(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	before := p.KeyFetches()
	claims := map[string]any{"iss": p.Issuer(), "aud": p.ClientID(), "sub": "user-1", "jti": "x",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(),
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	for i := range 25 {
		claims["jti"] = "forged-" + itoa(i)
		tok, err := p.SignWithUnknownKid(claims)
		if err != nil {
			t.Fatal(err)
		}
		st, body := postLogoutToken(t, s.url, tok)
		if st != http.StatusBadRequest {
			t.Fatalf("forged logout token %d: %d %s", i, st, body)
		}
		if strings.Contains(body, "http") || strings.Contains(body, "/keys") || strings.Contains(body, "oidc:") || strings.Contains(body, "jose") {
			t.Fatalf("the answer names library text or a URL: %s", body)
		}
		if jsonBody(t, body)["error_description"] != "the logout token is not valid" {
			t.Fatalf("the answer is not generic: %s", body)
		}
	}
	p.SetMisbehavior(testop.BadSignature)
	for range 10 {
		tok, err := p.LogoutToken("user-1", "")
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := postLogoutToken(t, s.url, tok); st != http.StatusBadRequest {
			t.Fatalf("a logout token with a bad signature: %d", st)
		}
	}
	p.SetMisbehavior(testop.MisbehaveNone)
	// Sign-ins with unknown keys share the same limit.
	p.SetMisbehavior(testop.UnknownKid)
	for range 5 {
		if resp, _ := newBrowser(t).navigate(s.url + "/"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("sign-in with an unknown key: %d", resp.StatusCode)
		}
	}
	p.SetMisbehavior(testop.MisbehaveNone)
	if n := p.KeyFetches() - before; n > 1 {
		t.Fatalf("%d key set fetches for 25 forged logout tokens, 10 bad signatures and 5 sign-ins with unknown keys, want at most 1", n)
	}
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the forged tokens ended the session: %d", resp.StatusCode)
	}
}

// TestLogoutTokensAreCheckedAsDocumented: iat is required and recent; a
// jti is refused the second time; typ, when present, is logout+jwt; the
// back-channel logout event is required.
func TestLogoutTokensAreCheckedAsDocumented(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	now := time.Now()
	cases := []struct {
		name   string
		claims map[string]any
		typ    string
		status int
	}{
		{"no iat", map[string]any{"iat": nil}, "logout+jwt", http.StatusBadRequest},
		{"iat 20 minutes old", map[string]any{"iat": now.Add(-20 * time.Minute).Unix()}, "logout+jwt", http.StatusBadRequest},
		{"iat an hour ahead", map[string]any{"iat": now.Add(time.Hour).Unix()}, "logout+jwt", http.StatusBadRequest},
		{"typ JWT", nil, "JWT", http.StatusBadRequest},
		{"typ at+jwt", nil, "at+jwt", http.StatusBadRequest},
		{"no events claim", map[string]any{"events": nil}, "logout+jwt", http.StatusBadRequest},
		{"another event", map[string]any{"events": map[string]any{"http://schemas.openid.net/event/other": map[string]any{}}}, "logout+jwt", http.StatusBadRequest},
		{"no jti", map[string]any{"jti": nil}, "logout+jwt", http.StatusBadRequest},
		{"no exp", map[string]any{"exp": nil}, "logout+jwt", http.StatusBadRequest},
		{"a nonce", map[string]any{"nonce": "n"}, "logout+jwt", http.StatusBadRequest},
		{"neither sub nor sid", map[string]any{}, "logout+jwt", http.StatusBadRequest},
		{"valid, typ logout+jwt", map[string]any{"sub": "user-1"}, "logout+jwt", http.StatusOK},
		{"valid, typ application/logout+jwt", map[string]any{"sub": "user-1"}, "application/logout+jwt", http.StatusOK},
		{"valid, no typ", map[string]any{"sub": "user-1"}, "", http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newBrowser(t)
			b.signIn(s, "/")
			claims := map[string]any{"sub": "user-1"}
			if c.name == "neither sub nor sid" {
				claims = map[string]any{}
			}
			for k, v := range c.claims {
				claims[k] = v
			}
			tok, err := p.SignLogoutToken(claims, c.typ)
			if err != nil {
				t.Fatal(err)
			}
			if st, body := postLogoutToken(t, s.url, tok); st != c.status {
				t.Fatalf("%d %s, want %d", st, body, c.status)
			}
			if c.name == "no iat" && !strings.Contains(s.logs(), "the logout token has no iat claim") {
				t.Error("the log does not say the logout token had no iat")
			}
			want := http.StatusOK
			if c.status == http.StatusOK {
				want = http.StatusUnauthorized
			}
			if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != want {
				t.Fatalf("the session after the logout token: %d, want %d", resp.StatusCode, want)
			}
		})
	}

	// A replayed logout token is refused, and so cannot end a session
	// signed in after the first one.
	tok, err := p.SignLogoutToken(map[string]any{"sub": "user-1"}, "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if st, body := postLogoutToken(t, s.url, tok); st != http.StatusOK {
		t.Fatalf("first use: %d %s", st, body)
	}
	time.Sleep(5 * time.Millisecond) // a sign-in after the revocation's millisecond
	b := newBrowser(t)
	b.signIn(s, "/")
	if st, _ := postLogoutToken(t, s.url, tok); st != http.StatusBadRequest {
		t.Fatalf("replayed logout token: %d, want 400", st)
	}
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the replay ended a later session: %d", resp.StatusCode)
	}
}

// TestRefreshedIDTokensGetTheSignInChecks: OpenID Connect Core 12.2. An
// ID token a refresh returns is verified like the first (signature and
// algorithm, exp, iat, azp, at_hash) and must name the session's issuer,
// subject and audience; otherwise the session ends and the upstream never
// gets the refreshed access token.
func TestRefreshedIDTokensGetTheSignInChecks(t *testing.T) {
	cases := []testop.Misbehavior{
		testop.WrongIssuer, testop.WrongAudience, testop.OtherSubject, testop.BadSignature, testop.AlgNone,
		testop.HS256Signed, testop.UnknownKid, testop.Expired, testop.IssuedInFuture, testop.NoIat,
		testop.SeveralAudiencesNoAzp, testop.AzpOfOtherParty, testop.BadAtHash, testop.MisbehaveNone,
	}
	for _, m := range cases {
		t.Run(m.String(), func(t *testing.T) {
			p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second}) // inside the refresh window
			up := newUpstream(t)
			s, b := injectSite(t, p, up, "", "")
			first := accessTokens(p)
			p.SetRefreshMisbehavior(m)
			p.SetAccessTokenTTL(time.Hour)
			before := up.requests
			req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			req.Header.Set("Accept", "application/json")
			resp, body := b.do(req)
			if p.RefreshCalls() != 1 {
				t.Fatalf("%d refreshes, want 1", p.RefreshCalls())
			}
			if m == testop.MisbehaveNone {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("a correct refresh: %d %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != http.StatusUnauthorized || up.requests != before {
				t.Fatalf("refreshed ID token with %s: %d (upstream reached: %v), want 401", m, resp.StatusCode, up.requests != before)
			}
			for _, tok := range accessTokens(p) {
				if !contains(first, tok) {
					assertNoSecrets(t, "Caddy's log", s.logs(), tok)
				}
			}
			if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("the session after a refused refresh: %d, want 401", resp.StatusCode)
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestFailedRefreshLogsNoToken: whatever makes a refresh fail (the
// provider refuses the grant, answers 500, or is down), the log line says
// so without the refresh or access token, at debug level too.
func TestFailedRefreshLogsNoToken(t *testing.T) {
	for _, fail := range []string{"invalid_grant", "500", "down"} {
		t.Run(fail, func(t *testing.T) {
			p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second})
			up := newUpstream(t)
			s, b := injectSite(t, p, up, "", "")
			switch fail {
			case "invalid_grant":
				p.RevokeRefreshTokens()
			case "500":
				p.SetMisbehavior(testop.TokenEndpointError)
			case "down":
				p.SetDown(true)
			}
			req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			req.Header.Set("Accept", "application/json")
			resp, _ := b.do(req)
			if resp.StatusCode == http.StatusOK {
				t.Fatalf("the refresh did not fail")
			}
			if !strings.Contains(s.logs(), "refresh") && !strings.Contains(s.logs(), "ended by the provider") {
				t.Fatalf("the failure was not logged")
			}
			assertNoSecrets(t, "Caddy's log", s.logs(), p.IssuedTokens()...)
		})
	}
}

// TestNoPlaceholderPrintsAToken: whatever name a Caddyfile asks for, no
// placeholder or variable holds the access or refresh token.
func TestNoPlaceholderPrintsAToken(t *testing.T) {
	p := newProvider(t, testop.Config{})
	names := []string{}
	for _, prefix := range []string{"http.auth.user.", "oidc.user.", "oidc.user.id_token.", "oidc.user.userinfo.", "oidc.", "http.vars.", "vars."} {
		for _, n := range []string{"access_token", "accessToken", "refresh_token", "refreshToken", "token", "tokens", "session", "id_token_hint"} {
			names = append(names, "{"+prefix+n+"}")
		}
	}
	routes := "respond \"" + strings.ReplaceAll(strings.Join(names, "|"), `"`, `\"`) + "\" 200"
	s, _ := testopSite(t, p, siteOptions{routes: routes})
	b := newBrowser(t)
	body := b.signIn(s, "/")
	assertNoSecrets(t, "the placeholders", body, accessTokens(p)...)
	for _, tok := range p.IssuedTokens() {
		if strings.Count(tok, ".") != 2 { // the access and refresh tokens
			assertNoSecrets(t, "the placeholders", body, tok)
		}
	}
}
