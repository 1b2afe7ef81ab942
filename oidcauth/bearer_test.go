package oidcauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
	"github.com/oidcgate/caddy-oidc/internal/rules"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

const testAPI = "https://api.example"

// bearerHandler provisions h, taking bearer tokens as b says, against a
// fresh test provider.
func bearerHandler(t testing.TB, h *Handler, b *BearerConfig) (*Handler, *testop.Provider) {
	t.Helper()
	p, err := testop.New(testop.Config{ClientID: "client"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	h.Issuer, h.ClientSecret, h.Bearer = p.Issuer(), p.ClientSecret(), b
	return newTestHandler(t, h), p
}

func mint(t testing.TB, p *testop.Provider, spec testop.AccessTokenSpec) string {
	t.Helper()
	if spec.Audience == nil {
		spec.Audience = []string{testAPI}
	}
	tok, err := p.MintAccessToken(spec)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// apiRequest is an API client's call with authorization as its
// Authorization header ("" for none).
func apiRequest(authorization string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://example.com/api/orders", nil)
	r.Header.Set("Accept", "application/json")
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	return caddyRequest(r)
}

// serve runs r through h and returns the answer and the request the next
// handler got (nil if it was not called).
func serve(t testing.TB, h *Handler, r *http.Request) (*httptest.ResponseRecorder, *http.Request) {
	t.Helper()
	rec := httptest.NewRecorder()
	next := &recordingNext{}
	if err := h.ServeHTTP(rec, r, next); err != nil {
		t.Fatal(err)
	}
	return rec, next.r
}

// assertChallenge checks a 401 for a missing or refused bearer token.
func assertChallenge(t *testing.T, rec *httptest.ResponseRecorder, passed *http.Request, metadataURL string) {
	t.Helper()
	if passed != nil {
		t.Fatal("the request was let through")
	}
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: %s", rec.Code, rec.Body)
	}
	www := rec.Header().Get("WWW-Authenticate")
	for _, want := range []string{`Bearer `, `error="invalid_token"`, `resource_metadata="` + metadataURL + `"`} {
		if !strings.Contains(www, want) {
			t.Errorf("WWW-Authenticate %q lacks %s", www, want)
		}
	}
	var body map[string]string
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != "invalid_token" {
		t.Errorf("body %s, want JSON with error invalid_token", rec.Body)
	}
}

func TestBearerJWTAccessTokensAcceptedAndRefused(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{"other-api", testAPI}, Typ: "at+jwt"})
	const metadata = "http://example.com/.well-known/oauth-protected-resource"

	tok := mint(t, p, testop.AccessTokenSpec{Subject: "svc-7", Claims: map[string]any{"email": "svc@example.com"}})
	r := apiRequest("Bearer " + tok)
	rec, passed := serve(t, h, r)
	if passed == nil {
		t.Fatalf("a valid token was refused: %d %s", rec.Code, rec.Body)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if id, _ := repl.GetString("http.auth.user.id"); id != "svc-7" {
		t.Errorf("{http.auth.user.id} = %q, want the token's sub", id)
	}
	if email, _ := repl.GetString("http.auth.user.email"); email != "svc@example.com" {
		t.Errorf("{http.auth.user.email} = %q, want the token's claim", email)
	}
	if got, ok := BearerToken(passed); !ok || got != tok {
		t.Error("BearerToken does not give the caller's token to later handlers")
	}
	if s, ok := SessionFromRequest(passed); ok || s != nil {
		t.Error("a bearer request has a session")
	}

	for _, fault := range []testop.AccessTokenFault{
		testop.AccessTokenExpired, testop.AccessTokenNotYetValid, testop.AccessTokenWrongIssuer,
		testop.AccessTokenWrongAudience, testop.AccessTokenTypJWT, testop.AccessTokenNoTyp,
		testop.AccessTokenAlgNone, testop.AccessTokenUnknownKid, testop.AccessTokenBadSignature,
		testop.AccessTokenHS256,
	} {
		t.Run(fault.String(), func(t *testing.T) {
			tok := mint(t, p, testop.AccessTokenSpec{Fault: fault})
			rec, passed := serve(t, h, apiRequest("Bearer "+tok))
			assertChallenge(t, rec, passed, metadata)
			if strings.Contains(rec.Body.String()+fmt.Sprint(rec.Header()), tok) {
				t.Error("the answer repeats the token")
			}
		})
	}
	t.Run("opaque token without introspect", func(t *testing.T) {
		tok := p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{testAPI}})
		rec, passed := serve(t, h, apiRequest("Bearer "+tok))
		assertChallenge(t, rec, passed, metadata)
	})
}

