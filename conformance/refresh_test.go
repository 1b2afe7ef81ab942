package conformance

// The refresh plan, oidcc-client-refreshtoken-test-plan (not part of
// certification), with response_type=code. The code exchange also returns
// a refresh token, still without expires_in; a refresh is answered with a
// new access token, refresh token and ID token (the sign-in's nonce
// repeated). The site takes access tokens to live 10 s
// (access_token_lifetime, less than token_inject's refresh_skew), so the
// first request through token_inject refreshes, and asks userinfo again
// after a refresh (userinfo refresh).

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// refreshThroughTheSite signs in and makes one request through
// token_inject, which refreshes the tokens; it returns that request's
// answer.
func (m *module) refreshThroughTheSite(b *browser) (*http.Response, string) {
	m.t.Helper()
	m.signIn(b)
	m.assertAccepted(b, 1)
	resp, body := b.fetch(m.site.url + "/api/data")
	if n := m.op.RefreshCalls(); n != 1 {
		m.t.Fatalf("%d refresh requests, want 1", n)
	}
	form, hdr := m.op.LastTokenRequest()
	first := m.op.TokenResponses()[0]
	if form.Get("grant_type") != "refresh_token" || form.Get("refresh_token") != first["refresh_token"] ||
		!strings.HasPrefix(hdr.Get("Authorization"), "Basic ") {
		m.t.Errorf("refresh request: form %v", form)
	}
	if s := form.Get("scope"); s != "" && s != first["scope"] {
		m.t.Errorf("refresh request asks for scope %q beyond the grant's %q", s, first["scope"])
	}
	return resp, body
}

// userinfoAfterRefresh reports whether userinfo was called after the
// refresh (the second token request).
func (m *module) userinfoAfterRefresh() bool {
	got := m.op.Requests()
	tokens := 0
	for i, r := range got {
		if r == "token" {
			tokens++
			if tokens == 2 {
				return slices.Contains(got[i+1:], "userinfo")
			}
		}
	}
	return false
}

// TestOIDCCClientTestRefreshToken: oidcc-client-test-refresh-token. The
// relying party signs in, refreshes, and calls userinfo with the new
// access token (the suite fails the module on a userinfo call with
// another: "Invalid access token"); a userinfo call before the refresh is
// allowed. The suite passes the module at that call.
func TestOIDCCClientTestRefreshToken(t *testing.T) {
	m := startModule(t, refreshPlan, moduleOptions{})
	b := newBrowser(t)
	resp, body := m.refreshThroughTheSite(b)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the request that refreshed: %d %s", resp.StatusCode, body)
	}
	if !m.userinfoAfterRefresh() {
		t.Fatalf("requests %v: no userinfo call after the refresh", m.op.Requests())
	}
	m.assertAccepted(b, 2)
	if got := m.up.lastHeader().Get("Authorization"); got != "Bearer "+m.latestAccessToken() {
		t.Errorf("the upstream got Authorization %.20q..., want the refreshed access token", got)
	}
	ids := m.idTokens()
	if len(ids) != 2 || jwtPart(t, ids[1], 1)["nonce"] != jwtPart(t, ids[0], 1)["nonce"] {
		t.Fatalf("the refreshed ID token does not repeat the sign-in's nonce; the test provider is not the suite's")
	}
}

// TestOIDCCClientTestRefreshTokenInvalidIssuer:
// oidcc-client-test-refresh-token-invalid-issuer. The refreshed ID token's
// iss is the issuer with "1" appended. The relying party must refuse the
// refresh response (OpenID Connect Core 12.2); the suite fails the module
// at a userinfo call after the refresh and passes it when the timer
// started by the refresh response ends. The sign-in's issuer check
// (go-oidc's) refuses it before the comparison with the session's.
func TestOIDCCClientTestRefreshTokenInvalidIssuer(t *testing.T) {
	m := startModule(t, refreshPlan, moduleOptions{editIDTokens: func(c map[string]any, refresh bool) {
		if refresh {
			c["iss"] = c["iss"].(string) + "1"
		}
	}})
	m.assertRefreshRefused(newBrowser(t), "id token issued by a different provider")
}

// TestOIDCCClientTestRefreshTokenInvalidSub:
// oidcc-client-test-refresh-token-invalid-sub. The refreshed ID token's sub
// has "1" appended; as the invalid issuer (same sub as at sign-in).
func TestOIDCCClientTestRefreshTokenInvalidSub(t *testing.T) {
	m := startModule(t, refreshPlan, moduleOptions{editIDTokens: func(c map[string]any, refresh bool) {
		if refresh {
			c["sub"] = c["sub"].(string) + "1"
		}
	}})
	m.assertRefreshRefused(newBrowser(t), "the refreshed ID token is about another subject")
}

// assertRefreshRefused checks a refused refresh: the request that needed
// it gets 401, userinfo is not called after it, the session has ended (a
// page navigation starts a new sign-in), and the log says why.
func (m *module) assertRefreshRefused(b *browser, reason string) {
	m.t.Helper()
	resp, body := m.refreshThroughTheSite(b)
	if resp.StatusCode != http.StatusUnauthorized {
		m.t.Errorf("the request whose refresh was refused: %d %s, want 401", resp.StatusCode, body)
	}
	if m.userinfoAfterRefresh() || m.op.UserinfoCalls() != 1 {
		m.t.Errorf("requests %v: userinfo was called after the refused refresh", m.op.Requests())
	}
	if slices.Contains(m.up.paths(), "/api/data") {
		m.t.Error("the request whose refresh was refused reached the upstream")
	}
	if resp, _ := b.fetch(m.site.url + "/oauth2/userinfo"); resp.StatusCode != http.StatusUnauthorized {
		m.t.Errorf("the session after the refused refresh: %d, want 401", resp.StatusCode)
	}
	resp, _ = b.noFollow().navigate(m.site.url + "/")
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, m.op.Issuer()+"authorize") {
		m.t.Errorf("a navigation after the refused refresh: %d to %q, want a new sign-in", resp.StatusCode, loc)
	}
	if !strings.Contains(m.site.logs(), reason) {
		m.t.Errorf("the log does not say %q", reason)
	}
	assertNoSecrets(m.t, "Caddy's log", m.site.logs(), m.op.IssuedTokens()...)
}
