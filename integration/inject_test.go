package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

const placeholder = "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"

// injectSite signs a browser in to a site whose routes run token_inject
// with the given block before proxying to up.
func injectSite(t *testing.T, p *testop.Provider, up *upstream, injectBlock, extraRoutes string) (*site, *browser) {
	t.Helper()
	routes := fmt.Sprintf(`token_inject {
		%s
	}
	%s
	reverse_proxy %s {
		header_up X-Email {oidc.user.id_token.email}
	}`, injectBlock, extraRoutes, up.hostPort())
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
	b := newBrowser(t)
	b.signIn(s, "/")
	return s, b
}

// accessTokens returns the access tokens the provider issued (opaque,
// unlike ID tokens).
func accessTokens(p *testop.Provider) []string {
	var out []string
	for _, tok := range p.IssuedTokens() {
		if p.ValidAccessToken(tok) {
			out = append(out, tok)
		}
	}
	return out
}

// appRequest is a request from the browser app carrying the placeholder in
// a header, the query and a JSON body.
func appRequest(t *testing.T, s *site, path string) *http.Request {
	t.Helper()
	body := fmt.Sprintf(`{"a":"%[1]s","nested":{"b":"Bearer %[1]s"},"list":["%[1]s"]}`, placeholder)
	req, _ := http.NewRequest(http.MethodPost, s.url+path+"?token="+url.QueryEscape(placeholder)+"&x=1", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+placeholder)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	return req
}

// TestUpstreamReceivesAccessTokenInHeaderQueryAndBody: the placeholder is
// replaced by the provider-issued access token everywhere it is enabled,
// with an exact Content-Length, and the upstream can use the token.
func TestUpstreamReceivesAccessTokenInHeaderQueryAndBody(t *testing.T) {
	p := newProvider(t, testop.Config{AccessTokenSize: 1200})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "in header query body", "")
	resp, body := b.do(appRequest(t, s, "/api/orders"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	got := up.lastRequest()
	tok := strings.TrimPrefix(got.header.Get("Authorization"), "Bearer ")
	if !p.ValidAccessToken(tok) {
		t.Fatalf("upstream Authorization %.40q is not the access token", got.header.Get("Authorization"))
	}
	if q, _ := url.ParseQuery(got.query); q.Get("token") != tok || q.Get("x") != "1" {
		t.Errorf("upstream query %.60q does not carry the token", got.query)
	}
	var j struct {
		A      string `json:"a"`
		Nested struct{ B string }
		List   []string
	}
	if err := json.Unmarshal([]byte(got.body), &j); err != nil || j.A != tok || j.Nested.B != "Bearer "+tok || j.List[0] != tok {
		t.Errorf("upstream body not substituted (%v): %.80q", err, got.body)
	}
	if got.contentLength != int64(len(got.body)) {
		t.Errorf("Content-Length %d for a %d-byte body", got.contentLength, len(got.body))
	}
	if strings.Contains(got.body, placeholder) || strings.Contains(got.header.Get("Authorization"), placeholder) {
		t.Error("a placeholder reached the upstream")
	}
	assertNoSecrets(t, "response", body, tok)
	assertNoSecrets(t, "Caddy's log", s.logs(), p.IssuedTokens()...)
}

// TestBodyIsSubstitutedOnlyWhenEnabledAndForListedTypes: by default the
// body is left alone; with `in body`, other media types are too.
func TestBodyIsSubstitutedOnlyWhenEnabledAndForListedTypes(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "", "")
	b.do(appRequest(t, s, "/api"))
	if got := up.lastRequest(); !strings.Contains(got.body, placeholder) {
		t.Errorf("body substituted although not enabled: %.80q", got.body)
	}
	s, b = injectSite(t, p, up, "in header body", "")
	req := appRequest(t, s, "/api")
	req.Header.Set("Content-Type", "application/octet-stream")
	b.do(req)
	if got := up.lastRequest(); !strings.Contains(got.body, placeholder) {
		t.Errorf("octet-stream body substituted: %.80q", got.body)
	}
}

