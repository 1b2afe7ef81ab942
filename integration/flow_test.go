package integration

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcgate/caddy-oidc/internal/devop"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// TestSignInFlowWithZitadelProvider walks the whole flow against the
// zitadel OP with its real login form: unauthenticated -> provider -> login
// form -> callback -> session -> proxied request carrying the user's email
// -> userinfo -> logout -> unauthenticated again.
func TestSignInFlowWithZitadelProvider(t *testing.T) {
	op := newZitadelProvider(t)
	up := newUpstream(t)
	s := startSite(t, up, siteOptions{issuer: op.Issuer(), clientID: "caddy-test", secret: "test-secret"})
	b := newBrowser(t)

	resp, body := b.navigate(s.url + "/app/page")
	if !strings.HasPrefix(resp.Request.URL.String(), op.Issuer()) {
		t.Fatalf("unauthenticated navigation ended at %s (%d), want the provider's login page", resp.Request.URL, resp.StatusCode)
	}
	resp, err := devop.SignIn(b.client, resp.Request.URL.String(), devop.DemoUsername, devop.DemoPassword)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/app/page" {
		t.Fatalf("after the login form: %s %d, want /app/page 200", resp.Request.URL, resp.StatusCode)
	}
	email := up.lastHeader().Get("X-User-Email")
	if email == "" || !strings.Contains(email, "@") {
		t.Fatalf("upstream saw X-User-Email %q, want the user's email", email)
	}
	if up.lastHeader().Get("X-User-Id") == "" {
		t.Fatal("upstream saw no X-User-Id")
	}

	resp, body = b.fetch(s.url + "/oauth2/userinfo")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
	}
	info := jsonBody(t, body)
	claims, _ := info["idToken"].(map[string]any)
	if info["sub"] == "" || claims["email"] != email || info["rawIdToken"] == "" {
		t.Fatalf("userinfo = %s", body)
	}
	for _, k := range []string{"accessToken", "access_token", "refreshToken", "refresh_token"} {
		if _, ok := info[k]; ok {
			t.Fatalf("userinfo exposes %s", k)
		}
	}

	// Logout ends the local session and hands the provider an auto-posting
	// form for RP-initiated logout.
	resp, body = b.signOut(s, "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `name="id_token_hint"`) {
		t.Fatalf("logout: %d %s", resp.StatusCode, body)
	}
	resp, _ = b.noFollow().navigate(s.url + "/app/page")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), op.Issuer()) {
		t.Fatalf("after logout: %d %s, want a redirect to the provider", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestLoginUsesPKCEStateAndNonce checks the authorization request.
func TestLoginUsesPKCEStateAndNonce(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{extra: "auth_param prompt login"})
	b := newBrowser(t)
	b.signIn(s, "/")
	q := p.LastAuthorizeRequest()
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
		t.Errorf("PKCE: method %q challenge %q", q.Get("code_challenge_method"), q.Get("code_challenge"))
	}
	if len(q.Get("state")) < 32 || len(q.Get("nonce")) < 32 {
		t.Errorf("state %q nonce %q: want long random values", q.Get("state"), q.Get("nonce"))
	}
	if q.Get("prompt") != "login" {
		t.Errorf("prompt = %q, want the configured auth_param", q.Get("prompt"))
	}
	if q.Get("scope") != "openid profile email" {
		t.Errorf("scope = %q", q.Get("scope"))
	}
}

// TestUnauthenticatedNavigationRedirectsAndAPICallGets401 checks the auto mode.
func TestUnauthenticatedNavigationRedirectsAndAPICallGets401(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t).noFollow()

	resp, _ := b.navigate(s.url + "/page?x=1")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), p.Issuer()+"/authorize?") {
		t.Fatalf("navigation: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, body := b.fetch(s.url + "/api/data")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("API call: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if m := jsonBody(t, body); m["error"] != "unauthenticated" || m["login_url"] != "/oauth2/login?rd=%2Fapi%2Fdata" {
		t.Fatalf("API call body: %s", body)
	}
	req, _ := http.NewRequest(http.MethodPost, s.url+"/form", strings.NewReader("a=b"))
	req.Header.Set("Accept", "text/html")
	if resp, _ := b.do(req); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without a session: %d, want 401", resp.StatusCode)
	}
}

