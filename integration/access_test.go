package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/devop"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

const apiAudience = "https://api.example"

// apiClient calls the site as a command-line client or another service
// does: no cookies, no Sec-Fetch-* headers, JSON wanted.
func apiClient(t *testing.T) *browser {
	b := newBrowser(t)
	b.client.Jar = nil
	return b
}

// call sends method to u with the given Authorization ("" for none).
func (b *browser) call(method, u, authorization string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	req.Header.Set("Accept", "application/json")
	req.Header["Sec-Fetch-Site"] = []string{""}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return b.do(req)
}

// wantChallenge checks a 401 for a missing or refused bearer token.
func wantChallenge(t *testing.T, s *site, resp *http.Response, body string) {
	t.Helper()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: %s", resp.StatusCode, body)
	}
	www := resp.Header.Get("WWW-Authenticate")
	for _, want := range []string{"Bearer ", `error="invalid_token"`, `resource_metadata="` + s.url + `/.well-known/oauth-protected-resource"`} {
		if !strings.Contains(www, want) {
			t.Errorf("WWW-Authenticate %q lacks %s", www, want)
		}
	}
	if jsonBody(t, body)["error"] != "invalid_token" {
		t.Errorf("body %s", body)
	}
}

// bearerRoutes run token_inject and forward who the caller is to up; on
// /api/*, an X-Api-Token header with token_inject's placeholder, as an
// admin attaches the token to calls of an API.
func bearerRoutes(up *upstream) string {
	return fmt.Sprintf(`request_header /api/* X-Api-Token "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"
	token_inject
	reverse_proxy %s {
		header_up X-User-Id    {http.auth.user.id}
		header_up X-User-Email "[{http.auth.user.email}]"
	}`, up.hostPort())
}

// count is the number of requests the upstream received.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.requests
}

// TestBearerTokensFromZitadel: the zitadel OP's own access tokens, JWTs
// verified with its keys and opaque ones asked about at its introspection
// endpoint, let an API client in without a session; the browser app's
// session keeps working beside them, its placeholder in Authorization
// included; token_inject gives the API client's own token upstream.
func TestBearerTokensFromZitadel(t *testing.T) {
	for _, kind := range []string{devop.AccessTokenJWT, devop.AccessTokenOpaque} {
		t.Run(kind, func(t *testing.T) {
			op, err := devop.New(devop.Config{
				Addr: "127.0.0.1:0", ClientID: "caddy-test", ClientSecret: "test-secret",
				RedirectURIs:    []string{"http://127.0.0.1:*/oauth2/callback"},
				AccessTokenType: kind,
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(op.Close)
			up := newUpstream(t)
			s := startSite(t, up, siteOptions{issuer: op.Issuer(), clientID: "caddy-test", secret: "test-secret",
				extra: `bearer {
					audience caddy-test
					introspect
				}`, routes: bearerRoutes(up)})

			// The browser app signs in and calls its API with the
			// placeholder: the upstream gets the user's access token.
			b := newBrowser(t)
			resp, _ := b.navigate(s.url + "/app")
			resp, err = devop.SignIn(b.client, resp.Request.URL.String(), devop.DemoUsername, devop.DemoPassword)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			req, _ := http.NewRequest(http.MethodGet, s.url+"/api/me", nil)
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Authorization", "Bearer <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>")
			if resp, body := b.do(req); resp.StatusCode != http.StatusOK {
				t.Fatalf("the app's call with the placeholder: %d %s", resp.StatusCode, body)
			}
			token := strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer ")
			if token == "" || strings.Contains(token, "<<") {
				t.Fatalf("upstream Authorization %q, want the user's access token", up.lastHeader().Get("Authorization"))
			}
			if isJWT := strings.Count(token, ".") == 2; isJWT != (kind == devop.AccessTokenJWT) {
				t.Fatalf("the %s provider issued %.20q...", kind, token)
			}

			// An API client with that token, and no cookie.
			api := apiClient(t)
			resp, body := api.call(http.MethodGet, s.url+"/api/orders", "Bearer "+token)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("the provider's %s access token: %d %s", kind, resp.StatusCode, body)
			}
			wantHeaders(t, up.lastHeader(), map[string]string{
				"X-User-Id":     devop.DemoSubject,
				"Authorization": "Bearer " + token,
				"X-Api-Token":   token, // the caller's own, substituted
			})

			for name, bad := range map[string]string{
				"unknown":  "not-a-token-the-provider-issued",
				"tampered": token[:len(token)-4] + "AAAA",
			} {
				resp, body := api.call(http.MethodGet, s.url+"/api/orders", "Bearer "+bad)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("%s token:", name)
				}
				wantChallenge(t, s, resp, body)
			}

			resp, body = api.call(http.MethodGet, s.url+"/.well-known/oauth-protected-resource", "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("metadata: %d %s", resp.StatusCode, body)
			}
			doc := jsonBody(t, body)
			if doc["resource"] != s.url || fmt.Sprint(doc["authorization_servers"]) != "["+op.Issuer()+"]" {
				t.Errorf("metadata %s", body)
			}
			assertNoSecrets(t, "Caddy's log", logsAbove(s, "debug"), token)
		})
	}
}

