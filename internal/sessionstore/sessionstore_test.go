package sessionstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
)

// harness is one Store under the conformance suite, with its notion of time:
// Memory runs on a fake clock, Redis on the real one (its TTLs are
// server-side), so advance sleeps there.
type harness struct {
	store   Store
	now     func() time.Time
	advance func(time.Duration)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newMemoryHarness(max int) (*Memory, harness) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	m := NewMemory(max)
	m.now = clock.Now
	return m, harness{store: m, now: clock.Now, advance: clock.Advance}
}

func newRedisHarness(t testing.TB, opts RedisOptions) harness {
	r, err := NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return harness{store: r, now: time.Now, advance: time.Sleep}
}

// TestStoreConformance runs every behaviour test against every Store: Memory,
// Redis standalone and Redis as a one-node cluster, which rejects any command
// whose keys span hash slots, also as the README's ACL user. Each Redis is
// started once (a cluster node takes two seconds to accept writes); tests are
// isolated by key prefix.
func TestStoreConformance(t *testing.T) {
	behaviours := []struct {
		name string
		test func(t *testing.T, h harness)
	}{
		{"PutGetDelete", testPutGetDelete},
		{"RecordExpires", testRecordExpires},
		{"DeleteMatching", testDeleteMatching},
		{"TryLock", testTryLock},
		{"Revoke", testRevoke},
		{"Replace", testReplace},
		{"ConcurrentUse", testConcurrentUse},
	}
	redisAt := func(addrs ...string) func(t *testing.T) harness {
		return func(t *testing.T) harness {
			return newRedisHarness(t, RedisOptions{Addrs: addrs, KeyPrefix: t.Name() + ":"})
		}
	}
	backends := []struct {
		name  string
		start func(t *testing.T) func(t *testing.T) harness
	}{
		{"memory", func(*testing.T) func(*testing.T) harness {
			return func(*testing.T) harness { _, h := newMemoryHarness(1000); return h }
		}},
		{"redis", func(t *testing.T) func(*testing.T) harness {
			return redisAt(redistest.Start(t).Addr())
		}},
		{"redis-cluster", func(t *testing.T) func(*testing.T) harness {
			addr := startCluster(t).Addr()
			return redisAt(addr, addr) // two addresses select the cluster client
		}},
		// The README's ACL user, where the client needs the most commands.
		{"redis-cluster-acl", func(t *testing.T) func(*testing.T) harness {
			addr := startCluster(t).Addr()
			return aclHarness(addr, addr)
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			newHarness := b.start(t)
			for _, bh := range behaviours {
				t.Run(bh.name, func(t *testing.T) { bh.test(t, newHarness(t)) })
			}
		})
	}
}

func rec(data, sub, sid string, expires time.Time) Record {
	return Record{Data: []byte(data), Subject: sub, SID: sid, Expires: expires}
}

func mustGet(t *testing.T, s Store, id string) Record {
	t.Helper()
	r, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%q): %v", id, err)
	}
	return r
}

func mustNotFind(t *testing.T, s Store, id string) {
	t.Helper()
	if _, err := s.Get(context.Background(), id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(%q) = %v, want ErrNotFound", id, err)
	}
}

