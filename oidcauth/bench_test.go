package oidcauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/caddyreq"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// BenchmarkAuthenticatedRequest measures oidc_auth's own cost for a
// signed-in request: a session cookie holding realistic tokens (a ~1.5 KB
// ID token, a ~1.2 KB access token and a refresh token, split across two
// cookies) passed to a no-op next handler. Each iteration gets a request of
// its own with a fresh replacer and vars map, as Caddy's server prepares
// every request before any handler runs; that preparation happens in
// batches with the timer stopped, because it is Caddy's cost with or
// without oidc_auth. BenchmarkAuthenticatedRequestWithCaddySetup counts it.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	h, base, cookies := authenticatedRequestSetup(b)
	// oidc_auth rewrites the Cookie header: each request gets its own.
	serveBatched(b, h, base, http.Header{"Cookie": cookies})
}

// serveBatched serves b.N copies of base, each with its own copy of
// header, prepared off the clock in batches (Caddy's per-request
// preparation is not oidc_auth's cost), and requires that the last was
// let through.
func serveBatched(b *testing.B, h *Handler, base *http.Request, header http.Header) {
	b.Helper()
	w := httptest.NewRecorder()
	next := &recordingNext{}
	const batch = 1024
	reqs := make([]*http.Request, 0, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(reqs) == 0 {
			b.StopTimer()
			for range min(batch, b.N-i) {
				r := caddyreq.WithContext(base)
				r.Header = header.Clone()
				reqs = append(reqs, r)
			}
			b.StartTimer()
		}
		r := reqs[len(reqs)-1]
		reqs = reqs[:len(reqs)-1]
		next.r = nil
		_ = h.ServeHTTP(w, r, next)
	}
	b.StopTimer()
	if next.r == nil {
		b.Fatal("the last request was not authenticated")
	}
}

// BenchmarkAuthenticatedRequestWithCaddySetup is the same request with
// Caddy's per-request preparation counted: the caddy sub-benchmark is that
// preparation alone, the oidc_auth sub-benchmark adds oidc_auth.
func BenchmarkAuthenticatedRequestWithCaddySetup(b *testing.B) {
	h, base, cookies := authenticatedRequestSetup(b)
	w := httptest.NewRecorder()
	next := &recordingNext{}
	b.Run("caddy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			base.Header["Cookie"] = cookies
			_ = next.ServeHTTP(w, caddyreq.WithContext(base))
		}
	})
	b.Run("oidc_auth", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			next.r = nil
			base.Header["Cookie"] = cookies
			_ = h.ServeHTTP(w, caddyreq.WithContext(base), next)
		}
		if next.r == nil {
			b.Fatal("the last request was not authenticated")
		}
	})
}

// authenticatedRequestSetup returns a handler, a request signed in to it
// and the request's Cookie header values.
func authenticatedRequestSetup(b *testing.B) (*Handler, *http.Request, []string) {
	h := newTestHandler(b, &Handler{})
	s := testSession(time.Now(), 700, 1200)
	if n := len(s.RawIDToken()); n < 1400 || n > 1700 {
		b.Fatalf("ID token is %d bytes", n)
	}
	base := signedInRequest(b, h, s)
	cookies := base.Header["Cookie"] // oidc_auth takes its cookies out of the request
	next := &recordingNext{}
	if err := h.ServeHTTP(httptest.NewRecorder(), caddyreq.WithContext(base), next); err != nil || next.r == nil {
		b.Fatalf("not authenticated: %v", err)
	}
	base.Header["Cookie"] = cookies
	return h, base, cookies
}

// BenchmarkAuthenticatedRequestUncached is the same request when the session
// is not in the decoded-session cache (the first request after a restart, or
// on another instance): decryption and JSON decoding included.
func BenchmarkAuthenticatedRequestUncached(b *testing.B) {
	h := newTestHandler(b, &Handler{})
	base := signedInRequest(b, h, testSession(time.Now(), 700, 1200))
	w := httptest.NewRecorder()
	next := &recordingNext{}
	cache := h.store.(*cookieStore).cache
	cookies := base.Header["Cookie"]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		cache.mu.Lock()
		clear(cache.entries)
		cache.mu.Unlock()
		base.Header["Cookie"] = cookies
		_ = h.ServeHTTP(w, caddyreq.WithContext(base), next)
	}
}

// BenchmarkBearerRequest measures oidc_auth's cost for an API call with a
// JWT access token (RS256, about 900 bytes, the provider's keys already
// fetched) passed to a no-op next handler; requests are prepared as in
// BenchmarkAuthenticatedRequest. After the first call the token is found
// verified: what remains is hashing it, checking its lifetime, and
// attaching its identity and placeholders to the request.
func BenchmarkBearerRequest(b *testing.B) {
	h, tok := bearerBenchSetup(b)
	base := httptest.NewRequest(http.MethodGet, "http://example.com/api/orders", nil)
	auth := []string{"Bearer " + tok}
	next := &recordingNext{}
	w := httptest.NewRecorder()
	if _ = h.ServeHTTP(w, caddyreq.WithContext(base), next); next.r != nil {
		b.Fatal("a request without a token was let through")
	}
	base.Header["Authorization"] = auth
	if _ = h.ServeHTTP(w, caddyreq.WithContext(base), next); next.r == nil {
		b.Fatalf("the token was refused: %d", w.Code)
	}
	serveBatched(b, h, base, http.Header{"Authorization": auth})
}

// BenchmarkBearerRequestUncached is the same call when the token is not
// yet known verified (a client's first call, or its first on another
// instance): decoding, the RS256 signature check and the claims included.
func BenchmarkBearerRequestUncached(b *testing.B) {
	h, tok := bearerBenchSetup(b)
	base := httptest.NewRequest(http.MethodGet, "http://example.com/api/orders", nil)
	base.Header.Set("Authorization", "Bearer "+tok)
	w := httptest.NewRecorder()
	next := &recordingNext{}
	b.ReportAllocs()
	for b.Loop() {
		h.Bearer.verified.mu.Lock()
		clear(h.Bearer.verified.entries)
		h.Bearer.verified.mu.Unlock()
		next.r = nil
		_ = h.ServeHTTP(w, caddyreq.WithContext(base), next)
		if next.r == nil {
			b.Fatalf("the token was refused: %d", w.Code)
		}
	}
}

// bearerBenchSetup returns a handler taking JWT access tokens, with the
// provider's keys fetched, and a realistic token for it.
func bearerBenchSetup(b *testing.B) (*Handler, string) {
	h, p := bearerHandler(b, &Handler{}, &BearerConfig{Audience: []string{testAPI}, Typ: "at+jwt"})
	tok := mint(b, p, testop.AccessTokenSpec{
		Subject: "2f1c5a0e-6c3b-4d2e-9a57-4b8f1d0c7e21",
		Scope:   "openid profile email orders:read orders:write",
		TTL:     time.Hour,
		Claims: map[string]any{
			"email": "alice@example.com", "preferred_username": "alice",
			"realm_access": map[string]any{"roles": []string{"offline_access", "uma_authorization", "api-user"}},
			"azp":          "client", "sid": "8e7f6a1b-2c3d-4e5f-8a9b-0c1d2e3f4a5b",
		},
	})
	if n := len(tok); n < 700 || n > 1200 {
		b.Fatalf("token is %d bytes", n)
	}
	return h, tok
}
