package oidcauth

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/caddyreq"
)

// BenchmarkAuthenticatedRequest measures oidc_auth's cost for a signed-in
// request: a session cookie holding realistic tokens (a ~1.5 KB ID token, a
// ~1.2 KB access token and a refresh token, split across two cookies) passed
// to a no-op next handler. Each iteration gets a fresh replacer and vars map,
// as Caddy gives each request; the caddy sub-benchmark measures only that
// setup, so the difference is oidc_auth's own cost.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	h := newTestHandler(b, &Handler{})
	s := testSession(time.Now(), 700, 1200)
	if n := len(s.RawIDToken()); n < 1400 || n > 1700 {
		b.Fatalf("ID token is %d bytes", n)
	}
	base := signedInRequest(b, h, s)
	w := httptest.NewRecorder()
	next := &recordingNext{}
	if err := h.ServeHTTP(w, caddyRequest(base), next); err != nil || next.r == nil {
		b.Fatalf("not authenticated: %v", err)
	}
	cookies := base.Header["Cookie"] // oidc_auth takes its cookies out of the request
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