// TestLargeBodyIsStreamedWithTokens: a body over body_max_size is
// substituted while it streams (chunked), placeholders split across reads
// included.
func TestLargeBodyIsStreamedWithTokens(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "in body\n\t\tbody_max_size 4KiB", "")
	var sb strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&sb, `{"i":%d,"t":"%s"},`, i, placeholder)
	}
	body := "[" + strings.TrimSuffix(sb.String(), ",") + "]"
	req, _ := http.NewRequest(http.MethodPut, s.url+"/upload", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, rb := b.do(req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, rb)
	}
	got := up.lastRequest()
	tok := accessTokens(p)[0]
	if strings.Count(got.body, tok) != 2000 || strings.Contains(got.body, placeholder) {
		t.Fatalf("streamed body: %d tokens, placeholder left: %v", strings.Count(got.body, tok), strings.Contains(got.body, placeholder))
	}
	if got.contentLength != -1 {
		t.Errorf("upstream Content-Length %d, want chunked (-1)", got.contentLength)
	}
}

// TestFormBodyGetsURLEncodedToken: in a form body the placeholder arrives
// URL-encoded, and the token must be too.
func TestFormBodyGetsURLEncodedToken(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "in body", "")
	req, _ := http.NewRequest(http.MethodPost, s.url+"/form", strings.NewReader(url.Values{"token": {placeholder}, "x": {"1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	b.do(req)
	form, _ := url.ParseQuery(up.lastRequest().body)
	if !p.ValidAccessToken(form.Get("token")) || form.Get("x") != "1" {
		t.Fatalf("form body %q", up.lastRequest().body)
	}
}

// TestAdminRequestHeaderSendsTokenWithoutClientHelp: request_header runs
// before token_inject, so an admin can attach the token to every request.
func TestAdminRequestHeaderSendsTokenWithoutClientHelp(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "", `request_header Authorization "Bearer `+placeholder+`"`)
	b.fetch(s.url + "/api/me")
	tok := strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer ")
	if !p.ValidAccessToken(tok) {
		t.Fatalf("upstream Authorization %.40q", up.lastHeader().Get("Authorization"))
	}
}

// TestIDTokenPlaceholdersReachUpstream: claims, nested claims, arrays,
// numbers as the provider wrote them, the claims JSON and the raw ID token.
func TestIDTokenPlaceholdersReachUpstream(t *testing.T) {
	p := newProvider(t, testop.Config{Claims: map[string]any{
		"email":                     "alice@example.com",
		"groups":                    []any{"admins", "dev"},
		"address":                   map[string]any{"country": "CH", "geo": map[string]any{"lat": json.Number("46.9480")}},
		"employee_no":               json.Number("12345678901234567890"),
		"https://example.com/roles": []any{"r1"},
	}})
	up := newUpstream(t)
	routes := fmt.Sprintf(`token_inject
	request_header X-Req-Email {oidc.user.id_token.email}
	log_append claim_email {oidc.user.id_token.email}
	reverse_proxy %s {
		header_up X-Email   {oidc.user.id_token.email}
		header_up X-Groups  {oidc.user.id_token.groups}
		header_up X-Country {oidc.user.id_token.address.country}
		header_up X-Lat     {oidc.user.id_token.address.geo.lat}
		header_up X-Number  {oidc.user.id_token.employee_no}
		header_up X-Roles   {oidc.user.id_token.https://example.com/roles}
		header_up X-Missing "[{oidc.user.id_token.nope}]"
		header_up X-Claims  {oidc.user.id_token}
		header_up X-Raw     {oidc.user.raw_id_token}
		header_up X-Var     {vars.oidc_raw_id_token}
	}`, up.hostPort())
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
	b := newBrowser(t)
	b.signIn(s, "/")
	h := up.lastHeader()
	for k, want := range map[string]string{
		"X-Email": "alice@example.com", "X-Groups": "admins,dev", "X-Country": "CH", "X-Lat": "46.9480",
		"X-Number": "12345678901234567890", "X-Roles": "r1", "X-Missing": "[]",
		"X-Req-Email": "alice@example.com", // request_header runs before token_inject
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(h.Get("X-Claims")), &claims); err != nil || claims["sub"] != "user-1" {
		t.Errorf("X-Claims = %q (%v)", h.Get("X-Claims"), err)
	}
	if raw := h.Get("X-Raw"); strings.Count(raw, ".") != 2 || h.Get("X-Var") != raw {
		t.Errorf("X-Raw = %.40q, X-Var = %.40q", raw, h.Get("X-Var"))
	}
	if !strings.Contains(s.logs(), `"claim_email":"alice@example.com"`) {
		t.Error("the claim placeholder does not work in log fields")
	}
}

// TestIDTokenVarsWorkInMatchers: the oidc_id_token var and the
// placeholders drive expression and vars matchers.
func TestIDTokenVarsWorkInMatchers(t *testing.T) {
	p := newProvider(t, testop.Config{Claims: map[string]any{"groups": []any{"admins"}}})
	up := newUpstream(t)
	routes := fmt.Sprintf(`token_inject
	@admin expression {oidc.user.id_token.groups}.split(",").exists(g, g == "admins")
	@alice vars {oidc.user.id_token.email} alice@example.com
	handle /admin {
		respond @admin "admin area" 200
		respond 403
	}
	handle /alice {
		respond @alice "hi alice" 200
		respond 403
	}
	reverse_proxy %s`, up.hostPort())
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
	b := newBrowser(t)
	b.signIn(s, "/")
	if resp, body := b.fetch(s.url + "/admin"); resp.StatusCode != 200 || body != "admin area" {
		t.Errorf("expression matcher: %d %q", resp.StatusCode, body)
	}
	if resp, body := b.fetch(s.url + "/alice"); resp.StatusCode != 200 || body != "hi alice" {
		t.Errorf("vars matcher: %d %q", resp.StatusCode, body)
	}
}

// TestAccessTokenCannotBePrintedByRespondTemplatesOrLogs: placeholders
// (in respond, templates and log fields) and templates' view of the request
// show the request as the client sent it, never the token.
func TestAccessTokenCannotBePrintedByRespondTemplatesOrLogs(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	dir := t.TempDir()
	tmpl := `auth={{.Req.Header.Get "Authorization"}} uri={{.Req.RequestURI}} ph={{placeholder "http.request.header.Authorization"}} vars={{placeholder "http.vars.oidc_id_token"}} email={{placeholder "oidc.user.id_token.email"}}`
	if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	// The site-level templates directive is ordered before token_inject,
	// like encode and intercept, and so is given the unchanged request.
	routes := fmt.Sprintf(`token_inject
	templates
	log_append auth_header {http.request.header.Authorization}
	handle /respond {
		respond "auth={http.request.header.Authorization} uri={http.request.uri} q={query.token} vars={http.vars.oidc_id_token} all={http.request.headers} at={oidc.user.access_token} {oidc.user.id_token.access_token}"
	}
	handle /page.html {
		root * %s
		file_server
	}
	reverse_proxy %s`, dir, up.hostPort())
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
	b := newBrowser(t)
	b.signIn(s, "/")
	for _, path := range []string{"/respond", "/page.html"} {
		req, _ := http.NewRequest(http.MethodGet, s.url+path+"?token="+url.QueryEscape(placeholder), nil)
		req.Header.Set("Authorization", "Bearer "+placeholder)
		resp, body := b.do(req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if !strings.Contains(body, placeholder) {
			t.Errorf("%s does not show the request as sent: %s", path, body)
		}
		if path == "/page.html" && !strings.Contains(body, "email=alice@example.com") {
			t.Errorf("the template cannot read the ID token's claims: %s", body)
		}
		assertNoSecrets(t, path, body, accessTokens(p)...)
		for k, vs := range resp.Header {
			assertNoSecrets(t, path+" header "+k, strings.Join(vs, " "), accessTokens(p)...)
		}
	}
	assertNoSecrets(t, "Caddy's log", s.logs(), p.IssuedTokens()...)
}

// TestRedactionCoversTemplatesAfterTokenInject: a template nested after
// token_inject is given the substituted request; with redact_response
// what it prints of the token reaches the browser as the placeholder.
func TestRedactionCoversTemplatesAfterTokenInject(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "page.html"), []byte(`auth={{.Req.Header.Get "Authorization"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	routes := fmt.Sprintf(`token_inject {
		redact_response
	}
	handle /page.html {
		root * %s
		templates
		file_server
	}
	reverse_proxy %s`, dir, up.hostPort())
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
	b := newBrowser(t)
	b.signIn(s, "/")
	req, _ := http.NewRequest(http.MethodGet, s.url+"/page.html", nil)
	req.Header.Set("Authorization", "Bearer "+placeholder)
	resp, body := b.do(req)
	if resp.StatusCode != http.StatusOK || body != "auth=Bearer "+placeholder {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// TestEchoingUpstreamCannotLeakTokenWithRedaction: with redact_response an
// upstream that echoes its request hands the browser the placeholder, not
// the token, in headers and body.
func TestEchoingUpstreamCannotLeakTokenWithRedaction(t *testing.T) {
	p := newProvider(t, testop.Config{AccessTokenSize: 1200})
	up := newEchoUpstream(t)
	s, b := injectSite(t, p, up, "in header query body\n\t\tredact_response", "encode gzip")
	req := appRequest(t, s, "/echo")
	resp, body := b.do(req) // the client asks for gzip and decompresses
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if !p.ValidAccessToken(strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer ")) {
		t.Fatal("upstream did not get the token")
	}
	if !strings.Contains(body, placeholder) || resp.Header.Get("X-Echo-Authorization") != "Bearer "+placeholder {
		t.Errorf("echo not redacted to the placeholder: %q\n%.300s", resp.Header.Get("X-Echo-Authorization"), body)
	}
	assertNoSecrets(t, "echoed body", body, p.IssuedTokens()...)
	for k, vs := range resp.Header {
		assertNoSecrets(t, "header "+k, strings.Join(vs, " "), accessTokens(p)...)
	}
}

// TestPlaceholderWithoutSessionIsRejected: on a route oidc_auth does not
// cover, a placeholder without a signed-in user gets 401 (default), or is
// removed or kept as configured; it is never forwarded by accident.
func TestPlaceholderWithoutSessionIsRejected(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	for _, c := range []struct {
		block  string
		status int
		want   string
	}{
		{"", 401, ""},
		{"on_missing reject 403", 403, ""},
		{"on_missing remove", 200, "Bearer "},
		{"on_missing keep", 200, "Bearer " + placeholder},
	} {
		routes := fmt.Sprintf("token_inject {\n%s\n}\nreverse_proxy %s", c.block, up.hostPort())
		s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes, matcher: "/private/*"})
		before := up.requests
		req, _ := http.NewRequest(http.MethodGet, s.url+"/public", nil)
		req.Header.Set("Authorization", "Bearer "+placeholder)
		resp, body := newBrowser(t).do(req)
		if resp.StatusCode != c.status {
			t.Errorf("%q: %d %s, want %d", c.block, resp.StatusCode, body, c.status)
			continue
		}
		if c.status != 200 {
			if up.requests != before {
				t.Errorf("%q: a rejected request reached the upstream", c.block)
			}
			continue
		}
		if got := up.lastHeader().Get("Authorization"); got != strings.TrimSpace(c.want) && got != c.want {
			t.Errorf("%q: upstream Authorization %q, want %q", c.block, got, c.want)
		}
	}
}

// TestExpiringTokenIsRefreshedOnceUnderConcurrentRequests: 50 concurrent
// requests of one session with a token inside the refresh window make one
// token-endpoint call, and all of them forward the new token.
func TestExpiringTokenIsRefreshedOnceUnderConcurrentRequests(t *testing.T) {
	// Signed in with a token that expires within the 30s refresh window;
	// the refreshed one lives an hour.
	p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "", "")
	p.SetAccessTokenTTL(time.Hour)
	first := accessTokens(p)
	if p.RefreshCalls() != 0 {
		t.Fatal("refreshed during sign-in")
	}
	var wg sync.WaitGroup
	statuses := make([]int, 50)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			resp, _ := b.do(req)
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != 200 {
			t.Fatalf("request %d: %d", i, st)
		}
	}
	if n := p.RefreshCalls(); n != 1 {
		t.Fatalf("%d refresh calls for 50 concurrent requests, want 1", n)
	}
	tok := strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer ")
	if !p.ValidAccessToken(tok) || tok == first[0] {
		t.Fatalf("upstream got %.20q, want the refreshed token", tok)
	}
	// The browser got the refreshed session: its next request sends the
	// new token without refreshing again.
	b.do(appRequest(t, s, "/again"))
	if p.RefreshCalls() != 1 || strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer ") != tok {
		t.Fatalf("after the refresh: %d refresh calls, upstream got another token", p.RefreshCalls())
	}
}

// TestInvalidGrantEndsSession: a refresh refused with invalid_grant signs
// the user out: 401 for API calls, a new sign-in for page navigations.
func TestInvalidGrantEndsSession(t *testing.T) {
	p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "", "")
	p.RevokeRefreshTokens()
	before := up.requests
	req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
	req.Header.Set("Authorization", "Bearer "+placeholder)
	req.Header.Set("Accept", "application/json")
	resp, body := b.do(req)
	if resp.StatusCode != http.StatusUnauthorized || up.requests != before {
		t.Fatalf("API call after invalid_grant: %d %s (upstream reached: %v)", resp.StatusCode, body, up.requests != before)
	}
	// The session is gone: even without a placeholder the user must sign in.
	if resp, _ := b.noFollow().navigate(s.url + "/page"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), p.Issuer()) {
		t.Fatalf("navigation after invalid_grant: %d %q, want a new sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestProviderDownDuringRefreshGives503AndKeepsSession: an outage of the
// token endpoint is not the user's fault: 503, and the session survives.
func TestProviderDownDuringRefreshGives503AndKeepsSession(t *testing.T) {
	p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second})
	up := newUpstream(t)
	s, b := injectSite(t, p, up, "", "")
	p.SetDown(true)
	req := appRequest(t, s, "/api")
	resp, body := b.do(req)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("while the provider is down: %d %s, want 503", resp.StatusCode, body)
	}
	p.SetDown(false)
	resp, body = b.do(appRequest(t, s, "/api"))
	if resp.StatusCode != http.StatusOK || !p.ValidAccessToken(strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer ")) {
		t.Fatalf("after the provider is back: %d %s", resp.StatusCode, body)
	}
}

// TestFailingUpstreamLogsNoToken: when the upstream cannot be reached,
// reverse_proxy logs the request it tried to send (at debug level, which
// this site's log has on). The access token that token_inject put in its
// Authorization header and query must not be in that line or in the error
// page: Caddy redacts Authorization, and the logged URI is the one the
// client sent.
func TestFailingUpstreamLogsNoToken(t *testing.T) {
	p := newProvider(t, testop.Config{AccessTokenSize: 1200})
	up := newUpstream(t)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	routes := fmt.Sprintf(`token_inject
	reverse_proxy %s`, dead)
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(), routes: routes})
	b := newBrowser(t)
	b.navigate(s.url + "/")
	resp, body := b.do(appRequest(t, s, "/api/orders"))
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("dead upstream: %d %s", resp.StatusCode, body)
	}
	logs := s.logs()
	if !strings.Contains(logs, `"upstream roundtrip"`) || !strings.Contains(logs, dead) {
		t.Fatalf("reverse_proxy's debug line about the failed round trip is not in the log:\n%s", logs)
	}
	// Other headers are not redacted by Caddy: with debug logging on,
	// token_inject says so when it starts.
	if !strings.Contains(logs, "an access token substituted into any other header would be logged") {
		t.Error("no warning about reverse_proxy's debug lines")
	}
	assertNoSecrets(t, "error response", body, accessTokens(p)...)
	assertNoSecrets(t, "Caddy's log", logs, p.IssuedTokens()...)
}