func testPutGetDelete(t *testing.T, h harness) {
	ctx, s := context.Background(), h.store
	exp := h.now().Add(time.Hour)
	mustNotFind(t, s, "a")

	data := []byte("sealed-1")
	if err := s.Put(ctx, "a", Record{Data: data, Subject: "u1", SID: "s1", Expires: exp}); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X' // the store must have copied it
	got := mustGet(t, s, "a")
	if string(got.Data) != "sealed-1" || got.Subject != "" || got.SID != "" {
		t.Fatalf("Get = %+v", got)
	}

	if err := s.Put(ctx, "a", rec("sealed-2", "u1", "s1", exp)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, s, "a"); string(got.Data) != "sealed-2" {
		t.Fatalf("after replace: %q", got.Data)
	}

	// Putting an already expired record deletes it.
	if err := s.Put(ctx, "a", rec("sealed-3", "u1", "s1", h.now().Add(-time.Second))); err != nil {
		t.Fatal(err)
	}
	mustNotFind(t, s, "a")

	if err := s.Put(ctx, "b", rec("x", "", "", exp)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	mustNotFind(t, s, "b")
	if err := s.Delete(ctx, "b"); err != nil {
		t.Fatalf("Delete of an absent record: %v", err)
	}
	if err := s.Put(ctx, "", rec("x", "", "", exp)); err == nil {
		t.Fatal("Put accepted an empty id")
	}
}

func testRecordExpires(t *testing.T, h harness) {
	ctx, s := context.Background(), h.store
	if err := s.Put(ctx, "a", rec("x", "u1", "s1", h.now().Add(200*time.Millisecond))); err != nil {
		t.Fatal(err)
	}
	mustGet(t, s, "a")
	h.advance(300 * time.Millisecond)
	mustNotFind(t, s, "a")
	if n, err := s.DeleteMatching(ctx, "u1", ""); err != nil || n != 0 {
		t.Fatalf("DeleteMatching after expiry = %d, %v; want 0", n, err)
	}
}

func testDeleteMatching(t *testing.T, h harness) {
	ctx, s := context.Background(), h.store
	exp := h.now().Add(time.Hour)
	put := func(id, sub, sid string) {
		t.Helper()
		if err := s.Put(ctx, id, rec("data-"+id, sub, sid, exp)); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "u1", "s1")
	put("b", "u1", "s2")
	put("c", "u2", "s3")
	put("d", "u1", "")
	put("e", "u3", "s4")

	if n, err := s.DeleteMatching(ctx, "u1", ""); err != nil || n != 3 {
		t.Fatalf("DeleteMatching(sub u1) = %d, %v; want 3", n, err)
	}
	for _, id := range []string{"a", "b", "d"} {
		mustNotFind(t, s, id)
	}
	mustGet(t, s, "c")

	if n, err := s.DeleteMatching(ctx, "", "s3"); err != nil || n != 1 {
		t.Fatalf("DeleteMatching(sid s3) = %d, %v; want 1", n, err)
	}
	mustNotFind(t, s, "c")

	// A sid with a subject that does not match deletes nothing.
	if n, err := s.DeleteMatching(ctx, "u9", "s4"); err != nil || n != 0 {
		t.Fatalf("DeleteMatching(u9, s4) = %d, %v; want 0", n, err)
	}
	mustGet(t, s, "e")
	if n, err := s.DeleteMatching(ctx, "u3", "s4"); err != nil || n != 1 {
		t.Fatalf("DeleteMatching(u3, s4) = %d, %v; want 1", n, err)
	}
	mustNotFind(t, s, "e")

	// A record deleted on its own is not counted again.
	put("f", "u4", "s5")
	if err := s.Delete(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteMatching(ctx, "u4", ""); err != nil || n != 0 {
		t.Fatalf("DeleteMatching after Delete = %d, %v; want 0", n, err)
	}
	if _, err := s.DeleteMatching(ctx, "", ""); err == nil {
		t.Fatal("DeleteMatching with neither subject nor sid must fail, not delete everything")
	}
}

func testTryLock(t *testing.T, h harness) {
	ctx, s := context.Background(), h.store
	release, ok, err := s.TryLock(ctx, "refresh:a", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first TryLock = %v, %v", ok, err)
	}
	if _, ok, err := s.TryLock(ctx, "refresh:a", time.Minute); err != nil || ok {
		t.Fatalf("second TryLock while held = %v, %v; want false", ok, err)
	}
	if _, ok, _ := s.TryLock(ctx, "refresh:b", time.Minute); !ok {
		t.Fatal("a different key is not free")
	}
	release()
	release2, ok, err := s.TryLock(ctx, "refresh:a", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock after release = %v, %v", ok, err)
	}
	release() // idempotent: must not free the second holder's lease
	if _, ok, _ := s.TryLock(ctx, "refresh:a", time.Minute); ok {
		t.Fatal("a stale release freed another holder's lease")
	}
	release2()

	// Leases end by themselves, and the expired holder's release must
	// not free the next holder's lease.
	releaseShort, ok, _ := s.TryLock(ctx, "refresh:c", 200*time.Millisecond)
	if !ok {
		t.Fatal("TryLock refresh:c")
	}
	h.advance(300 * time.Millisecond)
	release3, ok, err := s.TryLock(ctx, "refresh:c", time.Minute)
	if err != nil || !ok {
		t.Fatalf("TryLock after lease expiry = %v, %v", ok, err)
	}
	releaseShort()
	if _, ok, _ := s.TryLock(ctx, "refresh:c", time.Minute); ok {
		t.Fatal("an expired holder's release freed the next holder's lease")
	}
	release3()
}

func testRevoke(t *testing.T, h harness) { testRevocations(t, h.store, h.now, h.advance) }

// testRevocations checks a Revocations, the stores' and the storage-backed
// list alike.
func testRevocations(t *testing.T, s Revocations, nowFn func() time.Time, advance func(time.Duration)) {
	ctx := context.Background()
	now := nowFn()
	revoked := func(sub, sid, sess string, issued time.Time) bool {
		t.Helper()
		ok, err := s.Revoked(ctx, Selector{Subject: sub, SID: sid, Session: sess}, issued)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if revoked("u1", "s1", "x1", now) {
		t.Fatal("revoked before any Revoke")
	}
	if err := s.Revoke(ctx, Selector{Subject: "u1"}, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !revoked("u1", "", "", now.Add(-time.Minute)) || !revoked("u1", "s9", "x9", now.Add(-time.Minute)) {
		t.Fatal("a subject revocation must cover that subject's earlier sessions, whatever their sid")
	}
	if !revoked("u1", "", "", now) {
		t.Fatal("a session issued in the revocation's millisecond must count as revoked")
	}
	if revoked("u1", "", "", now.Add(time.Second)) {
		t.Fatal("a session issued after the revocation is revoked")
	}
	if revoked("u2", "", "", now.Add(-time.Minute)) {
		t.Fatal("another subject is revoked")
	}

	// The window starts now, not at the test's start: under load a slow
	// test could otherwise find it over already.
	if err := s.Revoke(ctx, Selector{SID: "s1"}, now, nowFn().Add(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if !revoked("u2", "s1", "", now.Add(-time.Minute)) || revoked("u2", "s2", "", now.Add(-time.Minute)) {
		t.Fatal("a sid revocation must cover exactly that sid")
	}

	// One sign-in: its key only, even with the subject and sid given.
	if err := s.Revoke(ctx, Selector{Subject: "u3", SID: "s3", Session: "x3"}, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !revoked("u3", "s3", "x3", now.Add(-time.Minute)) || revoked("u3", "s3", "x4", now.Add(-time.Minute)) {
		t.Fatal("a session revocation must cover exactly that sign-in")
	}

	// An earlier, later-arriving revocation keeps the latest time.
	if err := s.Revoke(ctx, Selector{Subject: "u1"}, now.Add(-time.Hour), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if !revoked("u1", "", "", now.Add(-time.Minute)) {
		t.Fatal("an older revocation replaced a newer one")
	}

	// Remember: the first call wins, until the value's time is up.
	for i, want := range []bool{true, false} {
		if fresh, err := s.Remember(ctx, "jti-1", nowFn().Add(200*time.Millisecond)); err != nil || fresh != want {
			t.Fatalf("Remember #%d = %v, %v; want %v", i+1, fresh, err, want)
		}
	}

	advance(300 * time.Millisecond)
	if revoked("u2", "s1", "", now.Add(-time.Minute)) {
		t.Fatal("a revocation outlived its until")
	}
	if fresh, err := s.Remember(ctx, "jti-1", nowFn().Add(time.Minute)); err != nil || !fresh {
		t.Fatalf("Remember after the value's time was up = %v, %v; want true", fresh, err)
	}
	if err := s.Revoke(ctx, Selector{}, now, now.Add(time.Hour)); err == nil {
		t.Fatal("Revoke with no key must fail")
	}
}

// testReplace: a compare-and-set write succeeds only over the record it
// expects, and never brings back a deleted one.
func testReplace(t *testing.T, h harness) {
	ctx, s := context.Background(), h.store
	exp := h.now().Add(time.Hour)
	if ok, err := s.Replace(ctx, "r1", []byte("v1"), rec("v2", "u", "x", exp)); err != nil || ok {
		t.Fatalf("Replace of an absent record = %v, %v; want false", ok, err)
	}
	mustNotFind(t, s, "r1")
	if err := s.Put(ctx, "r1", rec("v1", "u", "x", exp)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Replace(ctx, "r1", []byte("other"), rec("v2", "u", "x", exp)); err != nil || ok {
		t.Fatalf("Replace over another value = %v, %v; want false", ok, err)
	}
	if got := mustGet(t, s, "r1"); string(got.Data) != "v1" {
		t.Fatalf("after a refused Replace: %q", got.Data)
	}
	if ok, err := s.Replace(ctx, "r1", []byte("v1"), rec("v2", "u", "x", exp)); err != nil || !ok {
		t.Fatalf("Replace over the expected value = %v, %v; want true", ok, err)
	}
	if got := mustGet(t, s, "r1"); string(got.Data) != "v2" {
		t.Fatalf("after Replace: %q", got.Data)
	}
	// The index follows: back-channel logout still finds it.
	if err := s.Delete(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Replace(ctx, "r1", []byte("v2"), rec("v3", "u", "x", exp)); err != nil || ok {
		t.Fatalf("Replace after Delete = %v, %v; want false: a logout must stay", ok, err)
	}
	mustNotFind(t, s, "r1")
	if err := s.Put(ctx, "r2", rec("w1", "u", "y", exp)); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Replace(ctx, "r2", []byte("w1"), rec("w2", "u", "y", exp)); err != nil || !ok {
		t.Fatalf("Replace = %v, %v", ok, err)
	}
	if n, err := s.DeleteMatching(ctx, "", "y"); err != nil || n != 1 {
		t.Fatalf("DeleteMatching after Replace = %d, %v; want 1", n, err)
	}
}

func testConcurrentUse(t *testing.T, h harness) {
	ctx, s := context.Background(), h.store
	exp := h.now().Add(time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				id := fmt.Sprintf("g%d-%d", g, i%10)
				sub := fmt.Sprintf("u%d", i%3)
				if err := s.Put(ctx, id, rec(id, sub, "sid-"+id, exp)); err != nil {
					errs <- err
					return
				}
				if _, err := s.Get(ctx, id); err != nil && !errors.Is(err, ErrNotFound) {
					errs <- err
					return
				}
				if release, ok, err := s.TryLock(ctx, sub, time.Second); err != nil {
					errs <- err
					return
				} else if ok {
					release()
				}
				var err error
				switch i % 10 {
				case 3:
					err = s.Delete(ctx, id)
				case 7:
					_, err = s.DeleteMatching(ctx, sub, "")
				case 9:
					err = s.Revoke(ctx, Selector{Subject: sub}, h.now(), exp)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// BenchmarkGet reads one 4 KiB record, the size of a session holding an ID,
// access and refresh token.
func BenchmarkGet(b *testing.B) {
	data := bytes.Repeat([]byte{0xA5}, 4096)
	run := func(b *testing.B, s Store, p50 bool) {
		ctx := context.Background()
		if err := s.Put(ctx, "bench", Record{Data: data, Subject: "u", SID: "s", Expires: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		if p50 {
			lat = make([]time.Duration, 0, b.N)
		}
		b.SetBytes(int64(len(data)))
		b.ResetTimer()
		for range b.N { // not b.Loop: lat is sized from b.N up front
			start := time.Now()
			if _, err := s.Get(ctx, "bench"); err != nil {
				b.Fatal(err)
			}
			if p50 {
				lat = append(lat, time.Since(start))
			}
		}
		if p50 && len(lat) > 0 {
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		}
	}
	b.Run("memory", func(b *testing.B) { run(b, NewMemory(0), false) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		r, err := NewRedis(RedisOptions{Addrs: []string{srv.Addr()}})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		run(b, r, true)
	})
}
