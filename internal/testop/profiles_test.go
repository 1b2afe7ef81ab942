package testop

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func newProfileOP(t *testing.T, profile Profile, cfg Config) *Provider {
	t.Helper()
	p, err := NewProfile(profile, cfg)
	if err != nil {
		t.Fatalf("NewProfile(%s): %v", profile, err)
	}
	t.Cleanup(p.Close)
	return p
}

// profileLogin signs in with scopes and extra authorization parameters
// (name, value, ...).
func profileLogin(t *testing.T, p *Provider, scopes []string, params ...string) (*rp, *login) {
	t.Helper()
	r := newRP(t, p)
	r.conf.Scopes = scopes
	var opts []oauth2.AuthCodeOption
	for i := 0; i+1 < len(params); i += 2 {
		opts = append(opts, oauth2.SetAuthURLParam(params[i], params[i+1]))
	}
	l := &login{nonce: randomString(16), verifier: oauth2.GenerateVerifier()}
	opts = append(opts, oauth2.S256ChallengeOption(l.verifier), oauth2.SetAuthURLParam("nonce", l.nonce))
	loc := r.mustAuthorize(t, r.conf.AuthCodeURL("st", opts...))
	tok, err := r.conf.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(l.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	l.token = tok
	l.rawIDToken, _ = tok.Extra("id_token").(string)
	if _, err := r.verifier.Verify(t.Context(), l.rawIDToken); err != nil {
		t.Fatalf("the profile's ID token does not verify: %v", err)
	}
	return r, l
}

func discoveryDoc(t *testing.T, p *Provider) map[string]any {
	t.Helper()
	resp, err := http.Get(strings.TrimSuffix(p.Issuer(), "/") + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func userinfoStatus(t *testing.T, p *Provider, accessToken string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(p.Issuer(), "/")+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// TestProfilesIssuers: each profile's issuer has its provider's shape and
// is what its discovery document names.
func TestProfilesIssuers(t *testing.T) {
	for profile, suffix := range map[Profile]string{
		EntraID:   "/" + EntraTenant + "/v2.0",
		Google:    "",
		Okta:      "/oauth2/default",
		Keycloak:  "/realms/acme",
		Auth0:     "/",
		Dex:       "/dex",
		Zitadel:   "",
		Hydra:     "",
		Authentik: "/application/o/caddy/",
	} {
		p := newProfileOP(t, profile, Config{})
		if p.Profile() != profile {
			t.Errorf("Profile() = %q, want %q", p.Profile(), profile)
		}
		if rest, ok := strings.CutPrefix(p.Issuer(), "http://127.0.0.1:"); !ok || !strings.HasSuffix(rest, suffix) || strings.HasSuffix(rest, "//") ||
			(suffix == "" && strings.Contains(rest, "/")) {
			t.Errorf("%s: issuer %q, want a path %q", profile, p.Issuer(), suffix)
		}
		if doc := discoveryDoc(t, p); doc["issuer"] != p.Issuer() {
			t.Errorf("%s: discovery names issuer %v, want %q", profile, doc["issuer"], p.Issuer())
		}
	}
	if _, err := NewProfile("nonesuch", Config{}); err == nil {
		t.Error("an unknown profile was started")
	}
}

// TestProfilesRefreshTokenScopes: the standard providers issue a refresh
// token only for their offline scope.
func TestProfilesRefreshTokenScopes(t *testing.T) {
	for profile, scope := range map[Profile]string{
		EntraID: "offline_access", Okta: "offline_access", Auth0: "offline_access", Dex: "offline_access",
		Zitadel: "offline_access", Hydra: "offline", Authentik: "offline_access",
	} {
		p := newProfileOP(t, profile, Config{})
		if _, l := profileLogin(t, p, []string{"openid", "email"}); l.token.RefreshToken != "" {
			t.Errorf("%s: a refresh token without %s", profile, scope)
		}
		if _, l := profileLogin(t, p, []string{"openid", "email", scope}); l.token.RefreshToken == "" {
			t.Errorf("%s: no refresh token with %s", profile, scope)
		}
	}
	p := newProfileOP(t, Keycloak, Config{})
	if _, l := profileLogin(t, p, []string{"openid"}); l.token.RefreshToken == "" {
		t.Error("keycloak: no refresh token without offline_access")
	}
}

// TestEntraIDProfile: the claims of Entra ID's v2 tokens, Graph access
// tokens the userinfo endpoint alone accepts, a JWT for the app's API,
// the groups overage, and sid-only front-channel logout.
func TestEntraIDProfile(t *testing.T) {
	p := newProfileOP(t, EntraID, Config{Claims: EntraGroupClaims(EntraGroupIDs(3))})
	r, l := profileLogin(t, p, []string{"openid", "profile", "offline_access"})
	c := jwtClaims(t, l.rawIDToken)
	if c["tid"] != EntraTenant || c["oid"] != EntraObjectID || c["preferred_username"] == nil || c["email"] != nil || len(c["groups"].([]any)) != 3 {
		t.Errorf("ID token claims %v", c)
	}
	if strings.Count(l.token.AccessToken, ".") == 2 {
		t.Error("a Graph access token looks like a JWT the app could read")
	}
	if st, _ := userinfoStatus(t, p, l.token.AccessToken); st != http.StatusOK {
		t.Errorf("userinfo with a Graph token: %d", st)
	}
	_, api := profileLogin(t, p, []string{"openid", "api://app-1/access_as_user"})
	at := jwtClaims(t, api.token.AccessToken)
	if at["aud"] != "api://app-1" || at["scp"] != "access_as_user" || at["tid"] != EntraTenant {
		t.Errorf("API access token claims %v", at)
	}
	if st, _ := userinfoStatus(t, p, api.token.AccessToken); st != http.StatusUnauthorized {
		t.Errorf("userinfo with a token for another API: %d, want 401", st)
	}
	if _, err := r.refresh(t.Context(), l.token); err != nil {
		t.Errorf("refresh: %v", err)
	}

	over := EntraGroupClaims(EntraGroupIDs(EntraGroupLimit + 1))
	p2 := newProfileOP(t, EntraID, Config{Claims: over})
	_, l2 := profileLogin(t, p2, []string{"openid"})
	c2 := jwtClaims(t, l2.rawIDToken)
	src, _ := c2["_claim_sources"].(map[string]any)["src1"].(map[string]any)
	if c2["groups"] != nil || !reflect.DeepEqual(c2["_claim_names"], map[string]any{"groups": "src1"}) ||
		src["endpoint"] != "https://graph.microsoft.com/v1.0/users/"+EntraObjectID+"/getMemberObjects" {
		t.Errorf("overage claims %v", c2)
	}

	u, _ := url.Parse(p.FrontchannelLogoutURL("https://app.example.com/oauth2/frontchannel-logout", "s1"))
	if u.Query().Get("sid") != "s1" || u.Query().Has("iss") {
		t.Errorf("Entra's front-channel URL %s, want sid alone", u)
	}
	if doc := discoveryDoc(t, p); doc["end_session_endpoint"] == nil || doc["frontchannel_logout_supported"] != true {
		t.Errorf("discovery %v", doc)
	}
}

// TestGoogleProfile: hd; a refresh token only for access_type=offline
// with prompt=consent; refreshes keep it; no end_session_endpoint.
func TestGoogleProfile(t *testing.T) {
	p := newProfileOP(t, Google, Config{})
	if doc := discoveryDoc(t, p); doc["end_session_endpoint"] != nil {
		t.Errorf("end_session_endpoint %v", doc["end_session_endpoint"])
	}
	for _, params := range [][]string{nil, {"access_type", "offline"}, {"prompt", "consent"}} {
		if _, l := profileLogin(t, p, []string{"openid", "email"}, params...); l.token.RefreshToken != "" {
			t.Errorf("a refresh token with %v", params)
		}
	}
	r, l := profileLogin(t, p, []string{"openid", "email"}, "access_type", "offline", "prompt", "consent")
	if c := jwtClaims(t, l.rawIDToken); c["hd"] != GoogleDomain || c["email_verified"] != true {
		t.Errorf("ID token claims %v", c)
	}
	if l.token.RefreshToken == "" {
		t.Fatal("no refresh token with access_type=offline and prompt=consent")
	}
	for i := range 2 {
		fresh, err := r.refresh(t.Context(), l.token)
		if err != nil {
			t.Fatalf("refresh %d: %v", i, err)
		}
		if raw := p.TokenResponses()[len(p.TokenResponses())-1]; raw["refresh_token"] != nil {
			t.Errorf("refresh %d answered a new refresh token", i)
		}
		if fresh.RefreshToken != l.token.RefreshToken {
			t.Errorf("refresh %d changed the refresh token", i)
		}
	}
}

// TestOktaProfile: a thin ID token, the filtered groups at userinfo, and
// JWT access tokens of the custom authorization server.
func TestOktaProfile(t *testing.T) {
	p := newProfileOP(t, Okta, Config{})
	_, l := profileLogin(t, p, []string{"openid", "profile", "email", "offline_access"})
	c := jwtClaims(t, l.rawIDToken)
	for _, k := range []string{"email", "name", "groups"} {
		if c[k] != nil {
			t.Errorf("the thin ID token has %s", k)
		}
	}
	st, ui := userinfoStatus(t, p, l.token.AccessToken)
	if st != http.StatusOK || ui["email"] != "alice@example.com" || !reflect.DeepEqual(ui["groups"], []any{"app-admins", "app-users"}) {
		t.Errorf("userinfo %d %v", st, ui)
	}
	if at := jwtClaims(t, l.token.AccessToken); at["aud"] != "api://default" || at["cid"] != p.ClientID() {
		t.Errorf("access token claims %v", at)
	}
}

// TestKeycloakProfile: realm and client roles, JWT access tokens, and
// refresh tokens spent on use.
func TestKeycloakProfile(t *testing.T) {
	p := newProfileOP(t, Keycloak, Config{Claims: KeycloakClientRoles("test-client", "editor")})
	r, l := profileLogin(t, p, []string{"openid"})
	c := jwtClaims(t, l.rawIDToken)
	ra, _ := c["realm_access"].(map[string]any)
	rc, _ := c["resource_access"].(map[string]any)["test-client"].(map[string]any)
	if !reflect.DeepEqual(ra["roles"], []any{"offline_access", "uma_authorization", "app-admin"}) || !reflect.DeepEqual(rc["roles"], []any{"editor"}) {
		t.Errorf("roles in %v", c)
	}
	if at := jwtClaims(t, l.token.AccessToken); at["aud"] != "account" || at["typ"] != "Bearer" {
		t.Errorf("access token claims %v", at)
	}
	if _, err := r.refresh(t.Context(), l.token); err != nil {
		t.Fatal(err)
	}
	if _, err := r.refresh(t.Context(), l.token); err == nil {
		t.Error("a spent refresh token was accepted again")
	}
}

// TestAuth0Profile: the issuer's trailing slash, namespaced claims, JWT
// access tokens only for an audience, and reuse detection.
func TestAuth0Profile(t *testing.T) {
	p := newProfileOP(t, Auth0, Config{})
	if !strings.HasSuffix(p.Issuer(), "/") {
		t.Errorf("issuer %q has no trailing slash", p.Issuer())
	}
	r, l := profileLogin(t, p, []string{"openid", "email", "offline_access"})
	if c := jwtClaims(t, l.rawIDToken); !reflect.DeepEqual(c[Auth0RolesClaim], []any{"admin", "editor"}) {
		t.Errorf("ID token claims %v", c)
	}
	if strings.Contains(l.token.AccessToken, ".") {
		t.Error("an access token without audience is a JWT")
	}
	_, api := profileLogin(t, p, []string{"openid", "offline_access"}, "audience", "https://api.example.com")
	at := jwtClaims(t, api.token.AccessToken)
	if !reflect.DeepEqual(at["aud"], []any{"https://api.example.com", p.Issuer() + "userinfo"}) {
		t.Errorf("access token aud %v", at["aud"])
	}
	if st, _ := userinfoStatus(t, p, api.token.AccessToken); st != http.StatusOK {
		t.Errorf("userinfo with the API token: %d", st)
	}

	// Reuse detection: the old token again revokes the new one too.
	fresh, err := r.refresh(t.Context(), l.token)
	if err != nil || fresh.RefreshToken == l.token.RefreshToken {
		t.Fatalf("refresh: %v (rotated: %v)", err, fresh != nil && fresh.RefreshToken != l.token.RefreshToken)
	}
	if _, err := r.refresh(t.Context(), l.token); err == nil {
		t.Fatal("a spent refresh token was accepted")
	}
	if _, err := r.refresh(context.Background(), fresh); err == nil {
		t.Error("the newest refresh token survived the reuse of a spent one")
	}
	// Another sign-in is not affected.
	_, other := profileLogin(t, p, []string{"openid", "offline_access"})
	if _, err := r.refresh(t.Context(), other.token); err != nil {
		t.Errorf("another sign-in's refresh: %v", err)
	}
}
