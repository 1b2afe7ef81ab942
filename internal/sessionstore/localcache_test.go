package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
)

// cachedRedis is a Redis store with its local cache on, once the cache's
// subscription is confirmed (before that, every read goes to Redis, and a
// test of the cache would prove nothing).
func cachedRedis(t *testing.T, addrs []string, ttl time.Duration) *Redis {
	t.Helper()
	r, err := NewRedis(RedisOptions{Addrs: addrs, KeyPrefix: "lc:", LocalCacheTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	waitLive(t, r)
	return r
}

func waitLive(t *testing.T, r *Redis) {
	t.Helper()
	select {
	case <-r.CacheLive():
	case <-time.After(10 * time.Second):
		t.Fatal("the invalidation subscription was not confirmed")
	}
}

// eventually polls cond for up to a second: announcements reach other
// instances asynchronously, within milliseconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within a second", what)
		}
	}
}

// TestRedisLocalCacheServesRepeatedReadsFromMemory: a record read once is
// served again without Redis, up to the TTL, after which Redis is read
// again. Changing the key behind the store's back (no announcement) shows
// where a read came from.
func TestRedisLocalCacheServesRepeatedReadsFromMemory(t *testing.T) {
	srv := redistest.Start(t)
	r := cachedRedis(t, []string{srv.Addr()}, time.Second)
	ctx := context.Background()
	if err := r.Put(ctx, "a", rec("v1", "u", "", time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	mustGet(t, r, "a")
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	if err := raw.Set(ctx, "lc:s:{a}", "v2", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, r, "a"); string(got.Data) != "v1" {
		t.Fatalf("second read = %q, want the cached v1", got.Data)
	}
	if got, _ := r.Reload(ctx, "a"); string(got.Data) != "v2" {
		t.Fatalf("Reload = %q, want v2 from Redis", got.Data)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := mustGet(t, r, "a"); string(got.Data) != "v2" {
		t.Fatalf("read after the TTL = %q, want v2", got.Data)
	}
}

// TestRedisLocalCacheSeesChangesAtOtherInstances: a record or revocation
// cached at instance A is dropped when instance B replaces it, deletes it,
// deletes it by subject, or revokes: long before the (here one-minute)
// TTL. Standalone and Cluster (where PUBLISH reaches every node).
func TestRedisLocalCacheSeesChangesAtOtherInstances(t *testing.T) {
	for _, mode := range []string{"standalone", "cluster"} {
		t.Run(mode, func(t *testing.T) {
			var addrs []string
			if mode == "cluster" {
				addr := startCluster(t).Addr()
				addrs = []string{addr, addr}
			} else {
				addrs = []string{redistest.Start(t).Addr()}
			}
			a := cachedRedis(t, addrs, time.Minute)
			b := cachedRedis(t, addrs, time.Minute)
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			for _, id := range []string{"x", "y"} {
				if err := b.Put(ctx, id, rec("v1", "user", "sid-"+id, exp)); err != nil {
					t.Fatal(err)
				}
				mustGet(t, a, id)
			}

			if err := b.Put(ctx, "x", rec("v2", "user", "sid-x", exp)); err != nil {
				t.Fatal(err)
			}
			eventually(t, "a replaced record", func() bool { return string(mustGet(t, a, "x").Data) == "v2" })

			if err := b.Delete(ctx, "x"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "a deleted record", func() bool {
				_, err := a.Get(ctx, "x")
				return errors.Is(err, ErrNotFound)
			})

			if _, err := b.DeleteMatching(ctx, "user", ""); err != nil {
				t.Fatal(err)
			}
			eventually(t, "a record deleted by subject", func() bool {
				_, err := a.Get(ctx, "y")
				return errors.Is(err, ErrNotFound)
			})

			issued := time.Now().Add(-time.Minute)
			if revoked, err := a.Revoked(ctx, Selector{Subject: "user"}, issued); err != nil || revoked {
				t.Fatalf("Revoked before any revocation = %v, %v", revoked, err)
			}
			if err := b.Revoke(ctx, Selector{Subject: "user"}, time.Now(), exp); err != nil {
				t.Fatal(err)
			}
			eventually(t, "a revocation", func() bool {
				revoked, err := a.Revoked(ctx, Selector{Subject: "user"}, issued)
				return err == nil && revoked
			})
		})
	}
}

// TestRedisLocalCacheFollowsKeyExpiry: a cached record is not served past
// its expiry in Redis, however long the cache TTL.
func TestRedisLocalCacheFollowsKeyExpiry(t *testing.T) {
	r := cachedRedis(t, []string{redistest.Start(t).Addr()}, time.Minute)
	if err := r.Put(context.Background(), "a", rec("v", "", "", time.Now().Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	mustGet(t, r, "a")
	time.Sleep(1100 * time.Millisecond)
	mustNotFind(t, r, "a")
}

// TestRedisLocalCacheIsOffWhileRedisIsDown: when Redis goes away, cached
// records stop being served at once (requests get ErrUnavailable, so users
// see a 503 rather than a session Redis may have ended), and the cache
// comes back with Redis.
func TestRedisLocalCacheIsOffWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	r := cachedRedis(t, []string{srv.Addr()}, time.Minute)
	ctx := context.Background()
	if err := r.Put(ctx, "a", rec("v", "", "", time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	if err := raw.Save(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	mustGet(t, r, "a")
	srv.Stop()
	eventually(t, "the cache turned off", func() bool { return !r.cache.isLive() })
	if _, err := r.Get(ctx, "a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with Redis down = %v, want ErrUnavailable", err)
	}
	srv.Restart()
	waitLive(t, r)
	mustGet(t, r, "a")
}

// TestLocalCacheDropsReadsOverlappingAnInvalidation: a value read from
// Redis while an invalidation of its key was processed may predate the
// change, so it is not kept; reads of other slots are kept.
func TestLocalCacheDropsReadsOverlappingAnInvalidation(t *testing.T) {
	c := newLocalCache(time.Minute)
	c.setLive(true)
	t1 := c.ticket("k")
	c.invalidate("k")
	c.fill("k", t1, []byte("old"), true, -1)
	if _, _, ok := c.get("k"); ok {
		t.Fatal("a read that overlapped an invalidation was kept")
	}
	t2 := c.ticket("k")
	c.fill("k", t2, []byte("new"), true, -1)
	if v, _, ok := c.get("k"); !ok || string(v) != "new" {
		t.Fatalf("get = %q, %v", v, ok)
	}
	t3 := c.ticket("k")
	c.setLive(false)
	c.setLive(true)
	c.fill("k", t3, []byte("x"), true, -1)
	if _, _, ok := c.get("k"); ok {
		t.Fatal("a read that overlapped a lost subscription was kept")
	}
}

// TestRedisWithoutChannelPermissionWorksUncached: a Redis user that may not
// use the invalidation channel (Redis 7's default for new ACL users; here
// the README's ACL line without the channel) still gets a working store,
// with the cache off and the reason logged once.
func TestRedisWithoutChannelPermissionWorksUncached(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	acl := slices.DeleteFunc(readmeACL(t, "nochannels", "pw", "lc:"), func(a any) bool {
		return strings.HasPrefix(a.(string), "&")
	})
	if err := raw.Do(ctx, acl...).Err(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	r, err := NewRedis(RedisOptions{Addrs: []string{srv.Addr()}, Username: "nochannels", Password: "pw",
		KeyPrefix: "lc:", Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	eventually(t, "the warning", func() bool { return logs.FilterMessageSnippet("session cache off").Len() > 0 })
	if err := r.Put(ctx, "a", rec("v1", "u", "", time.Now().Add(time.Hour))); err != nil {
		t.Fatalf("Put: %v", err)
	}
	mustGet(t, r, "a")
	if err := raw.Set(ctx, "lc:s:{a}", "v2", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, r, "a"); string(got.Data) != "v2" {
		t.Fatalf("Get = %q, want v2 read from Redis", got.Data)
	}
	if err := r.Delete(ctx, "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	mustNotFind(t, r, "a")
	time.Sleep(200 * time.Millisecond) // a few more subscription attempts
	if n := logs.FilterMessageSnippet("session cache off").Len(); n != 1 {
		t.Errorf("the cache-off warning was logged %d times, want once", n)
	}
}

// TestRedisLocalCacheKeepsNoAbsentRecords: looking up session IDs that do
// not exist (a client making them up) fills no cache entries.
func TestRedisLocalCacheKeepsNoAbsentRecords(t *testing.T) {
	srv := redistest.Start(t)
	r := cachedRedis(t, []string{srv.Addr()}, time.Minute)
	for i := range 100 {
		mustNotFind(t, r, fmt.Sprintf("made-up-%d", i))
	}
	r.cache.mu.RLock()
	n := len(r.cache.entries)
	r.cache.mu.RUnlock()
	if n != 0 {
		t.Fatalf("%d cache entries after looking up absent records", n)
	}
}

// TestRedisLocalCacheIsCounted: caddy_oidc_redis_local_cache_total counts
// each lookup as a hit or a miss, and each invalidation another instance
// announces.
func TestRedisLocalCacheIsCounted(t *testing.T) {
	addrs := []string{redistest.Start(t).Addr()}
	a := cachedRedis(t, addrs, time.Minute)
	b := cachedRedis(t, addrs, time.Minute)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	value := func(c interface{ Write(*dto.Metric) error }) float64 {
		var m dto.Metric
		if err := c.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	// The write's own announcement reaches both instances; once it has,
	// nothing else drops what a reads.
	before := value(cacheInvalidations)
	if err := b.Put(ctx, "c", rec("v1", "u", "", exp)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the write's announcement", func() bool { return value(cacheInvalidations) >= before+2 })
	h0, m0 := value(cacheHits), value(cacheMisses)
	mustGet(t, a, "c")
	mustGet(t, a, "c")
	if h, m := value(cacheHits)-h0, value(cacheMisses)-m0; h != 1 || m != 1 {
		t.Fatalf("two reads of a record: %v hits, %v misses; want 1 and 1", h, m)
	}
	i0 := value(cacheInvalidations)
	if err := b.Put(ctx, "c", rec("v2", "u", "", exp)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the invalidation", func() bool { return value(cacheInvalidations) > i0 })
	m1 := value(cacheMisses)
	eventually(t, "the changed record", func() bool { return string(mustGet(t, a, "c").Data) == "v2" })
	if value(cacheMisses) <= m1 {
		t.Fatal("the read after an invalidation was not counted as a miss")
	}
}
