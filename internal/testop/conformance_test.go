package testop

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// TestEditIDTokens: edits reach sign-in and refreshed ID tokens, and tell
// them apart.
func TestEditIDTokens(t *testing.T) {
	p := newOP(t, Config{})
	p.EditIDTokens(func(c map[string]any, refresh bool) {
		delete(c, "sub")
		c["iss"] = c["iss"].(string) + "1"
		if refresh {
			c["refreshed"] = true
		}
	})
	r := newRP(t, p)
	l := r.mustLogin(t)
	c := jwtClaims(t, l.rawIDToken)
	if c["sub"] != nil || c["iss"] != p.Issuer()+"1" || c["refreshed"] != nil {
		t.Errorf("sign-in ID token claims %v", c)
	}
	_, raw := r.mustRefresh(t, l.token)
	if c := jwtClaims(t, raw); c["refreshed"] != true {
		t.Errorf("refreshed ID token claims %v", c)
	}
	p.EditIDTokens(nil)
	if c := jwtClaims(t, r.mustLogin(t).rawIDToken); c["sub"] != "user-1" || c["iss"] != p.Issuer() {
		t.Errorf("after EditIDTokens(nil): %v", c)
	}
}

// TestShapeTokenResponses: no expires_in, no refresh token, and the
// sign-in's nonce repeated at a refresh.
func TestShapeTokenResponses(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	p.ShapeTokenResponses(TokenResponseShape{NoExpiresIn: true, NoRefreshToken: true})
	l := r.mustLogin(t)
	got := p.TokenResponses()
	if len(got) != 1 || got[0]["expires_in"] != nil || got[0]["refresh_token"] != nil || got[0]["access_token"] != l.token.AccessToken {
		t.Fatalf("token responses %v", got)
	}
	if !p.ValidAccessToken(l.token.AccessToken) {
		t.Error("the access token without expires_in is not valid")
	}
	if _, err := r.refresh(t.Context(), &oauth2.Token{AccessToken: "x", RefreshToken: "anything"}); err == nil {
		t.Error("a refresh succeeded without a refresh token issued")
	}

	p.ShapeTokenResponses(TokenResponseShape{NoExpiresIn: true, RepeatNonce: true})
	l = r.mustLogin(t)
	if l.token.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	fresh, raw := r.mustRefresh(t, l.token)
	if c := jwtClaims(t, raw); c["nonce"] != l.nonce {
		t.Errorf("refreshed ID token nonce %v, want the sign-in's %q", c["nonce"], l.nonce)
	}
	all := p.TokenResponses()
	if last := all[len(all)-1]; last["access_token"] != fresh.AccessToken || last["expires_in"] != nil {
		t.Errorf("last token response %v", last)
	}
	// Without RepeatNonce, as before.
	p.ShapeTokenResponses(TokenResponseShape{})
	if _, raw := r.mustRefresh(t, fresh); jwtClaims(t, raw)["nonce"] != nil {
		t.Error("a refreshed ID token repeats the nonce by default")
	}
}

// TestRequestsAreLoggedInOrder: the log names endpoints as they came.
func TestRequestsAreLoggedInOrder(t *testing.T) {
	p := newOP(t, Config{})
	r := newRP(t, p)
	l := r.mustLogin(t)
	verifyJWT(t, p, l.rawIDToken)
	userinfo(t, p, l.token.AccessToken)
	getWithToken(t, p.Issuer()+"/nowhere", "")
	want := []string{"discovery", "authorize", "token", "discovery", "jwks", "userinfo", "/nowhere"}
	if got := p.Requests(); !slices.Equal(got, want) {
		t.Errorf("Requests() = %v, want %v", got, want)
	}
}

// TestReleaseUserinfoByScope: the claims of the scopes granted, no more.
func TestReleaseUserinfoByScope(t *testing.T) {
	p := newOP(t, Config{UserinfoClaims: map[string]any{
		"given_name": "Alice", "phone_number": "+1 555", "address": map[string]any{"country": "NZ"}, "custom": "x",
	}})
	p.ReleaseUserinfoByScope(true)
	r := newRP(t, p)
	r.conf.Scopes = []string{oidc.ScopeOpenID, "profile"}
	l := r.mustLogin(t)
	_, body := userinfo(t, p, l.token.AccessToken)
	got := jsonObject(t, body)
	if got["sub"] != "user-1" || got["given_name"] != "Alice" || got["name"] != "Alice Example" {
		t.Errorf("profile scope: %v", got)
	}
	for _, c := range []string{"email", "phone_number", "address", "custom"} {
		if got[c] != nil {
			t.Errorf("claim %s released without its scope: %v", c, got)
		}
	}
	r.conf.Scopes = []string{oidc.ScopeOpenID, "email", "phone", "address"}
	_, body = userinfo(t, p, r.mustLogin(t).token.AccessToken)
	got = jsonObject(t, body)
	if got["email"] == nil || got["phone_number"] == nil || got["address"] == nil || got["given_name"] != nil {
		t.Errorf("email phone address scopes: %v", got)
	}
}

// TestSessionManagement: discovery, session_state, check_session.
func TestSessionManagement(t *testing.T) {
	p := newOP(t, Config{})
	if doc := discovery(t, p.Issuer()); doc["check_session_iframe"] != nil {
		t.Errorf("check_session_iframe announced by default: %v", doc)
	}
	if resp, _ := getWithToken(t, p.Issuer()+"/check_session", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("check_session by default: %d", resp.StatusCode)
	}
	p.SetSessionManagement(true)
	doc := discovery(t, p.Issuer())
	if doc["check_session_iframe"] != p.Issuer()+"/check_session" || doc["frontchannel_logout_supported"] != true ||
		doc["frontchannel_logout_session_supported"] != true {
		t.Errorf("discovery %v", doc)
	}
	r := newRP(t, p)
	loc := r.mustAuthorize(t, r.conf.AuthCodeURL("st", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if loc.Query().Get("session_state") == "" || loc.Query().Get("code") == "" {
		t.Errorf("authorization response %v", loc)
	}
	if resp, body := getWithToken(t, p.Issuer()+"/check_session", ""); resp.StatusCode != http.StatusOK || !strings.Contains(body, "postMessage") {
		t.Errorf("check_session: %d %s", resp.StatusCode, body)
	}
}