func TestBearerTypIsCheckedOnlyWhenRequired(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}})
	for _, fault := range []testop.AccessTokenFault{testop.AccessTokenTypJWT, testop.AccessTokenNoTyp} {
		if rec, passed := serve(t, h, apiRequest("Bearer "+mint(t, p, testop.AccessTokenSpec{Fault: fault}))); passed == nil {
			t.Errorf("%s refused without typ at+jwt configured: %d", fault, rec.Code)
		}
	}
}

// TestBearerRequiresConfiguredScopes (RFC 6750 3.1): a valid token that
// does not grant a required scope gets 403 insufficient_scope naming the
// scopes to ask for, whether it is a JWT or introspected.
func TestBearerRequiresConfiguredScopes(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}, Scopes: []string{"orders:read", "orders:list"}, Introspect: true})
	if _, passed := serve(t, h, apiRequest("Bearer "+mint(t, p, testop.AccessTokenSpec{Scope: "openid orders:read orders:list"}))); passed == nil {
		t.Error("a token granting the scopes was refused")
	}
	for name, tok := range map[string]string{
		"JWT":          mint(t, p, testop.AccessTokenSpec{Scope: "openid orders:read orders:write"}),
		"introspected": p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{testAPI}, Scope: "openid orders:write"}),
	} {
		rec, passed := serve(t, h, apiRequest("Bearer "+tok))
		if passed != nil {
			t.Fatalf("%s: a token without the scopes was let through", name)
		}
		www := rec.Header().Get("WWW-Authenticate")
		for _, want := range []string{`Bearer `, `error="insufficient_scope"`, `scope="orders:read orders:list"`, `resource_metadata="http://example.com/.well-known/oauth-protected-resource"`} {
			if rec.Code != http.StatusForbidden || !strings.Contains(www, want) {
				t.Errorf("%s: %d, WWW-Authenticate %q, want 403 with %s", name, rec.Code, www, want)
			}
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != "insufficient_scope" {
			t.Errorf("%s: body %s, want JSON with error insufficient_scope", name, rec.Body)
		}
	}
}

func TestBearerTokenRefusedOnceExpiredAfterItWasAccepted(t *testing.T) {
	clock := newTestClock(time.Now())
	h, p := bearerHandler(t, &Handler{now: clock.Now}, &BearerConfig{Audience: []string{testAPI}})
	tok := mint(t, p, testop.AccessTokenSpec{TTL: time.Minute})
	if rec, passed := serve(t, h, apiRequest("Bearer "+tok)); passed == nil {
		t.Fatalf("refused while valid: %d %s", rec.Code, rec.Body)
	}
	clock.Set(clock.Now().Add(2 * time.Minute))
	rec, passed := serve(t, h, apiRequest("Bearer "+tok))
	assertChallenge(t, rec, passed, "http://example.com/.well-known/oauth-protected-resource")
}

func TestMissingBearerTokenGetsChallengeWithResourceMetadata(t *testing.T) {
	h, _ := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}, MetadataPath: "/.well-known/oauth-protected-resource/api"})
	rec, passed := serve(t, h, apiRequest(""))
	assertChallenge(t, rec, passed, "http://example.com/.well-known/oauth-protected-resource/api")

	// A page navigation still goes to sign in.
	r := httptest.NewRequest(http.MethodGet, "http://example.com/app", nil)
	r.Header.Set("Accept", "text/html")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	if rec, _ := serve(t, h, caddyRequest(r)); rec.Code != http.StatusFound {
		t.Errorf("navigation without a session: %d, want 302 to the provider", rec.Code)
	}
}

