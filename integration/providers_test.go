package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// The provider guides (docs/providers/*.md) are tested with their own
// Caddyfile, read from the guide itself so that the two cannot drift. A
// guide's first ```caddyfile block is used as written, but for three
// things, which docs/providers/README.md lists: the site address
// app.example.com becomes the test's http://127.0.0.1:<port>, the upstream
// localhost:3000 the test's upstream, and a global options block (no admin
// endpoint, a temporary storage, logs to a file) goes before it. The
// provider's URL and credentials reach the Caddyfile as every guide has
// them, through the environment: OIDC_ISSUER, OIDC_CLIENT_ID,
// OIDC_CLIENT_SECRET.

// guideCaddyfile returns the first caddyfile block of the guide.
func guideCaddyfile(t *testing.T, guide string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "providers", guide+".md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n```caddyfile\n")
	block, _, closed := strings.Cut(rest, "\n```\n")
	if !ok || !closed {
		t.Fatalf("docs/providers/%s.md has no ```caddyfile block", guide)
	}
	return block + "\n"
}

// startGuideSite runs the guide's Caddyfile against provider p, proxying
// to a fresh upstream.
func startGuideSite(t *testing.T, guide string, p *testop.Provider) (*site, *upstream) {
	t.Helper()
	up := newUpstream(t)
	t.Setenv("OIDC_ISSUER", p.Issuer())
	t.Setenv("OIDC_CLIENT_ID", p.ClientID())
	t.Setenv("OIDC_CLIENT_SECRET", p.ClientSecret())
	dir := t.TempDir()
	s := &site{t: t, logFile: filepath.Join(dir, "caddy.log"), storage: filepath.Join(dir, "storage")}
	s.url = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))

	body := guideCaddyfile(t, guide)
	for _, must := range []string{"app.example.com {", "localhost:3000"} {
		if strings.Count(body, must) != 1 {
			t.Fatalf("the guide's Caddyfile must have %q exactly once", must)
		}
	}
	body = strings.Replace(body, "app.example.com {", s.url+" {", 1)
	body = strings.Replace(body, "localhost:3000", up.hostPort(), 1)
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %s
	log {
		output file %s
		format json
		level DEBUG
	}
}
%s`, s.storage, s.logFile, body)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting the guide's Caddyfile: %v\n%s", err, caddyfile)
	}
	s.config = cfg
	s.load()
	t.Cleanup(func() { _ = caddy.Stop() })
	return s, up
}

// callAPI calls /api/data as the browser app would, without a token: the
// guide's Caddyfile adds the placeholder, token_inject the token. It
// returns the access token the upstream received.
func callAPI(t *testing.T, b *browser, s *site, up *upstream) string {
	t.Helper()
	resp, body := b.fetch(s.url + "/api/data")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/data: %d %s", resp.StatusCode, body)
	}
	tok, ok := strings.CutPrefix(up.lastHeader().Get("Authorization"), "Bearer ")
	if !ok || tok == "" || strings.Contains(tok, "<<") {
		t.Fatalf("the upstream got Authorization %q, not a token", up.lastHeader().Get("Authorization"))
	}
	return tok
}

// latestAccessToken is the access token of the provider's latest answer.
func latestAccessToken(t *testing.T, p *testop.Provider) string {
	t.Helper()
	rs := p.TokenResponses()
	if len(rs) == 0 {
		t.Fatal("no token response")
	}
	tok, _ := rs[len(rs)-1]["access_token"].(string)
	return tok
}

// wantRefreshedToken calls the API with a token about to expire: the
// upstream must get a valid, newly refreshed token, with one refresh.
func wantRefreshedToken(t *testing.T, p *testop.Provider, b *browser, s *site, up *upstream) string {
	t.Helper()
	before := p.RefreshCalls()
	tok := callAPI(t, b, s, up)
	if p.RefreshCalls() != before+1 {
		t.Fatalf("%d refreshes for an expiring token, want 1", p.RefreshCalls()-before)
	}
	if !p.ValidAccessToken(tok) || tok != latestAccessToken(t, p) {
		t.Fatalf("the upstream got %.16q..., not the refreshed access token", tok)
	}
	return tok
}

// signOutAtProvider presses sign-out and passes through the provider's
// end-session endpoint, which sends the browser back; the browser must end
// on rd, signed out.
func signOutAtProvider(t *testing.T, b *browser, s *site, p *testop.Provider) url.Values {
	t.Helper()
	resp, page := b.signOut(s, "?rd=/bye")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-out: %d %s", resp.StatusCode, page)
	}
	action, form := parseAutoPostForm(t, page)
	if action != strings.TrimSuffix(p.Issuer(), "/")+"/end_session" {
		t.Fatalf("sign-out posts to %q, not the end_session_endpoint", action)
	}
	resp, _ = b.do(postFormRequest(action, form))
	if resp.Request.URL.String() != s.url+"/bye" {
		t.Fatalf("after the provider's sign-out the browser is at %s (%d)", resp.Request.URL, resp.StatusCode)
	}
	wantSignedOut(t, b, s)
	return p.LastEndSessionRequest()
}

func postFormRequest(action string, form url.Values) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, action, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	return req
}

// signOutHere presses sign-out at a site whose provider has no
// end_session_endpoint: the session ends here, and the browser goes to rd
// without visiting the provider.
func signOutHere(t *testing.T, b *browser, s *site, p *testop.Provider) {
	t.Helper()
	before := len(p.Requests())
	resp, _ := b.signOut(s, "?rd=/bye")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/bye" {
		t.Fatalf("sign-out: %d to %q, want 303 to /bye", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, r := range p.Requests()[before:] {
		if r == "end_session" {
			t.Error("the sign-out visited an end-session endpoint")
		}
	}
	wantSignedOut(t, b, s)
}

func wantSignedOut(t *testing.T, b *browser, s *site) {
	t.Helper()
	if resp, _ := b.fetch(s.url + "/api/data"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after sign-out: %d, want 401", resp.StatusCode)
	}
}

// sessionChunks counts the site's session cookies (chunks).
func sessionChunks(b *browser, s *site) int {
	n := 0
	for _, c := range b.cookies(s) {
		if strings.HasPrefix(c.Name, "oidc_session") {
			n++
		}
	}
	return n
}

// idTokenOf is the signed-in browser's ID token claims, as the browser app
// reads them.
func idTokenOf(t *testing.T, b *browser, s *site) map[string]any {
	t.Helper()
	resp, body := b.fetch(s.url + "/oauth2/userinfo")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/oauth2/userinfo: %d %s", resp.StatusCode, body)
	}
	idt, _ := jsonBody(t, body)["idToken"].(map[string]any)
	return idt
}

// frontchannelLogout loads the URL as the provider's logout page does, in
// a cross-site iframe without the site's cookies.
func frontchannelLogout(t *testing.T, u string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Sec-Fetch-Dest", "iframe")
	resp, _ := newBrowser(t).do(req)
	return resp.StatusCode
}

// TestEntraIDGuide: docs/providers/entra-id.md against an Entra ID-shaped
// provider: claims upstream (oid, preferred_username, tid, 150 group IDs
// in a chunked session), no userinfo call, a JWT for the app's own API
// refreshed and substituted, front-channel logout with sid alone, and
// RP-initiated logout; past 200 groups, the overage claim signs in without
// groups.
func TestEntraIDGuide(t *testing.T) {
	groups := testop.EntraGroupIDs(150)
	p := newProfileProvider(t, testop.EntraID, testop.Config{
		Claims:         testop.EntraGroupClaims(groups),
		AccessTokenTTL: 10 * time.Second, // within token_inject's refresh window
	})
	s, up := startGuideSite(t, "entra-id", p)
	b := newBrowser(t)
	b.signIn(s, "/")
	wantHeaders(t, up.lastHeader(), map[string]string{
		"X-User-Id":     testop.EntraObjectID,
		"X-User-Name":   "alice@contoso.onmicrosoft.com",
		"X-User-Tenant": testop.EntraTenant,
		"X-User-Groups": strings.Join(groups, ","),
	})
	if n := sessionChunks(b, s); n < 2 {
		t.Errorf("a session with 150 groups in %d cookie(s), want it chunked", n)
	}
	if p.UserinfoCalls() != 0 {
		t.Errorf("%d userinfo calls with userinfo off", p.UserinfoCalls())
	}
	if idt := idTokenOf(t, b, s); idt["email"] != nil {
		t.Errorf("the ID token has an email: %v", idt["email"])
	}

	p.SetAccessTokenTTL(time.Hour)
	tok := wantRefreshedToken(t, p, b, s, up)
	at := decodeJWTClaims(t, tok)
	if at["aud"] != "api://3f0b8c55-1c2d-4e5f-8a9b-0c1d2e3f4a5b" || at["scp"] != "access_as_user" {
		t.Errorf("the API got a token with aud %v, scp %v; want one for the guide's API", at["aud"], at["scp"])
	}

	// Front-channel logout, as Entra ID sends it: sid, no iss.
	other := newBrowser(t)
	other.signIn(s, "/")
	sid, _ := idTokenOf(t, b, s)["sid"].(string)
	u := p.FrontchannelLogoutURL(s.url+"/oauth2/frontchannel-logout", sid)
	if strings.Contains(u, "iss=") {
		t.Fatalf("the profile's front-channel URL %s has iss", u)
	}
	if st := frontchannelLogout(t, u); st != http.StatusOK {
		t.Fatalf("front-channel logout with sid alone: %d", st)
	}
	wantSignedOut(t, b, s)
	if resp, _ := other.fetch(s.url + "/api/data"); resp.StatusCode != http.StatusOK {
		t.Fatalf("another sign-in after front-channel logout: %d, want 200", resp.StatusCode)
	}

	got := signOutAtProvider(t, other, s, p)
	if got.Get("post_logout_redirect_uri") != s.url+"/oauth2/logout" || got.Get("id_token_hint") == "" {
		t.Errorf("end-session request %v", got)
	}

	t.Run("group overage", func(t *testing.T) {
		p := newProfileProvider(t, testop.EntraID, testop.Config{
			Claims: testop.EntraGroupClaims(testop.EntraGroupIDs(testop.EntraGroupLimit + 1)),
		})
		s, up := startGuideSite(t, "entra-id", p)
		b := newBrowser(t)
		b.signIn(s, "/")
		wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Groups": "", "X-User-Id": testop.EntraObjectID})
		if names, _ := idTokenOf(t, b, s)["_claim_names"].(map[string]any); names["groups"] != "src1" {
			t.Errorf("the ID token has no groups overage claim: %v", names)
		}
	})
}

// wantRefused signs a new user in whom the guide's allow rules refuse: the
// navigation ends on oidc_auth's 403 page, an API call gets its JSON, the
// upstream sees neither, and the log names the rule, not the user's claims.
func wantRefused(t *testing.T, b *browser, s *site, up *upstream, who string) {
	t.Helper()
	resp, body := b.navigate(s.url + "/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, "may not use this site") {
		t.Errorf("%s: %d %s %q, want the 403 page", who, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, body = b.fetch(s.url + "/api/data")
	if resp.StatusCode != http.StatusForbidden || jsonBody(t, body)["error"] != "access_denied" {
		t.Errorf("%s: API call %d %s, want 403 access_denied", who, resp.StatusCode, body)
	}
	if up.count() != 0 {
		t.Errorf("%s: the upstream saw %d requests", who, up.count())
	}
	if !strings.Contains(s.logs(), `"rule":"no allow rule matched"`) {
		t.Errorf("%s: the log does not say which rule refused", who)
	}
}

func newProfileProvider(t *testing.T, profile testop.Profile, cfg testop.Config) *testop.Provider {
	t.Helper()
	p, err := testop.NewProfile(profile, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestGoogleGuide: docs/providers/google.md against a Google-shaped
// provider: the authorization request asks for offline access with
// consent (else no refresh token), the hd claim upstream and enforced by
// the guide's allow rule (403 page, access_denied JSON, the rule logged),
// two refreshes with the refresh token Google keeps (its refresh answers
// carry none), and a sign-out that ends the session at the site only,
// Google having no end_session_endpoint.
func TestGoogleGuide(t *testing.T) {
	p := newProfileProvider(t, testop.Google, testop.Config{AccessTokenTTL: 10 * time.Second})
	s, up := startGuideSite(t, "google", p)
	b := newBrowser(t)
	b.signIn(s, "/")
	q := p.LastAuthorizeRequest()
	if q.Get("access_type") != "offline" || q.Get("prompt") != "consent" || q.Get("hd") != testop.GoogleDomain {
		t.Errorf("authorization request %v; want access_type=offline, prompt=consent, hd", q)
	}
	wantHeaders(t, up.lastHeader(), map[string]string{
		"X-User-Id":     "110169484474386276334",
		"X-User-Email":  "alice@" + testop.GoogleDomain,
		"X-User-Domain": testop.GoogleDomain,
	})
	rs := p.TokenResponses()
	if rs[0]["refresh_token"] == nil {
		t.Fatal("no refresh token at sign-in")
	}
	first := wantRefreshedToken(t, p, b, s, up)
	second := wantRefreshedToken(t, p, b, s, up) // with the same refresh token
	if first == second {
		t.Error("the second refresh brought no new access token")
	}
	for _, r := range p.TokenResponses()[1:] {
		if r["refresh_token"] != nil {
			t.Error("the Google profile answered a refresh with a refresh token")
		}
	}
	signOutHere(t, b, s, p)

	t.Run("another domain", func(t *testing.T) {
		for name, claims := range map[string]map[string]any{
			"gmail":        {"hd": nil, "email": "bob@gmail.com"},
			"other domain": {"hd": "other.example", "email": "carol@other.example"},
		} {
			p := newProfileProvider(t, testop.Google, testop.Config{Claims: claims})
			s, up := startGuideSite(t, "google", p)
			wantRefused(t, newBrowser(t), s, up, name)
		}
	})
}

// TestOktaGuide: docs/providers/okta.md against an Okta-shaped provider:
// a thin ID token whose email, name and filtered groups come from
// userinfo, the guide's allow rule admitting app-users only by those
// groups, JWT access tokens of the custom authorization server refreshed
// twice with rotated refresh tokens, and RP-initiated logout.
func TestOktaGuide(t *testing.T) {
	p := newProfileProvider(t, testop.Okta, testop.Config{AccessTokenTTL: 10 * time.Second})
	s, up := startGuideSite(t, "okta", p)
	b := newBrowser(t)
	b.signIn(s, "/")
	if !hasScopes(p.LastAuthorizeRequest().Get("scope"), "offline_access") {
		t.Errorf("scope %q has no offline_access", p.LastAuthorizeRequest().Get("scope"))
	}
	wantHeaders(t, up.lastHeader(), map[string]string{
		"X-User-Id":     "00u1abcd2EFGH3ijk4l5",
		"X-User-Email":  "alice@example.com",
		"X-User-Name":   "Alice Example",
		"X-User-Groups": "app-admins,app-users",
	})
	if p.UserinfoCalls() != 1 {
		t.Errorf("%d userinfo calls at sign-in, want 1", p.UserinfoCalls())
	}
	if idt := idTokenOf(t, b, s); idt["email"] != nil || idt["groups"] != nil {
		t.Errorf("the thin ID token has profile claims: %v", idt)
	}
	rt := p.TokenResponses()[0]["refresh_token"]
	tok := wantRefreshedToken(t, p, b, s, up)
	if at := decodeJWTClaims(t, tok); at["aud"] != "api://default" {
		t.Errorf("access token aud %v, want api://default", at["aud"])
	}
	if rotated := p.TokenResponses()[1]["refresh_token"]; rotated == nil || rotated == rt {
		t.Fatal("the refresh did not rotate the refresh token")
	}
	wantRefreshedToken(t, p, b, s, up) // with the rotated one: the first is spent
	signOutAtProvider(t, b, s, p)

	t.Run("outside app-users", func(t *testing.T) {
		for _, groups := range []any{[]string{"app-admins", "app-users-old"}, nil} {
			p := newProfileProvider(t, testop.Okta, testop.Config{UserinfoClaims: map[string]any{"groups": groups}})
			s, up := startGuideSite(t, "okta", p)
			wantRefused(t, newBrowser(t), s, up, fmt.Sprintf("groups %v", groups))
		}
	})
}

func hasScopes(scope string, want ...string) bool {
	have := strings.Fields(scope)
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestKeycloakGuide: docs/providers/keycloak.md against a Keycloak-shaped
// provider: realm and client roles upstream, the client role opening
// /admin/ through the guide's oidc_claim matcher ("Admins only." without
// it), JWT access tokens refreshed twice with refresh tokens spent on use,
// back-channel logout of one Keycloak session by its sid, and
// RP-initiated logout.
func TestKeycloakGuide(t *testing.T) {
	p := newProfileProvider(t, testop.Keycloak, testop.Config{
		ClientID:       "caddy",
		Claims:         testop.KeycloakClientRoles("caddy", "admin"),
		AccessTokenTTL: 10 * time.Second,
	})
	s, up := startGuideSite(t, "keycloak", p)
	b := newBrowser(t)
	b.signIn(s, "/admin/users")
	wantHeaders(t, up.lastHeader(), map[string]string{
		"X-User-Name":   "alice",
		"X-User-Email":  "alice@example.com",
		"X-Realm-Roles": "offline_access,uma_authorization,app-admin",
		"X-App-Roles":   "admin",
	})
	tok := wantRefreshedToken(t, p, b, s, up)
	if at := decodeJWTClaims(t, tok); at["aud"] != "account" || at["azp"] != "caddy" {
		t.Errorf("access token aud %v azp %v", at["aud"], at["azp"])
	}
	wantRefreshedToken(t, p, b, s, up) // the first refresh token is spent

	// Keycloak ends one of the user's sessions: a logout token with its sid.
	other := newBrowser(t)
	other.signIn(s, "/")
	idt := idTokenOf(t, b, s)
	lt, err := p.LogoutToken(idt["sub"].(string), idt["sid"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if st, body := postLogoutToken(t, s.url, lt); st != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", st, body)
	}
	wantSignedOut(t, b, s)
	if resp, _ := other.fetch(s.url + "/api/data"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the user's other Keycloak session after back-channel logout: %d, want 200", resp.StatusCode)
	}
	signOutAtProvider(t, other, s, p)

	t.Run("without the client role", func(t *testing.T) {
		// No role of the client: no resource_access.caddy at all.
		p := newProfileProvider(t, testop.Keycloak, testop.Config{ClientID: "caddy", Claims: testop.KeycloakClientRoles("another-client", "admin")})
		s, up := startGuideSite(t, "keycloak", p)
		b := newBrowser(t)
		b.signIn(s, "/")
		if resp, body := b.navigate(s.url + "/admin/users"); resp.StatusCode != http.StatusForbidden || body != "Admins only." {
			t.Errorf("/admin/ without the role: %d %q, want 403", resp.StatusCode, body)
		}
		if up.requests != 1 {
			t.Errorf("the upstream saw %d requests, want only the sign-in's", up.requests)
		}
	})
}

// TestAuth0Guide: docs/providers/auth0.md against an Auth0-shaped
// provider: the issuer's trailing slash, a namespaced roles claim
// upstream and opening /admin/ through the guide's oidc_claim matcher, the
// audience parameter making the access token a JWT for the API (and
// userinfo still answering), a refresh with rotation, reuse detection
// ending the session when a spent refresh token is replayed, and logout
// with end-session discovery on and, as on older tenants, off.
func TestAuth0Guide(t *testing.T) {
	p := newProfileProvider(t, testop.Auth0, testop.Config{AccessTokenTTL: 10 * time.Second})
	if !strings.HasSuffix(p.Issuer(), "/") {
		t.Fatalf("issuer %q", p.Issuer())
	}
	s, up := startGuideSite(t, "auth0", p)
	b := newBrowser(t)
	b.signIn(s, "/")
	if q := p.LastAuthorizeRequest(); q.Get("audience") != "https://api.example.com" || !hasScopes(q.Get("scope"), "offline_access") {
		t.Errorf("authorization request %v", q)
	}
	wantHeaders(t, up.lastHeader(), map[string]string{
		"X-User-Id":    "auth0|64b7f0c2a1e4d3b2c1a09f8e",
		"X-User-Email": "alice@example.com",
		"X-User-Roles": "admin,editor",
	})
	if resp, body := b.navigate(s.url + "/admin/users"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "at /admin/users") {
		t.Errorf("/admin/ with the admin role: %d %q, want the upstream's answer", resp.StatusCode, body)
	}
	if p.UserinfoCalls() != 1 {
		t.Errorf("%d userinfo calls, want 1 (with the API's JWT)", p.UserinfoCalls())
	}
	tok := wantRefreshedToken(t, p, b, s, up)
	if aud, _ := decodeJWTClaims(t, tok)["aud"].([]any); len(aud) == 0 || aud[0] != "https://api.example.com" {
		t.Errorf("access token aud %v", aud)
	}

	// Someone replays the spent refresh token: Auth0 revokes the sign-in's
	// refresh tokens, and the user's next refresh ends the session.
	spent, _ := p.TokenResponses()[0]["refresh_token"].(string)
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {spent}, "client_id": {p.ClientID()}, "client_secret": {p.ClientSecret()}}
	resp, err := http.PostForm(p.Issuer()+"token", form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("the replayed refresh token: %d, want 400", resp.StatusCode)
	}
	if resp, _ := b.fetch(s.url + "/api/data"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API after reuse detection revoked the refresh token: %d, want 401", resp.StatusCode)
	}
	wantSignedOut(t, b, s)

	b2 := newBrowser(t)
	b2.signIn(s, "/")
	signOutAtProvider(t, b2, s, p)

	t.Run("without the admin role", func(t *testing.T) {
		p := newProfileProvider(t, testop.Auth0, testop.Config{Claims: map[string]any{testop.Auth0RolesClaim: []string{"editor"}}})
		s, up := startGuideSite(t, "auth0", p)
		b := newBrowser(t)
		b.signIn(s, "/")
		if resp, body := b.navigate(s.url + "/admin/users"); resp.StatusCode != http.StatusForbidden || body != "Admins only." {
			t.Errorf("/admin/ without the role: %d %q, want 403", resp.StatusCode, body)
		}
		if up.requests != 1 {
			t.Errorf("the upstream saw %d requests, want only the sign-in's", up.requests)
		}
	})

	t.Run("without end-session discovery", func(t *testing.T) {
		p := newProfileProvider(t, testop.Auth0, testop.Config{})
		if err := p.ChangeDiscovery(map[string]any{"end_session_endpoint": nil}); err != nil {
			t.Fatal(err)
		}
		s, _ := startGuideSite(t, "auth0", p)
		b := newBrowser(t)
		b.signIn(s, "/")
		signOutHere(t, b, s, p)
	})
}

// TestStandardProviderGuides: the guides of the providers of the standard
// shape, each against its profile: the offline scope the guide asks for
// gets a refresh token, claims reach the upstream, the access token is
// substituted and refreshed twice (the refresh tokens rotate), and the
// sign-out ends the session at the provider too where it has an
// end_session_endpoint, at the site only where not (Dex).
func TestStandardProviderGuides(t *testing.T) {
	for _, c := range []struct {
		guide      string
		profile    testop.Profile
		endSession bool
	}{
		{"dex", testop.Dex, false},
		{"zitadel", testop.Zitadel, true},
		{"hydra", testop.Hydra, true},
		{"authentik", testop.Authentik, true},
	} {
		t.Run(c.guide, func(t *testing.T) {
			p := newProfileProvider(t, c.profile, testop.Config{AccessTokenTTL: 10 * time.Second})
			s, up := startGuideSite(t, c.guide, p)
			b := newBrowser(t)
			b.signIn(s, "/")
			wantHeaders(t, up.lastHeader(), map[string]string{
				"X-User-Id":    "user-1",
				"X-User-Email": "alice@example.com",
				"X-User-Name":  "Alice Example",
			})
			if rt := p.TokenResponses()[0]["refresh_token"]; rt == nil {
				t.Fatalf("no refresh token for scope %q", p.LastAuthorizeRequest().Get("scope"))
			}
			first := wantRefreshedToken(t, p, b, s, up)
			if second := wantRefreshedToken(t, p, b, s, up); second == first {
				t.Error("the second refresh brought no new access token")
			}
			if c.endSession {
				signOutAtProvider(t, b, s, p)
			} else {
				signOutHere(t, b, s, p)
			}
		})
	}
}