// TestUnauthenticatedStatusIsConfigurable checks `unauthenticated status 403`
// and `unauthenticated redirect`.
func TestUnauthenticatedStatusIsConfigurable(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{extra: "unauthenticated status 403"})
	if resp, _ := newBrowser(t).noFollow().navigate(s.url + "/"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status mode: %d, want 403", resp.StatusCode)
	}
	s, _ = testopSite(t, p, siteOptions{extra: "unauthenticated redirect"})
	if resp, _ := newBrowser(t).noFollow().fetch(s.url + "/api"); resp.StatusCode != http.StatusFound {
		t.Fatalf("redirect mode: %d, want 302", resp.StatusCode)
	}
}

// TestSignInReturnsToOriginalURL checks the round trip keeps path and query.
func TestSignInReturnsToOriginalURL(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	resp, body := b.navigate(s.url + "/deep/link?q=a%20b&x=1")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.RequestURI() != "/deep/link?q=a%20b&x=1" {
		t.Fatalf("ended at %s (%d): %s", resp.Request.URL, resp.StatusCode, body)
	}
	if !strings.Contains(body, `"alice@example.com"`) {
		t.Fatalf("upstream did not see the user's email: %s", body)
	}
}

// TestPostLoginRedirectIsSameOriginPathOnly checks that ?rd= can never send
// the user to another site.
func TestPostLoginRedirectIsSameOriginPathOnly(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	for _, rd := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "/\t/evil.example", "evil.example", "javascript:alert(1)"} {
		b := newBrowser(t)
		resp, _ := b.navigate(s.url + "/oauth2/login?rd=" + url.QueryEscape(rd))
		if resp.Request.URL.Host != strings.TrimPrefix(s.url, "http://") || resp.Request.URL.Path != "/" {
			t.Errorf("rd=%q ended at %s, want / on the site", rd, resp.Request.URL)
		}
	}
	b := newBrowser(t)
	if resp, _ := b.navigate(s.url + "/oauth2/login?rd=" + url.QueryEscape("/ok?a=1")); resp.Request.URL.RequestURI() != "/ok?a=1" {
		t.Errorf("a same-origin rd ended at %s", resp.Request.URL)
	}
}

// TestSeveralTabsCanSignInAtOnce starts two sign-ins and completes them in
// reverse order: each has its own login-state cookie.
func TestSeveralTabsCanSignInAtOnce(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	nf := b.noFollow()
	var providerURLs []string
	for _, path := range []string{"/tab1", "/tab2"} {
		resp, _ := nf.navigate(s.url + path)
		providerURLs = append(providerURLs, resp.Header.Get("Location"))
	}
	for i, path := range []string{"/tab2", "/tab1"} {
		resp, body := b.navigate(providerURLs[1-i])
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != path {
			t.Fatalf("tab %s ended at %s (%d): %s", path, resp.Request.URL, resp.StatusCode, body)
		}
	}
}

// TestLoginStateCookiesAreBounded starts many sign-ins without finishing
// them: the browser never holds more than a handful of login-state cookies.
func TestLoginStateCookiesAreBounded(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t).noFollow()
	for range 12 {
		b.navigate(s.url + "/")
	}
	n := 0
	for _, c := range b.cookies(s) {
		if strings.Contains(c.Name, "_login_") {
			n++
		}
	}
	if n == 0 || n > 5 {
		t.Fatalf("%d login-state cookies, want 1..5", n)
	}
}