// accessSite protects a fresh upstream with oidc_auth against p, with
// extra oidc_auth lines and routes (default: bearerRoutes).
func accessSite(t *testing.T, p *testop.Provider, extra, routes string) (*site, *upstream) {
	t.Helper()
	up := newUpstream(t)
	if routes == "" {
		routes = bearerRoutes(up)
	}
	return startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(),
		extra: extra, routes: routes}), up
}

// TestBearerTokensThroughCaddy: every way a JWT access token is refused,
// opaque tokens introspected, the provider's introspection endpoint in
// trouble, the 401 for no token, CORS preflights, and bearer over cookie.
func TestBearerTokensThroughCaddy(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, up := accessSite(t, p, `bearer {
		audience `+apiAudience+`
		typ at+jwt
		introspect
	}`, "")
	api := apiClient(t)
	mint := func(spec testop.AccessTokenSpec) string {
		t.Helper()
		if spec.Audience == nil {
			spec.Audience = []string{apiAudience}
		}
		tok, err := p.MintAccessToken(spec)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	tok := mint(testop.AccessTokenSpec{Subject: "svc-1", Claims: map[string]any{"email": "svc@example.com"}})
	if resp, body := api.call(http.MethodGet, s.url+"/api/orders", "Bearer "+tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("valid JWT: %d %s", resp.StatusCode, body)
	}
	wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Id": "svc-1", "X-User-Email": "[svc@example.com]", "X-Api-Token": tok})

	for _, fault := range []testop.AccessTokenFault{
		testop.AccessTokenExpired, testop.AccessTokenNotYetValid, testop.AccessTokenWrongIssuer,
		testop.AccessTokenWrongAudience, testop.AccessTokenTypJWT, testop.AccessTokenAlgNone,
		testop.AccessTokenBadSignature, testop.AccessTokenUnknownKid,
	} {
		t.Run(fault.String(), func(t *testing.T) {
			before := up.count()
			resp, body := api.call(http.MethodGet, s.url+"/api/orders", "Bearer "+mint(testop.AccessTokenSpec{Fault: fault}))
			wantChallenge(t, s, resp, body)
			if up.count() != before {
				t.Error("the upstream was called")
			}
		})
	}
	t.Run("no token", func(t *testing.T) {
		resp, body := api.call(http.MethodGet, s.url+"/api/orders", "")
		wantChallenge(t, s, resp, body)
	})

	t.Run("opaque", func(t *testing.T) {
		opaque := p.MintOpaqueAccessToken(testop.AccessTokenSpec{Subject: "svc-2", Audience: []string{apiAudience}})
		if resp, body := api.call(http.MethodGet, s.url+"/api/orders", "Bearer "+opaque); resp.StatusCode != http.StatusOK {
			t.Fatalf("active opaque token: %d %s", resp.StatusCode, body)
		}
		wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Id": "svc-2", "X-Api-Token": opaque})
		inactive := p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{apiAudience}})
		p.RevokeAccessToken(inactive)
		resp, body := api.call(http.MethodGet, s.url+"/api/orders", "Bearer "+inactive)
		wantChallenge(t, s, resp, body)

		p.SetIntrospectionDelay(time.Minute) // a hanging provider
		start := time.Now()
		resp, body = api.call(http.MethodGet, s.url+"/api/orders", "Bearer "+p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{apiAudience}}))
		p.SetIntrospectionDelay(0)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("introspection hanging: %d %s, want 503 with Retry-After", resp.StatusCode, body)
		}
		if took := time.Since(start); took > 8*time.Second {
			t.Errorf("the answer took %v", took)
		}
		p.SetDown(true)
		resp, body = api.call(http.MethodGet, s.url+"/api/orders", "Bearer "+p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{apiAudience}}))
		p.SetDown(false)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("provider down: %d %s, want 503", resp.StatusCode, body)
		}
	})

	t.Run("preflight", func(t *testing.T) {
		before := up.count()
		req, _ := http.NewRequest(http.MethodOptions, s.url+"/upload", nil)
		req.Header.Set("Origin", "https://app.example")
		req.Header.Set("Access-Control-Request-Method", "PUT")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		if resp, body := api.do(req); resp.StatusCode != http.StatusOK || up.count() != before+1 {
			t.Errorf("preflight: %d %s, want it passed to the upstream", resp.StatusCode, body)
		}
	})

	t.Run("bearer over cookie", func(t *testing.T) {
		b := newBrowser(t)
		b.signIn(s, "/")
		resp, body := b.call(http.MethodGet, s.url+"/api/orders", "Bearer "+mint(testop.AccessTokenSpec{Fault: testop.AccessTokenExpired}))
		wantChallenge(t, s, resp, body)
		if resp, _ := b.fetch(s.url + "/api/orders"); resp.StatusCode != http.StatusOK {
			t.Errorf("the session alone: %d", resp.StatusCode)
		}
	})
	assertNoSecrets(t, "Caddy's log", logsAbove(s, "debug"), tok)
}

