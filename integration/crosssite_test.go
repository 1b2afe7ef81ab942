package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// TestTokenInjectSubstitutesOnlyForTheSitesOwnRequests: a signed-in
// browser's cookie also travels with requests that another site starts; the
// token goes upstream only when the browser says the site itself sent the
// request, or the request comes from an origin the configuration names.
func TestTokenInjectSubstitutesOnlyForTheSitesOwnRequests(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "origins https://app.example.com", "")
	own := "http://" + strings.TrimPrefix(s.url, "http://")
	cases := []struct {
		name    string
		headers map[string]string
		token   bool
	}{
		{"Sec-Fetch-Site same-origin", map[string]string{"Sec-Fetch-Site": "same-origin"}, true},
		{"Sec-Fetch-Site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, false},
		{"Sec-Fetch-Site cross-site from a named origin", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example.com"}, false},
		{"Sec-Fetch-Site same-site from a named origin", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://app.example.com"}, true},
		{"Sec-Fetch-Site same-site from another origin", map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "https://blog.example.com"}, false},
		{"Sec-Fetch-Site none (typed address)", map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"no Fetch Metadata, Origin of the site", map[string]string{"Sec-Fetch-Site": "", "Origin": own}, true},
		{"no Fetch Metadata, Origin of another site", map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}, false},
		{"no Fetch Metadata, Origin null", map[string]string{"Sec-Fetch-Site": "", "Origin": "null"}, false},
		{"no Fetch Metadata, Referer of the site", map[string]string{"Sec-Fetch-Site": "", "Referer": own + "/page"}, true},
		{"no Fetch Metadata, Referer of another site", map[string]string{"Sec-Fetch-Site": "", "Referer": "https://evil.example/x"}, false},
		{"no provenance at all", map[string]string{"Sec-Fetch-Site": ""}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := up.requests
			req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			for k, v := range c.headers {
				req.Header[k] = []string{v}
			}
			resp, body := b.do(req)
			if !c.token {
				if resp.StatusCode != http.StatusUnauthorized || up.requests != before {
					t.Fatalf("got %d (upstream reached: %v), want 401 and nothing upstream", resp.StatusCode, up.requests != before)
				}
				assertNoSecrets(t, "response", body, accessTokens(p)...)
				return
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if tok := strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer "); !p.ValidAccessToken(tok) {
				t.Fatalf("upstream Authorization %.40q is not the token", up.lastHeader().Get("Authorization"))
			}
		})
	}
	assertNoSecrets(t, "Caddy's log", s.logs(), p.IssuedTokens()...)
}

// TestClientsThatNameNoOriginGetTheTokenOnlyWhenAllowed: a script holding
// a session cookie sends no Fetch Metadata, Origin or Referer; by default
// it gets on_missing, and with allow_unknown_origin the token.
func TestClientsThatNameNoOriginGetTheTokenOnlyWhenAllowed(t *testing.T) {
	p := newProvider(t, testop.Config{})
	for _, c := range []struct {
		block  string
		status int
	}{
		{"", http.StatusUnauthorized},
		{"on_missing reject 403", http.StatusForbidden},
		{"allow_unknown_origin", http.StatusOK},
	} {
		up := newUpstream(t)
		s, b := injectSite(t, p, up, c.block, "")
		for _, fetchSite := range []string{"", "none"} {
			req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			req.Header["Sec-Fetch-Site"] = []string{fetchSite}
			resp, body := b.do(req)
			if resp.StatusCode != c.status {
				t.Fatalf("%q, Sec-Fetch-Site %q: %d %s, want %d", c.block, fetchSite, resp.StatusCode, body, c.status)
			}
			if c.status == http.StatusOK && !p.ValidAccessToken(strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer ")) {
				t.Fatalf("%q: upstream did not get the token", c.block)
			}
		}
	}
}

// TestQuerySubstitutionIsOptIn: by default only header values are
// substituted; a placeholder in the URL query reaches the upstream as sent.
func TestQuerySubstitutionIsOptIn(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "", "")
	resp, body := b.fetch(s.url + "/api?q=" + url.QueryEscape(placeholder))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if q, _ := url.ParseQuery(up.lastRequest().query); q.Get("q") != placeholder {
		t.Fatalf("upstream query %q, want the placeholder as sent", up.lastRequest().query)
	}
}

// redirectingUpstream answers like common apps do: /next?to=URL redirects
// to URL (an open "continue to" redirect), /dir redirects to /dir/ keeping
// the query, and /echo-redirect puts the Authorization header it got into
// Location, Content-Location and Refresh, raw and URL-escaped.
func redirectingUpstream(t *testing.T) (*httptest.Server, func() int) {
	var mu sync.Mutex
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		switch r.URL.Path {
		case "/next":
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
		case "/dir":
			http.Redirect(w, r, "/dir/?"+r.URL.RawQuery, http.StatusMovedPermanently)
		case "/echo-redirect":
			tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			w.Header().Set("Content-Location", "/docs/"+tok)
			w.Header().Set("Refresh", "0; url=/go?t="+url.QueryEscape(tok))
			http.Redirect(w, r, "https://elsewhere.example/cb?token="+tok+"&again="+url.QueryEscape(tok), http.StatusFound)
		default:
			fmt.Fprint(w, "ok")
		}
	}))
	t.Cleanup(srv.Close)
	return srv, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestCrossSiteNavigationCannotCarryTheTokenAway: the attack the same-origin