// TestCallbackRejectsUnknownState checks forged, missing and replayed state.
func TestCallbackRejectsUnknownState(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	for _, q := range []string{"", "?code=x", "?code=x&state=forged-state-value-that-is-long", "?state=" + strings.Repeat("A", 5000) + "&code=y"} {
		resp, body := b.navigate(s.url + "/oauth2/callback" + q)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `href="/oauth2/login"`) {
			t.Errorf("callback%s: %d %s, want 400 with a link to start again", q, resp.StatusCode, body)
		}
	}

	// A real callback URL works once; replaying it is refused.
	nf := b.noFollow()
	resp, _ := nf.navigate(s.url + "/")
	resp, _ = nf.navigate(resp.Header.Get("Location"))
	callback := resp.Header.Get("Location")
	if resp, _ := nf.navigate(callback); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("first callback: %d", resp.StatusCode)
	}
	if resp, _ := nf.navigate(callback); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed callback: %d, want 400", resp.StatusCode)
	}
	// Only the whole state matches: its first characters name the login
	// cookie, the rest must match too.
	nf = newBrowser(t).noFollow()
	resp, _ = nf.navigate(s.url + "/")
	authz, _ := url.Parse(resp.Header.Get("Location"))
	state := authz.Query().Get("state")
	resp, _ = nf.navigate(resp.Header.Get("Location"))
	code, _ := url.Parse(resp.Header.Get("Location"))
	forged := state[:16] + strings.Repeat("A", len(state)-16)
	if resp, _ := nf.navigate(s.url + "/oauth2/callback?code=" + url.QueryEscape(code.Query().Get("code")) + "&state=" + forged); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback whose state matches only the cookie's name: %d, want 400", resp.StatusCode)
	}

	// The state is bound to this browser: another browser cannot use it.
	other := newBrowser(t).noFollow()
	nf = newBrowser(t).noFollow()
	resp, _ = nf.navigate(s.url + "/")
	resp, _ = nf.navigate(resp.Header.Get("Location"))
	if resp, _ := other.navigate(resp.Header.Get("Location")); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback in another browser: %d, want 400", resp.StatusCode)
	}
}

// TestProviderAccessDeniedGets403Page checks error=access_denied.
func TestProviderAccessDeniedGets403Page(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	p.SetMisbehavior(testop.AccessDenied)
	resp, body := newBrowser(t).navigate(s.url + "/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "access_denied") {
		t.Fatalf("%d %s, want 403 naming access_denied", resp.StatusCode, body)
	}
}

// TestCallbackShowsProviderErrorOnlyForAPendingSignIn: anyone can link to
// the callback with an error text of their own, which would then appear on
// the site's origin. The provider's text is shown (escaped) only when the
// state matches a sign-in this browser started; otherwise a generic page.
func TestCallbackShowsProviderErrorOnlyForAPendingSignIn(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	spoof := "?error=Account+locked&error_description=Call+555-0100+to+unlock"
	for _, q := range []string{spoof, spoof + "&state=forged-state-value-that-is-long-enough"} {
		resp, body := newBrowser(t).navigate(s.url + "/oauth2/callback" + q)
		if resp.StatusCode != http.StatusBadRequest || strings.Contains(body, "555-0100") || strings.Contains(body, "Account locked") {
			t.Errorf("callback%s: %d, shows the link's text: %v", q, resp.StatusCode, strings.Contains(body, "555-0100"))
		}
	}

	// A sign-in this browser started: the provider's answer is shown,
	// escaped.
	b := newBrowser(t).noFollow()
	resp, _ := b.navigate(s.url + "/")
	authz, _ := url.Parse(resp.Header.Get("Location"))
	state := authz.Query().Get("state")
	resp, body := b.navigate(s.url + "/oauth2/callback?state=" + url.QueryEscape(state) +
		"&error=temporarily_unavailable&error_description=%3Cscript%3Ealert(1)%3C/script%3E+try+later")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "temporarily_unavailable") || !strings.Contains(body, "try later") {
		t.Fatalf("provider error for a pending sign-in: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, "<script>alert") {
		t.Fatalf("provider error text not escaped: %s", body)
	}
}