// logsAbove is the site's log without the lines of level. Caddy's
// reverse_proxy writes the headers of the request it sends upstream at
// debug level, with only Authorization and cookies redacted: a token that
// token_inject put in the X-Api-Token header above is there.
func logsAbove(s *site, level string) string {
	var out []string
	for _, line := range strings.Split(s.logs(), "\n") {
		if !strings.Contains(line, `"level":"`+level+`"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestAllowAndDenyRulesThroughCaddy: who may enter, decided on the ID
// token's and userinfo's claims at each request; a refused user gets a
// 403 page when navigating and JSON from the API, neither naming a claim,
// and the log names the subject and the rule, no token.
func TestAllowAndDenyRulesThroughCaddy(t *testing.T) {
	p := newProvider(t, testop.Config{UserinfoClaims: map[string]any{"groups": []string{"staff"}}})
	s, _ := accessSite(t, p, `allow {
			email_domain example.com
			claim groups staff
		}
		allow {
			claim realm_access.roles admin
		}
		allow {
			email dana@partner.example
		}
		allow {
			claim_regexp https://example.com/tier ^(gold|platinum)$
		}
		deny {
			claim resource_access.caddy.roles blocked
		}`, "")

	for _, c := range []struct {
		name    string
		claims  map[string]any
		allowed bool
	}{
		{"verified domain and userinfo group", map[string]any{"email": "alice@example.com", "email_verified": true}, true},
		{"unverified domain", map[string]any{"email": "alice@example.com", "email_verified": false}, false},
		{"other domain", map[string]any{"email": "bob@elsewhere.example", "email_verified": true}, false},
		{"listed address", map[string]any{"email": "Dana@Partner.example", "email_verified": false}, true},
		{"unlisted address", map[string]any{"email": "dan@partner.example", "email_verified": true}, false},
		{"nested role", map[string]any{"email": "bob@elsewhere.example", "realm_access": map[string]any{"roles": []string{"user", "admin"}}}, true},
		{"namespaced regexp", map[string]any{"email": "bob@elsewhere.example", "https://example.com/tier": "platinum"}, true},
		{"namespaced regexp refused", map[string]any{"email": "bob@elsewhere.example", "https://example.com/tier": "platinum-trial"}, false},
		{"deny over allow", map[string]any{"email": "carol@example.com", "email_verified": true,
			"resource_access": map[string]any{"caddy": map[string]any{"roles": []string{"blocked"}}}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := p.SetClaims(c.claims); err != nil {
				t.Fatal(err)
			}
			b := newBrowser(t)
			resp, body := b.navigate(s.url + "/app")
			if c.allowed {
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("refused: %d %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
				t.Fatalf("navigation: %d %s, want a 403 page", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			resp, apiBody := b.fetch(s.url + "/api/orders")
			if resp.StatusCode != http.StatusForbidden || jsonBody(t, apiBody)["error"] != "access_denied" {
				t.Fatalf("API call: %d %s, want 403 JSON", resp.StatusCode, apiBody)
			}
			for _, answer := range []string{body, apiBody} {
				if strings.Contains(answer, "@") || strings.Contains(answer, "blocked") || strings.Contains(answer, "platinum") {
					t.Errorf("the answer names a claim: %s", answer)
				}
			}
		})
	}
	logs := s.logs()
	var denied []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"access denied"`) {
			denied = append(denied, line)
		}
	}
	if len(denied) == 0 {
		t.Fatal("no access denied in the log")
	}
	for _, line := range denied {
		if !strings.Contains(line, `"sub":"user-1"`) || !strings.Contains(line, `"rule":"`) {
			t.Errorf("log line without sub or rule: %s", line)
		}
		if strings.Contains(line, "@") {
			t.Errorf("log line names an email address: %s", line)
		}
	}
	if !strings.Contains(logs, `"rule":"deny rule 1"`) {
		t.Error("the deny rule is not named in the log")
	}
	assertNoSecrets(t, "Caddy's log", logs, opaqueTokens(p)...)
}