// rule is for. With query substitution on, another site sends the signed-in
// user to a proxied path with the placeholder in the query; the upstream
// would redirect (open redirect, or a trailing-slash redirect that keeps
// the query). The request is refused before it reaches the upstream, and
// the token appears neither in a Location nor in Caddy's log.
func TestCrossSiteNavigationCannotCarryTheTokenAway(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up, requests := redirectingUpstream(t)
	routes := fmt.Sprintf("token_inject {\n\t\tin header query\n\t}\n\treverse_proxy %s", strings.TrimPrefix(up.URL, "http://"))
	s := startSite(t, nil, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
	b := newBrowser(t)
	b.signIn(s, "/")
	for _, path := range []string{
		"/next?to=" + url.QueryEscape("https://evil.example/steal?t=") + url.QueryEscape(placeholder),
		"/dir?q=" + url.QueryEscape(placeholder),
	} {
		before := requests()
		req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		resp, body := b.noFollow().do(req)
		if resp.StatusCode != http.StatusUnauthorized || requests() != before {
			t.Errorf("%s: %d, upstream reached: %v; want 401 before the upstream", path, resp.StatusCode, requests() != before)
		}
		assertNoSecrets(t, path+" Location", resp.Header.Get("Location"), accessTokens(p)...)
		assertNoSecrets(t, path+" body", body, accessTokens(p)...)
	}
	assertNoSecrets(t, "Caddy's log", s.logs(), p.IssuedTokens()...)
}

// TestRedirectHeadersNeverCarryTheToken: even for the site's own request,
// an upstream that builds Location, Content-Location or Refresh from the
// token it received hands the browser the placeholder instead, with and
// without redact_response.
func TestRedirectHeadersNeverCarryTheToken(t *testing.T) {
	p := newProvider(t, testop.Config{AccessTokenSize: 300})
	up, _ := redirectingUpstream(t)
	for _, block := range []string{"in header query", "in header query\n\t\tredact_response"} {
		routes := fmt.Sprintf("token_inject {\n\t\t%s\n\t}\n\treverse_proxy %s", block, strings.TrimPrefix(up.URL, "http://"))
		s := startSite(t, nil, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
		b := newBrowser(t)
		b.signIn(s, "/")
		for _, path := range []string{"/echo-redirect", "/dir?q=" + url.QueryEscape(placeholder)} {
			req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			resp, _ := b.noFollow().do(req)
			if resp.StatusCode/100 != 3 {
				t.Fatalf("%q %s: %d, want a redirect", block, path, resp.StatusCode)
			}
			for _, k := range []string{"Location", "Content-Location", "Refresh"} {
				assertNoSecrets(t, fmt.Sprintf("%q %s %s", block, path, k), resp.Header.Get(k), accessTokens(p)...)
				for _, tok := range accessTokens(p) {
					assertNoSecrets(t, fmt.Sprintf("%q %s %s", block, path, k), resp.Header.Get(k), url.QueryEscape(tok))
				}
			}
			if !strings.Contains(resp.Header.Get("Location"), url.QueryEscape(placeholder)) && !strings.Contains(resp.Header.Get("Location"), placeholder) {
				t.Errorf("%q %s: Location %q does not carry the placeholder", block, path, resp.Header.Get("Location"))
			}
		}
	}
}

// TestLogoutEndsNothingUnlessTheSitePostsIt: another site can send the
// user to /oauth2/logout (the cookie travels with the navigation) or
// submit a form to it. Neither ends the session here or, through the
// automatic id_token_hint, at the provider: a GET gets a page with a
// sign-out button, and a POST that the site did not send gets that page
// with 403. Only the button's POST from the site signs out.
func TestLogoutEndsNothingUnlessTheSitePostsIt(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	attempts := []struct {
		name    string
		method  string
		headers map[string]string
		status  int
	}{
		{"cross-site link", http.MethodGet, map[string]string{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}, http.StatusOK},
		{"same-origin link", http.MethodGet, map[string]string{"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"}, http.StatusOK},
		{"cross-site form", http.MethodPost, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, http.StatusForbidden},
		{"form from another origin, no Fetch Metadata", http.MethodPost, map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}, http.StatusForbidden},
		{"form with no origin at all", http.MethodPost, map[string]string{"Sec-Fetch-Site": ""}, http.StatusForbidden},
	}
	for _, a := range attempts {
		req, _ := http.NewRequest(a.method, s.url+"/oauth2/logout?rd=/bye", nil)
		req.Header.Set("Accept", "text/html")
		for k, v := range a.headers {
			req.Header[k] = []string{v}
		}
		resp, body := b.noFollow().do(req)
		if resp.StatusCode != a.status || !strings.Contains(body, `<form method="post" action="/oauth2/logout?rd=%2Fbye">`) {
			t.Errorf("%s: %d, want %d and a confirmation form:\n%s", a.name, resp.StatusCode, a.status, body)
		}
		if strings.Contains(body, "id_token_hint") || p.LastEndSessionRequest() != nil {
			t.Errorf("%s: the provider's logout was started", a.name)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: the confirmation page may be framed (CSP %q)", a.name, csp)
		}
		for _, c := range resp.Cookies() {
			if strings.HasPrefix(c.Name, "oidc_session") {
				t.Errorf("%s: the response touches cookie %s", a.name, c.Name)
			}
		}
		if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s ended the session: %d", a.name, resp.StatusCode)
		}
	}
	resp, body := b.signOut(s, "?rd=/bye")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "id_token_hint") {
		t.Fatalf("the site's own sign-out: %d %s", resp.StatusCode, body)
	}
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after the site's own sign-out: %d, want 401", resp.StatusCode)
	}
}