func TestResourceMetadataDocument(t *testing.T) {
	for _, c := range []struct{ path, resource string }{
		{"", "http://example.com"},
		{"/.well-known/oauth-protected-resource/api", "http://example.com/api"},
		{"/api/metadata", "http://example.com"},
	} {
		t.Run(c.path, func(t *testing.T) {
			h, p := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}, Scopes: []string{"orders:read"}, MetadataPath: c.path})
			path := c.path
			if path == "" {
				path = "/.well-known/oauth-protected-resource"
			}
			r := caddyRequest(httptest.NewRequest(http.MethodGet, "http://example.com"+path, nil))
			rec, passed := serve(t, h, r)
			if passed != nil || rec.Code != http.StatusOK {
				t.Fatalf("status %d (passed on: %v)", rec.Code, passed != nil)
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			var doc struct {
				Resource       string   `json:"resource"`
				Servers        []string `json:"authorization_servers"`
				BearerMethods  []string `json:"bearer_methods_supported"`
				ScopesSupports []string `json:"scopes_supported"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			// RFC 9728 3.3: the resource is the URL the metadata's URL was
			// made from, or a client must refuse the document.
			if doc.Resource != c.resource {
				t.Errorf("resource %q, want %q", doc.Resource, c.resource)
			}
			if len(doc.Servers) != 1 || doc.Servers[0] != p.Issuer() {
				t.Errorf("authorization_servers %v, want [%s]", doc.Servers, p.Issuer())
			}
			if len(doc.BearerMethods) != 1 || doc.BearerMethods[0] != "header" {
				t.Errorf("bearer_methods_supported %v", doc.BearerMethods)
			}
			if len(doc.ScopesSupports) != 1 || doc.ScopesSupports[0] != "orders:read" {
				t.Errorf("scopes_supported %v", doc.ScopesSupports)
			}
			post := caddyRequest(httptest.NewRequest(http.MethodPost, "http://example.com"+path, nil))
			if rec, _ := serve(t, h, post); rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("POST: %d, want 405", rec.Code)
			}
		})
	}
	t.Run("without bearer", func(t *testing.T) {
		h := newTestHandler(t, &Handler{})
		r := httptest.NewRequest(http.MethodGet, "http://example.com/.well-known/oauth-protected-resource", nil)
		r.Header.Set("Accept", "application/json")
		if rec, _ := serve(t, h, caddyRequest(r)); rec.Code != http.StatusUnauthorized {
			t.Errorf("status %d: a site without bearer serves no metadata", rec.Code)
		}
	})
}

func TestBearerTokenWinsOverSessionCookie(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}})
	s := testSession(time.Now(), 10, 40)

	r := signedInRequest(t, h, s)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Authorization", "Bearer "+mint(t, p, testop.AccessTokenSpec{Subject: "api-client"}))
	_, passed := serve(t, h, r)
	if passed == nil {
		t.Fatal("refused")
	}
	if _, ok := SessionFromRequest(passed); ok {
		t.Error("the session cookie was used although a bearer token came with it")
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if id, _ := repl.GetString("http.auth.user.id"); id != "api-client" {
		t.Errorf("{http.auth.user.id} = %q, want the token's subject", id)
	}

	r = signedInRequest(t, h, s)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Authorization", "Bearer "+mint(t, p, testop.AccessTokenSpec{Fault: testop.AccessTokenExpired}))
	rec, passed := serve(t, h, r)
	assertChallenge(t, rec, passed, "http://example.com/.well-known/oauth-protected-resource")
}

// A session cookie that comes with a bearer token is oidc_auth's, as on
// a session's request: it does not go upstream; the site's other cookies
// do.
func TestBearerRequestDoesNotPassSessionCookieOn(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}})
	r := signedInRequest(t, h, testSession(time.Now(), 10, 40))
	r.Header.Add("Cookie", "theme=dark")
	r.Header.Set("Authorization", "Bearer "+mint(t, p, testop.AccessTokenSpec{}))
	_, passed := serve(t, h, r)
	if passed == nil {
		t.Fatal("refused")
	}
	if got := strings.Join(passed.Header.Values("Cookie"), "; "); got != "theme=dark" {
		t.Errorf("Cookie passed on: %q, want only theme=dark", got)
	}
}

func TestIntrospectionNeedsClientCredentials(t *testing.T) {
	h, _ := bearerHandler(t, &Handler{}, &BearerConfig{Introspect: true}) // with a client secret
	h.ClientSecret = ""
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "introspect") {
		t.Errorf("introspect without a client secret or key: %v, want an error", err)
	}
	h.ClientKeyFile = "/run/secrets/client-key.pem"
	if err := h.Validate(); err != nil {
		t.Errorf("with a client key: %v", err)
	}
}

// The browser app refers to the user's access token by token_inject's
// placeholder, in the Authorization header too; with bearer tokens
// accepted, that request is still the session's.
func TestPlaceholderInAuthorizationIsNotABearerToken(t *testing.T) {
	h, _ := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}})
	s := testSession(time.Now(), 10, 40)
	for _, v := range []string{
		"Bearer <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>",
		"bearer {{ACCESS_TOKEN}}",
		"Bearer %ACCESS_TOKEN%",
	} {
		r := signedInRequest(t, h, s)
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Authorization", v)
		rec, passed := serve(t, h, r)
		if passed == nil {
			t.Errorf("%q: %d %s, want the session's request let through", v, rec.Code, rec.Body)
			continue
		}
		if got, ok := SessionFromRequest(passed); !ok || got.Subject() != "user-1" {
			t.Errorf("%q: the request lost its session", v)
		}
		if passed.Header.Get("Authorization") != v {
			t.Errorf("%q: Authorization changed to %q", v, passed.Header.Get("Authorization"))
		}
	}
	// Without a session it is no credential at all.
	rec, passed := serve(t, h, apiRequest("Bearer <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"))
	assertChallenge(t, rec, passed, "http://example.com/.well-known/oauth-protected-resource")
}

func TestBearerOpaqueTokensIntrospected(t *testing.T) {
	clock := newTestClock(time.Now())
	h, p := bearerHandler(t, &Handler{now: clock.Now}, &BearerConfig{Introspect: true, Audience: []string{testAPI}})
	const metadata = "http://example.com/.well-known/oauth-protected-resource"

	tok := p.MintOpaqueAccessToken(testop.AccessTokenSpec{Subject: "svc-9", Audience: []string{testAPI}, TTL: 10 * time.Minute,
		Claims: map[string]any{"email": "nine@example.com"}})
	r := apiRequest("Bearer " + tok)
	rec, passed := serve(t, h, r)
	if passed == nil {
		t.Fatalf("an active token was refused: %d %s", rec.Code, rec.Body)
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if id, _ := repl.GetString("http.auth.user.id"); id != "svc-9" {
		t.Errorf("{http.auth.user.id} = %q", id)
	}
	if email, _ := repl.GetString("http.auth.user.email"); email != "nine@example.com" {
		t.Errorf("{http.auth.user.email} = %q", email)
	}
	form, _, _ := p.LastIntrospectionRequest()
	if form.Get("token") != tok {
		t.Error("the provider was not asked about the token")
	}

	// Cached briefly: a revoked token is still taken until the answer is
	// a minute old, then refused.
	p.RevokeAccessToken(tok)
	calls := p.IntrospectionCalls()
	if _, passed := serve(t, h, apiRequest("Bearer "+tok)); passed == nil {
		t.Error("the cached answer was not used")
	}
	if p.IntrospectionCalls() != calls {
		t.Error("the provider was asked again within the cache's lifetime")
	}
	clock.Set(clock.Now().Add(61 * time.Second))
	rec, passed = serve(t, h, apiRequest("Bearer "+tok))
	assertChallenge(t, rec, passed, metadata)

	t.Run("inactive", func(t *testing.T) {
		rec, passed := serve(t, h, apiRequest("Bearer unknown-opaque-token"))
		assertChallenge(t, rec, passed, metadata)
	})
	t.Run("answer without aud", func(t *testing.T) {
		// RFC 7662 makes aud optional; Zitadel leaves it out and answers
		// active only to a client in the token's audience.
		noAud := p.MintOpaqueAccessToken(testop.AccessTokenSpec{Claims: map[string]any{"aud": nil}})
		if rec, passed := serve(t, h, apiRequest("Bearer "+noAud)); passed == nil {
			t.Errorf("refused: %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("another API's", func(t *testing.T) {
		other := p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{"https://other.example"}})
		rec, passed := serve(t, h, apiRequest("Bearer "+other))
		assertChallenge(t, rec, passed, metadata)
	})
	t.Run("JWT introspected when it names no audience of ours", func(t *testing.T) {
		// A JWT access token is verified locally: one for another API is
		// refused whatever introspection would say.
		jwt := mint(t, p, testop.AccessTokenSpec{Fault: testop.AccessTokenWrongAudience})
		rec, passed := serve(t, h, apiRequest("Bearer "+jwt))
		assertChallenge(t, rec, passed, metadata)
	})
}

func TestIntrospectionAnswerNotReusedPastTokenExpiry(t *testing.T) {
	clock := newTestClock(time.Now())
	h, p := bearerHandler(t, &Handler{now: clock.Now}, &BearerConfig{Introspect: true, IntrospectionCacheTTL: caddy.Duration(time.Hour)})
	tok := p.MintOpaqueAccessToken(testop.AccessTokenSpec{TTL: 30 * time.Second})
	if rec, passed := serve(t, h, apiRequest("Bearer "+tok)); passed == nil {
		t.Fatalf("refused: %d %s", rec.Code, rec.Body)
	}
	clock.Set(clock.Now().Add(31 * time.Second))
	rec, passed := serve(t, h, apiRequest("Bearer "+tok))
	assertChallenge(t, rec, passed, "http://example.com/.well-known/oauth-protected-resource")
}

func TestIntrospectionProviderTroubleIs503WithoutHanging(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Introspect: true, introspectionTimeout: 300 * time.Millisecond})
	assert503 := func(t *testing.T) {
		t.Helper()
		tok := p.MintOpaqueAccessToken(testop.AccessTokenSpec{})
		start := time.Now()
		rec, passed := serve(t, h, apiRequest("Bearer "+tok))
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("took %v", took)
		}
		if passed != nil || rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", rec.Code)
		}
		if rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "temporarily_unavailable") {
			t.Errorf("answer %v %s", rec.Header(), rec.Body)
		}
		if strings.Contains(rec.Body.String(), tok) {
			t.Error("the answer repeats the token")
		}
	}
	t.Run("error status", func(t *testing.T) {
		p.SetIntrospectionStatus(http.StatusServiceUnavailable)
		defer p.SetIntrospectionStatus(0)
		assert503(t)
	})
	t.Run("hanging", func(t *testing.T) {
		p.SetIntrospectionDelay(time.Minute)
		defer p.SetIntrospectionDelay(0)
		assert503(t)
	})
	t.Run("down", func(t *testing.T) {
		p.SetDown(true)
		defer p.SetDown(false)
		assert503(t)
	})
	t.Run("unreachable", func(t *testing.T) {
		p.Close()
		assert503(t)
	})
}

func TestIntrospectionCacheIsBounded(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Introspect: true})
	h.Bearer.cache.max = 5
	for i := range 20 {
		tok := p.MintOpaqueAccessToken(testop.AccessTokenSpec{})
		if _, passed := serve(t, h, apiRequest("Bearer "+tok)); passed == nil {
			t.Fatalf("token %d refused", i)
		}
		if n := h.Bearer.cache.len(); n > 5 {
			t.Fatalf("%d answers kept, at most 5 allowed", n)
		}
	}
	if p.IntrospectionCalls() != 20 {
		t.Errorf("%d introspection calls for 20 tokens", p.IntrospectionCalls())
	}
}

func TestVerifiedTokenCacheIsBounded(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}})
	h.Bearer.verified.max = 5
	for i := range 20 {
		if _, passed := serve(t, h, apiRequest("Bearer "+mint(t, p, testop.AccessTokenSpec{}))); passed == nil {
			t.Fatalf("token %d refused", i)
		}
		if n := h.Bearer.verified.len(); n > 5 {
			t.Fatalf("%d verified tokens kept, at most 5 allowed", n)
		}
	}
}

func TestRulesApplyToBearerTokens(t *testing.T) {
	h, p := bearerHandler(t, &Handler{
		Allow: []rules.Rule{{Conditions: []rules.Condition{{Claim: "realm_access.roles", Values: []string{"api-user"}}}}},
	}, &BearerConfig{Audience: []string{testAPI}, Introspect: true})
	admitted := map[string]any{"realm_access": map[string]any{"roles": []string{"api-user"}}}
	if _, passed := serve(t, h, apiRequest("Bearer "+mint(t, p, testop.AccessTokenSpec{Claims: admitted}))); passed == nil {
		t.Error("a JWT with the role was refused")
	}
	if _, passed := serve(t, h, apiRequest("Bearer "+p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{testAPI}, Claims: admitted}))); passed == nil {
		t.Error("an introspected token with the role was refused")
	}
	for name, tok := range map[string]string{
		"JWT":    mint(t, p, testop.AccessTokenSpec{}),
		"opaque": p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{testAPI}}),
	} {
		rec, passed := serve(t, h, apiRequest("Bearer "+tok))
		if passed != nil || rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), `"access_denied"`) {
			t.Errorf("%s without the role: %d %s, want 403 JSON", name, rec.Code, rec.Body)
		}
	}
}

func TestCORSPreflightPassesWithoutCredentials(t *testing.T) {
	preflight := func() *http.Request {
		r := httptest.NewRequest(http.MethodOptions, "http://example.com/api/orders", nil)
		r.Header.Set("Origin", "https://app.example")
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("Access-Control-Request-Headers", "authorization")
		return caddyRequest(r)
	}
	for _, b := range []*BearerConfig{nil, {Audience: []string{testAPI}}} {
		h, _ := bearerHandler(t, &Handler{}, b)
		if rec, passed := serve(t, h, preflight()); passed == nil {
			t.Errorf("bearer %v: preflight answered %d, want it passed on", b != nil, rec.Code)
		}
		// An OPTIONS request that is no preflight needs credentials.
		r := httptest.NewRequest(http.MethodOptions, "http://example.com/api/orders", nil)
		r.Header.Set("Accept", "application/json")
		if rec, passed := serve(t, h, caddyRequest(r)); passed != nil || rec.Code != http.StatusUnauthorized {
			t.Errorf("bearer %v: plain OPTIONS: %d, want 401", b != nil, rec.Code)
		}
	}
	off := false
	h := newTestHandler(t, &Handler{CORSPreflight: &off})
	if rec, passed := serve(t, h, preflight()); passed != nil || rec.Code != http.StatusUnauthorized {
		t.Errorf("cors_preflight off: %d, want 401", rec.Code)
	}
}

// sessionWithClaims is a session whose ID token has these claims.
func sessionWithClaims(t *testing.T, claimsJSON string) *Session {
	t.Helper()
	s := testSession(time.Now(), 0, 40)
	s.rawIDToken = fakeJWT(claimsJSON)
	if err := s.deriveClaims(); err != nil {
		t.Fatal(err)
	}
	s.subject, _ = s.claims["sub"].(string)
	return s
}

func TestRulesRefuseSignedInUsersWith403(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	h := newTestHandler(t, &Handler{
		Allow: []rules.Rule{
			{Conditions: []rules.Condition{{EmailDomain: []string{"example.com"}}}},
			{Conditions: []rules.Condition{{Claim: "https://example.com/roles", Values: []string{"partner"}}}},
		},
		Deny: []rules.Rule{{Conditions: []rules.Condition{{ClaimRegexp: "resource_access.my-client.roles", Pattern: "^suspended$"}}}},
	})
	h.logger = zap.New(core)

	const base = `"iss":"http://op","aud":"client","sub":"%s","email":"%s","email_verified":%t`
	for _, c := range []struct {
		name, claims string
		allowed      bool
	}{
		{"verified domain", fmt.Sprintf(`{`+base+`}`, "u1", "alice@example.com", true), true},
		{"unverified domain", fmt.Sprintf(`{`+base+`}`, "u2", "mallory@example.com", false), false},
		{"namespaced role", fmt.Sprintf(`{`+base+`,"https://example.com/roles":["reader","partner"]}`, "u3", "bob@partner.example", false), true},
		{"neither", fmt.Sprintf(`{`+base+`}`, "u4", "eve@other.example", true), false},
		{"denied over allowed", fmt.Sprintf(`{`+base+`,"resource_access":{"my-client":{"roles":["suspended"]}}}`, "u5", "carol@example.com", true), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := sessionWithClaims(t, c.claims)
			api := signedInRequest(t, h, s)
			api.Header.Set("Accept", "application/json")
			rec, passed := serve(t, h, api)
			if c.allowed {
				if passed == nil {
					t.Fatalf("refused: %d %s", rec.Code, rec.Body)
				}
				return
			}
			if passed != nil || rec.Code != http.StatusForbidden {
				t.Fatalf("API call: %d, want 403", rec.Code)
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != "access_denied" {
				t.Errorf("API call: body %s, want JSON access_denied", rec.Body)
			}

			nav := signedInRequest(t, h, s)
			nav.Header.Set("Accept", "text/html")
			nav.Header.Set("Sec-Fetch-Mode", "navigate")
			rec, passed = serve(t, h, nav)
			if passed != nil || rec.Code != http.StatusForbidden || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") ||
				!strings.Contains(rec.Body.String(), "Access denied") {
				t.Errorf("navigation: %d %q, want a 403 page", rec.Code, rec.Header().Get("Content-Type"))
			}
			var email string
			_ = json.Unmarshal([]byte(strings.Split(strings.Split(c.claims, `"email":`)[1], ",")[0]), &email)
			for _, answer := range []string{rec.Body.String(), fmt.Sprint(rec.Header())} {
				if strings.Contains(answer, email) || strings.Contains(answer, "suspended") || strings.Contains(answer, s.subject) {
					t.Errorf("the answer names a claim value: %s", answer)
				}
			}
		})
	}

	denied := logs.FilterMessage("access denied").All()
	if len(denied) != 6 { // three refused users, two requests each
		t.Fatalf("%d access denied log entries, want 6", len(denied))
	}
	for _, e := range denied {
		f := e.ContextMap()
		if f["sub"] == "" || f["rule"] == "" {
			t.Errorf("log entry %v lacks sub or rule", f)
		}
	}
	if got := denied[len(denied)-1].ContextMap(); got["sub"] != "u5" || got["rule"] != "deny rule 1" {
		t.Errorf("the denied user's entry is %v, want sub u5 and deny rule 1", got)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "@") {
			t.Errorf("a log entry names an email address: %v", e.ContextMap())
		}
	}
}

func TestClaimMatcher(t *testing.T) {
	h, p := bearerHandler(t, &Handler{}, &BearerConfig{Audience: []string{testAPI}})
	s := sessionWithClaims(t, `{"iss":"http://op","aud":"client","sub":"u1","groups":["staff","admins"],
		"realm_access":{"roles":["editor"]},"resource_access":{"my-client":{"roles":["reporter"]}},
		"https://example.com/tier":"gold","level":3}`)
	r := signedInRequest(t, h, s)
	r.Header.Set("Accept", "application/json")
	_, session := serve(t, h, r)
	if session == nil {
		t.Fatal("not signed in")
	}
	_, bearer := serve(t, h, apiRequest("Bearer "+mint(t, p, testop.AccessTokenSpec{Claims: map[string]any{"groups": []string{"robots"}}})))
	if bearer == nil {
		t.Fatal("bearer refused")
	}
	for _, c := range []struct {
		m       MatchClaim
		session bool
		bearer  bool
	}{
		{MatchClaim{Claim: "groups", Values: []string{"admins"}}, true, false},
		{MatchClaim{Claim: "groups", Values: []string{"nobody", "robots"}}, false, true},
		{MatchClaim{Claim: "realm_access.roles", Values: []string{"editor"}}, true, false},
		{MatchClaim{Claim: "resource_access.my-client.roles", Values: []string{"reporter"}}, true, false},
		{MatchClaim{Claim: "https://example.com/tier", Values: []string{"gold"}}, true, false},
		{MatchClaim{Claim: "https://example.com/tier", Values: []string{"silver"}}, false, false},
		{MatchClaim{Claim: "level", Values: []string{"3"}}, true, false},
		{MatchClaim{Claim: "realm_access", Values: []string{"editor"}}, false, false},
	} {
		if got := c.m.Match(session); got != c.session {
			t.Errorf("%s %v on the session: %v", c.m.Claim, c.m.Values, got)
		}
		if got := c.m.Match(bearer); got != c.bearer {
			t.Errorf("%s %v on the bearer token: %v", c.m.Claim, c.m.Values, got)
		}
	}
	anonymous := caddyRequest(httptest.NewRequest(http.MethodGet, "http://example.com/", nil))
	if (MatchClaim{Claim: "groups", Values: []string{"admins"}}).Match(anonymous) {
		t.Error("a request without a user matched")
	}
}

// TestBearerResultsAreCounted: caddy_oidc_bearer_tokens_total counts each
// bearer request by result, the cached ones too, and
// caddy_oidc_introspection_cache_total each introspection lookup.
func TestBearerResultsAreCounted(t *testing.T) {
	h, p := bearerHandler(t, &Handler{
		Allow: []rules.Rule{{Conditions: []rules.Condition{{Claim: "realm_access.roles", Values: []string{"api-user"}}}}},
	}, &BearerConfig{Audience: []string{testAPI}, Introspect: true})
	admitted := map[string]any{"realm_access": map[string]any{"roles": []string{"api-user"}}}
	result := func(r string) float64 { return counterValue(t, metrics.BearerTokens.WithLabelValues(r)) }
	cache := func(r string) float64 { return counterValue(t, metrics.IntrospectionCache.WithLabelValues(r)) }
	before := map[string]float64{}
	for _, r := range []string{"accepted", "refused", "denied", "unavailable", "hit", "miss"} {
		before[r] = result(r) + cache(r)
	}
	jwt := mint(t, p, testop.AccessTokenSpec{Claims: admitted})
	opaque := p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{testAPI}, Claims: admitted})
	for _, tok := range []string{jwt, jwt, opaque, opaque} { // the second of each from a cache
		if _, passed := serve(t, h, apiRequest("Bearer "+tok)); passed == nil {
			t.Fatal("an admitted token was refused")
		}
	}
	serve(t, h, apiRequest("Bearer "+mint(t, p, testop.AccessTokenSpec{})))                                 // no role: denied
	serve(t, h, apiRequest("Bearer "+mint(t, p, testop.AccessTokenSpec{Fault: testop.AccessTokenExpired}))) // refused
	p.SetDown(true)
	serve(t, h, apiRequest("Bearer "+p.MintOpaqueAccessToken(testop.AccessTokenSpec{Audience: []string{testAPI}}))) // unavailable
	p.SetDown(false)
	for r, want := range map[string]float64{"accepted": 4, "denied": 1, "refused": 1, "unavailable": 1} {
		if got := result(r) - before[r]; got != want {
			t.Errorf("bearer_tokens_total{result=%q} went up by %v, want %v", r, got, want)
		}
	}
	for r, want := range map[string]float64{"hit": 1, "miss": 2} {
		if got := cache(r) - before[r]; got != want {
			t.Errorf("introspection_cache_total{result=%q} went up by %v, want %v", r, got, want)
		}
	}
}