// TestClaimMatcherInCaddyfile: `oidc_claim` branches a real Caddyfile's
// routes on a signed-in user's or a bearer token's claims.
func TestClaimMatcherInCaddyfile(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	s, _ := accessSite(t, p, `bearer {
		audience `+apiAudience+`
	}`, fmt.Sprintf(`@admins oidc_claim realm_access.roles admin
	handle @admins {
		respond "admin area"
	}
	@reporters oidc_claim https://example.com/groups reporting
	handle @reporters {
		reverse_proxy %s
	}
	respond "no special access" 200`, up.hostPort()))

	for _, c := range []struct {
		claims map[string]any
		want   string
	}{
		{map[string]any{"realm_access": map[string]any{"roles": []string{"user", "admin"}}}, "admin area"},
		{map[string]any{"https://example.com/groups": []string{"reporting"}}, "upstream saw"},
		{map[string]any{"realm_access": map[string]any{"roles": "user"}}, "no special access"},
	} {
		if err := p.SetClaims(c.claims); err != nil {
			t.Fatal(err)
		}
		b := newBrowser(t)
		if body := b.signIn(s, "/area"); !strings.Contains(body, c.want) {
			t.Errorf("session with %v: %q, want %q", c.claims, body, c.want)
		}
		tok, err := p.MintAccessToken(testop.AccessTokenSpec{Audience: []string{apiAudience}, Claims: c.claims})
		if err != nil {
			t.Fatal(err)
		}
		if resp, body := apiClient(t).call(http.MethodGet, s.url+"/area", "Bearer "+tok); resp.StatusCode != http.StatusOK || !strings.Contains(body, c.want) {
			t.Errorf("bearer token with %v: %d %q, want %q", c.claims, resp.StatusCode, body, c.want)
		}
	}
}

// TestRulesWithZitadelGroups: the zitadel OP's demo user, in the staff and
// reporting groups, enters a site that lets reporting in and is refused
// by one for admins only or one that denies staff, as a browser and with
// its own access token, whose claims (groups, but no email) decide for it.
func TestRulesWithZitadelGroups(t *testing.T) {
	op, err := devop.New(devop.Config{
		Addr: "127.0.0.1:0", ClientID: "caddy-test", ClientSecret: "test-secret",
		RedirectURIs:    []string{"http://127.0.0.1:*/oauth2/callback"},
		AccessTokenType: devop.AccessTokenJWT,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	var token string
	for _, c := range []struct {
		rules          string
		session, token int
	}{
		{"", http.StatusOK, http.StatusOK},
		{"allow {\n\t\t\tclaim groups reporting\n\t\t}", http.StatusOK, http.StatusOK},
		{"allow {\n\t\t\temail_domain example.com\n\t\t\tclaim groups reporting\n\t\t}", http.StatusOK, http.StatusForbidden},
		{"allow {\n\t\t\tclaim groups admins\n\t\t}", http.StatusForbidden, http.StatusForbidden},
		{"deny {\n\t\t\tclaim_regexp groups ^staff$\n\t\t}", http.StatusForbidden, http.StatusForbidden},
	} {
		up := newUpstream(t)
		s := startSite(t, up, siteOptions{issuer: op.Issuer(), clientID: "caddy-test", secret: "test-secret",
			extra: c.rules + `
		bearer {
			audience caddy-test
		}`, routes: bearerRoutes(up)})
		b := newBrowser(t)
		resp, _ := b.navigate(s.url + "/app")
		resp, err = devop.SignIn(b.client, resp.Request.URL.String(), devop.DemoUsername, devop.DemoPassword)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.session {
			t.Errorf("%q: the signed-in demo user got %d, want %d", c.rules, resp.StatusCode, c.session)
		}
		if token == "" {
			// The user's access token, as the upstream gets it.
			req, _ := http.NewRequest(http.MethodGet, s.url+"/api/me", nil)
			req.Header.Set("Authorization", "Bearer <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>")
			b.do(req)
			token = strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer ")
			if groups := decodeJWTClaims(t, token)["groups"]; fmt.Sprint(groups) != "[staff reporting]" {
				t.Fatalf("the access token's groups are %v", groups)
			}
		}
		if resp, body := apiClient(t).call(http.MethodGet, s.url+"/api/orders", "Bearer "+token); resp.StatusCode != c.token {
			t.Errorf("%q: the demo user's access token got %d %s, want %d", c.rules, resp.StatusCode, body, c.token)
		}
	}
}
