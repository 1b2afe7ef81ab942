package sessionstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
)

// failoverBound is how long after a replica's promotion the store may still
// fail requests for the data it took over.
const failoverBound = 2 * time.Second

// failoverCase is a Redis topology that loses its master (or one of them).
type failoverCase struct {
	opts      RedisOptions              // Addrs and MasterName; the rest is set here
	shards    int                       // masters
	shard     func(key string) int      // the master serving key
	victim    int                       // the shard whose master is killed
	kill      func()                    // kills the victim's master
	promotion func() (time.Time, error) // waits until its replica is a master
}

// failoverResult is what the readers and the writer saw.
type failoverResult struct {
	mu          sync.Mutex
	reads       int
	writes      int
	unavailable int         // reads and writes that failed with ErrUnavailable
	lastFailed  []time.Time // per shard, the last ErrUnavailable
	wrong       []string    // anything a user must never see
	slowest     time.Duration
	written     []writeEntry // successful writes during the run
}

type writeEntry struct {
	id string
	at time.Time
}

func (r *failoverResult) note(shard int, op string, started time.Time, err error) {
	d := time.Since(started)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slowest = max(r.slowest, d)
	switch {
	case err == nil:
	case errors.Is(err, ErrUnavailable):
		r.unavailable++
		r.lastFailed[shard] = time.Now()
	default:
		// ErrNotFound would sign the user out; anything else is a 500.
		if len(r.wrong) < 10 {
			r.wrong = append(r.wrong, fmt.Sprintf("%s at %s: %v", op, started.Format("15:04:05.000"), err))
		}
	}
}

