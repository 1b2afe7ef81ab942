package oidcauth

import (
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
)

// BenchmarkSessionLoad measures finding a signed-in request's session in
// each store: for cookie the cookies are parsed and looked up in the
// decoded-session cache; for memory and redis the session ID is looked up
// in the store and its sealed record compared with the decoded one. The
// redis cases run against a real redis-server on loopback: redis with the
// local cache (the default; the record comes from memory), redis-uncached
// with local_cache_ttl off (one round trip per load). Each reports its
// median latency as p50-ns.
func BenchmarkSessionLoad(b *testing.B) {
	for _, store := range []string{"cookie", "memory", "redis", "redis-uncached"} {
		b.Run(store, func(b *testing.B) {
			cfg := &SessionStoreConfig{Type: store}
			if strings.HasPrefix(store, "redis") {
				rs := redistest.Start(b)
				cfg.Type = "redis"
				cfg.Redis = &RedisConfig{Addresses: []string{rs.Addr()}}
				if store == "redis-uncached" {
					cfg.Redis.LocalCacheTTL = -1
				}
			}
			h := newTestHandler(b, &Handler{SessionStore: cfg})
			if rs, ok := h.revocations.(*sessionstore.Redis); ok && rs.CacheLive() != nil {
				<-rs.CacheLive()
			}
			r := signedInRequest(b, h, testSession(time.Now(), 700, 1200))
			if s, err := h.loadSession(r); s == nil || err != nil {
				b.Fatalf("no session: %v", err)
			}
			lat := make([]time.Duration, 0, 1<<16)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				_, _ = h.loadSession(r)
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(start))
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		})
	}
}

// TestMemoryStoreCostsLittleMoreThanItsTokens: a session in the memory
// store costs at most 1.5 times the bytes of the tokens it holds (the
// sealed record plus bookkeeping), measured over many sessions.
func TestMemoryStoreCostsLittleMoreThanItsTokens(t *testing.T) {
	h := newTestHandler(t, &Handler{SessionStore: &SessionStoreConfig{Type: "memory"}})
	const n = 5000
	now := time.Now()
	sessions := make([]*Session, n)
	tokenBytes := 0
	for i := range sessions {
		s := testSession(now, 700, 1200)
		s.owner, s.provider = h, h.defaultProvider()
		sessions[i] = s
		tokenBytes += len(s.rawIDToken) + len(s.accessToken) + len(s.refreshToken)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rec := httptest.NewRecorder()
	for _, s := range sessions {
		r := httptest.NewRequest("GET", "http://example.com/", nil)
		if err := h.store.Save(rec, r, s); err != nil {
			t.Fatal(err)
		}
		rec.Result().Header.Del("Set-Cookie")
		rec = httptest.NewRecorder()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(sessions) // counted in both readings
	ratio := float64(after.HeapAlloc-before.HeapAlloc) / float64(tokenBytes)
	t.Logf("%d sessions: %.2f bytes of heap per token byte", n, ratio)
	if ratio > 1.5 {
		t.Fatalf("the memory store holds %.2f bytes per token byte, want at most 1.5", ratio)
	}
	runtime.KeepAlive(h)
}