// TestLogoutEndsProviderSessionWithIDTokenHint: logout clears every session
// cookie and sends the browser to the provider's end_session_endpoint with
// id_token_hint and post_logout_redirect_uri, by POST so the ID token stays
// out of URLs and access logs.
func TestLogoutEndsProviderSessionWithIDTokenHint(t *testing.T) {
	p := newProvider(t, testop.Config{IDTokenPadding: 5000}) // a chunked session
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	resp, page := b.signOut(s, "?rd=/bye")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		t.Fatalf("logout redirects with Location %q; the ID token must not go in a URL", loc)
	}
	for _, c := range b.cookies(s) {
		if strings.HasPrefix(c.Name, "oidc_session") && c.Name != "oidc_session_logout" {
			t.Errorf("cookie %s survived logout", c.Name)
		}
	}
	action, form := parseAutoPostForm(t, page)
	if action != p.Issuer()+"/end_session" {
		t.Fatalf("form posts to %q", action)
	}
	resp, err := b.noFollow().client.PostForm(action, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	got := p.LastEndSessionRequest()
	if got.Get("id_token_hint") == "" || got.Get("post_logout_redirect_uri") != s.url+"/oauth2/logout" || got.Get("client_id") != p.ClientID() || got.Get("state") == "" {
		t.Fatalf("end_session request: %v", got)
	}
	// The provider sends the browser back to the logout path with the
	// state; a matching one leads on to rd.
	back := resp.Header.Get("Location")
	if !strings.HasPrefix(back, s.url+"/oauth2/logout?") {
		t.Fatalf("provider sent the browser to %q", back)
	}
	resp, _ = b.noFollow().navigate(back)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/bye" {
		t.Fatalf("return from the provider: %d to %q, want 303 to /bye", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, c := range b.cookies(s) {
		if strings.HasPrefix(c.Name, "oidc_session") {
			t.Errorf("cookie %s survived the return from the provider", c.Name)
		}
	}
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after logout: %d, want 401", resp.StatusCode)
	}
	assertNoSecrets(t, "Caddy's log", s.logs(), p.IssuedTokens()...)
}

// TestRPInitiatedLogoutChecksTheReturnedState: OpenID Connect RP-Initiated
// Logout 1.0: the state sent to the provider must come back; another, or
// none, gets a page saying the provider's answer did not match (the
// session here is ended either way), not a silent redirect.
func TestRPInitiatedLogoutChecksTheReturnedState(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	for _, returned := range []string{"state=forged-state", ""} {
		b := newBrowser(t)
		b.signIn(s, "/")
		resp, page := b.signOut(s, "?rd=/bye")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("logout: %d", resp.StatusCode)
		}
		_, form := parseAutoPostForm(t, page)
		if form.Get("state") == "" {
			t.Fatal("no state sent to the provider")
		}
		resp, body := b.noFollow().navigate(s.url + "/oauth2/logout?" + returned)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "did not match") {
			t.Errorf("return with %q: %d %s, want 400 and a page", returned, resp.StatusCode, body)
		}
		if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("after logout: %d, want 401", resp.StatusCode)
		}
	}
}

// parseAutoPostForm extracts the action and hidden fields of the logout page.
func parseAutoPostForm(t *testing.T, page string) (string, url.Values) {
	t.Helper()
	attr := func(tag, name string) string {
		_, v, ok := strings.Cut(tag, name+`="`)
		if !ok {
			return ""
		}
		v, _, _ = strings.Cut(v, `"`)
		return html.UnescapeString(v)
	}
	formTag, rest, ok := strings.Cut(page, "<form ")
	_ = formTag
	if !ok {
		t.Fatalf("no form in %s", page)
	}
	action := attr(rest[:strings.Index(rest, ">")], "action")
	form := url.Values{}
	for _, in := range strings.Split(rest, "<input ")[1:] {
		tag := in[:strings.Index(in, ">")]
		form.Add(attr(tag, "name"), attr(tag, "value"))
	}
	return action, form
}

// TestSessionCookiesAreNotForwardedUpstream: oidc_auth removes its own
// cookies from the request it passes on (the upstream cannot replay the
// sealed session, and several kilobytes are not sent on every request);
// the app's own cookies pass through.
func TestSessionCookiesAreNotForwardedUpstream(t *testing.T) {
	p := newProvider(t, testop.Config{IDTokenPadding: 5000}) // a chunked session
	s, up := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	u, _ := url.Parse(s.url)
	b.jar.SetCookies(u, []*http.Cookie{{Name: "app", Value: "1"}, {Name: "oidc_sessionx", Value: "2"}})
	if resp, _ := b.navigate(s.url + "/page"); resp.StatusCode != http.StatusOK {
		t.Fatalf("%d", resp.StatusCode)
	}
	got := strings.Join(up.lastHeader().Values("Cookie"), "; ")
	if !strings.Contains(got, "app=1") || !strings.Contains(got, "oidc_sessionx=2") {
		t.Errorf("the app's cookies did not reach the upstream: %q", got)
	}
	for _, c := range b.cookies(s) {
		if strings.HasPrefix(c.Name, "oidc_session") && c.Name != "oidc_sessionx" && strings.Contains(got, c.Name+"=") {
			t.Errorf("oidc_auth's cookie %s reached the upstream", c.Name)
		}
	}
}