// runFailover reads records written before the failover, on every shard,
// through two stores with the local cache (two Caddy instances) and one
// without, while a writer keeps creating sessions; kills the victim's
// master; and checks that from its replica's promotion on, within
// failoverBound, everything is served again: in between, only
// ErrUnavailable (a 503), never ErrNotFound (a sign-out) or another error,
// and no call slower than the store's budget.
func runFailover(t *testing.T, name string, fc failoverCase) {
	ctx := context.Background()
	newStore := func(cacheTTL time.Duration) *Redis {
		opts := fc.opts
		opts.KeyPrefix, opts.LocalCacheTTL = "fo:", cacheTTL
		r, err := NewRedis(opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	a, b, uncached := newStore(0), newStore(0), newStore(-1)
	waitLive(t, a)
	waitLive(t, b)
	stores := []*Redis{a, b, uncached}

	// Sessions on every shard, written well before the failover.
	var ids []string
	perShard := make([]int, fc.shards)
	shardOf := map[string]int{}
	for len(ids) < 60 {
		id := rand.Text()
		if err := a.Put(ctx, id, rec("v1-"+id, "user-"+id[:4], "", time.Now().Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		shardOf[id] = fc.shard(a.recordKey(id))
		perShard[shardOf[id]]++
	}
	for i, n := range perShard {
		if n == 0 {
			t.Fatalf("no session on shard %d: %v", i, perShard)
		}
	}

	res := &failoverResult{lastFailed: make([]time.Time, fc.shards)}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(3 * time.Millisecond):
				}
				id, s := ids[i%len(ids)], stores[i%len(stores)]
				start := time.Now()
				got, err := s.Get(ctx, id)
				if err == nil && string(got.Data) != "v1-"+id {
					err = fmt.Errorf("record %s holds %q", id, got.Data)
				}
				res.note(shardOf[id], "Get", start, err)
				res.mu.Lock()
				res.reads++
				res.mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			id := rand.Text()
			start := time.Now()
			err := stores[i%2].Put(ctx, id, rec("w", "writer", "", time.Now().Add(time.Hour)))
			res.note(fc.shard(a.recordKey(id)), "Put", start, err)
			res.mu.Lock()
			res.writes++
			if err == nil {
				res.written = append(res.written, writeEntry{id, start})
			}
			res.mu.Unlock()
		}
	})
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopAll()

	// Sessions work; then, at least a second after the last of them was
	// written, the master goes.
	time.Sleep(time.Second)
	res.mu.Lock()
	before := res.unavailable
	res.mu.Unlock()
	if before != 0 {
		t.Fatalf("%d requests failed before the failover", before)
	}
	killed := time.Now()
	fc.kill()
	promoted, err := fc.promotion()
	if err != nil {
		stopAll()
		t.Fatalf("%s: %v", name, err)
	}
	// Watch until a second passes without a failure (and at least the
	// bound after the promotion), or give up ten seconds after it.
	var cachesBack time.Time
	for {
		time.Sleep(10 * time.Millisecond)
		if cachesBack.IsZero() && a.cache.isLive() && b.cache.isLive() {
			cachesBack = time.Now()
		}
		res.mu.Lock()
		last := latest(res.lastFailed)
		res.mu.Unlock()
		now := time.Now()
		if now.Sub(promoted) > failoverBound+500*time.Millisecond && now.Sub(last) > time.Second {
			break
		}
		if now.Sub(promoted) > 10*time.Second {
			break
		}
	}
	stopAll()

	recovery := latest(res.lastFailed).Sub(promoted)
	t.Logf("%s: replica promoted %v after the master was killed; last failed request %v after the promotion "+
		"(%d reads, %d writes, %d failed with ErrUnavailable, slowest call %v)",
		name, promoted.Sub(killed).Round(time.Millisecond), recovery.Round(time.Millisecond),
		res.reads, res.writes, res.unavailable, res.slowest.Round(time.Millisecond))
	for i, last := range res.lastFailed {
		if !last.IsZero() {
			t.Logf("%s: shard %d (master killed: %v): last failure %v after the promotion",
				name, i, i == fc.victim, last.Sub(promoted).Round(time.Millisecond))
		}
	}
	for _, w := range res.wrong {
		t.Errorf("%s: %s", name, w)
	}
	if res.lastFailed[fc.victim].IsZero() {
		t.Errorf("%s: no request failed on the killed master's shard: the test proved nothing", name)
	}
	if recovery > failoverBound {
		t.Errorf("%s: requests failed until %v after the promotion, want at most %v", name, recovery, failoverBound)
	}
	if res.slowest > 3500*time.Millisecond {
		t.Errorf("%s: a call took %v, want at most the store's 3 s budget", name, res.slowest)
	}

	// Every session written before the failover is still there, and so is
	// every one written after the promotion; only writes of the last
	// second before the kill may be lost to asynchronous replication.
	for _, id := range ids {
		if got, err := uncached.Reload(ctx, id); err != nil || string(got.Data) != "v1-"+id {
			t.Errorf("%s: session written before the failover: %q, %v", name, got.Data, err)
		}
	}
	lost := 0
	for _, w := range res.written {
		_, err := uncached.Reload(ctx, w.id)
		switch {
		case err == nil:
		case errors.Is(err, ErrNotFound) && w.at.After(killed.Add(-time.Second)) && w.at.Before(promoted):
			lost++
		default:
			t.Errorf("%s: session written at %s (master killed at %s): %v", name,
				w.at.Format("15:04:05.000"), killed.Format("15:04:05.000"), err)
		}
	}
	if lost > 0 {
		t.Logf("%s: %d sessions written in the last second before the kill were lost", name, lost)
	}

	// Both local caches come back (their subscriptions found a live node)
	// and still hear each other's changes.
	for _, r := range []*Redis{a, b} {
		waitLive(t, r)
	}
	if cachesBack.IsZero() {
		cachesBack = time.Now()
	}
	t.Logf("%s: both local caches on again %v after the promotion", name, cachesBack.Sub(promoted).Round(time.Millisecond))
	id := ids[0]
	mustGet(t, a, id)
	if err := b.Put(ctx, id, rec("v2", "user", "", time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	eventually(t, name+": a change after the failover reaching the other instance's cache", func() bool {
		got, err := a.Get(ctx, id)
		return err == nil && string(got.Data) == "v2"
	})
}

func latest(ts []time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// TestRedisClusterFailoverServesAgainWithinTwoSeconds: a Redis Cluster of
// three masters with a replica each loses the master that also carries the
// stores' invalidation subscriptions; within two seconds of its replica's
// promotion, every session is served again.
func TestRedisClusterFailoverServesAgainWithinTwoSeconds(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	victim := cl.Shard("fo:invalidate")
	runFailover(t, "cluster", failoverCase{
		opts:   RedisOptions{Addrs: cl.Addrs()},
		shards: len(cl.Masters),
		shard:  cl.Shard,
		victim: victim,
		kill:   cl.Masters[victim].Stop,
		promotion: func() (time.Time, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			return cl.WaitPromoted(ctx, victim)
		},
	})
}

// TestRedisSentinelFailoverServesAgainWithinTwoSeconds: the master watched
// by three sentinels dies; within two seconds of its replica's promotion,
// every session is served again.
func TestRedisSentinelFailoverServesAgainWithinTwoSeconds(t *testing.T) {
	st := redistest.StartSentinel(t)
	runFailover(t, "sentinel", failoverCase{
		opts:   RedisOptions{Addrs: st.Addrs(), MasterName: redistest.SentinelMasterName},
		shards: 1,
		shard:  func(string) int { return 0 },
		kill:   st.Master.Stop,
		promotion: func() (time.Time, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			return st.WaitPromoted(ctx)
		},
	})
}
