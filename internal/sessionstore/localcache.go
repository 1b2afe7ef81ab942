package sessionstore

import (
	"context"
	"crypto/rand"
	"errors"
	"hash/maphash"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
)

// The local cache's counters, resolved once: they are on every request's
// path.
var (
	cacheHits          = metrics.RedisCache.WithLabelValues("hit")
	cacheMisses        = metrics.RedisCache.WithLabelValues("miss")
	cacheInvalidations = metrics.RedisCache.WithLabelValues("invalidation")
)

// DefaultLocalCacheTTL is how long a value read from Redis may be served
// from memory when RedisOptions.LocalCacheTTL is zero.
const DefaultLocalCacheTTL = 2 * time.Second

// localCacheEntries bounds the local cache: the sessions in use on this
// instance right now, not every session in Redis.
const localCacheEntries = 10_000

// localCache keeps values this instance read from Redis (session records and
// revocation entries) in memory, so a signed-in request does not wait for a
// Redis round trip.
//
// Every write to a cacheable key is followed by a PUBLISH of the key's name
// on the store's invalidation channel, and every instance subscribes to it
// and drops the key. Entries are served only while that subscription is up:
// when it breaks (Redis down, a network fault), the cache is emptied and
// stays off until Redis confirms the subscription again, so an outage is
// seen at once rather than hidden by the cache. Each entry is also served
// for at most ttl after it was read and never past the key's own expiry,
// which bounds how stale a value can be should an invalidation be lost (a
// key changed by something that does not publish, say).
//
// Invalidations travel on another connection than reads, so a read can
// return a value that an invalidation, processed meanwhile, has already
// declared stale. Each read therefore takes a ticket first, and its value
// is kept only if no invalidation of its slot (and no flush) happened since.
type localCache struct {
	ttl  time.Duration
	max  int
	now  func() time.Time
	seed maphash.Seed
	// self starts this instance's announcements: it dropped those keys
	// already, and its own echo would only discard reads under way.
	self string

	mu      sync.RWMutex
	live    bool // the invalidation subscription is confirmed
	entries map[string]cacheEntry
	epoch   uint64             // bumped by every flush
	gen     [cacheSlots]uint64 // bumped by every invalidation in the slot
	waiters []chan struct{}    // closed when the subscription is next live
}

// cacheSlots spreads invalidations so that one key's change does not
// discard the concurrent reads of every other key.
const cacheSlots = 64

type cacheEntry struct {
	val   []byte // nil with found == false: the key is absent
	found bool
	until time.Time
}

// cacheTicket is what a read must still match for its value to be kept.
type cacheTicket struct {
	epoch, gen uint64
	at         time.Time
	live       bool
}

func newLocalCache(ttl time.Duration) *localCache {
	return &localCache{
		ttl:     ttl,
		max:     localCacheEntries,
		now:     time.Now,
		seed:    maphash.MakeSeed(),
		self:    rand.Text(),
		entries: make(map[string]cacheEntry),
	}
}

func (c *localCache) slot(key string) int {
	return int(maphash.String(c.seed, key) % cacheSlots)
}

// get returns the cached value of key; ok is false on a miss.
func (c *localCache) get(key string) (val []byte, found, ok bool) {
	c.mu.RLock()
	e, hit := c.entries[key]
	live := c.live
	c.mu.RUnlock()
	if !hit || !live || !c.now().Before(e.until) {
		return nil, false, false
	}
	return e.val, e.found, true
}

// ticket is taken before reading key from Redis.
func (c *localCache) ticket(key string) cacheTicket {
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	return cacheTicket{epoch: c.epoch, gen: c.gen[c.slot(key)], at: now, live: c.live}
}

// fill keeps a value read from Redis under ticket t; pttl is the key's
// remaining lifetime as Redis reported it (negative: no expiry or absent).
func (c *localCache) fill(key string, t cacheTicket, val []byte, found bool, pttl time.Duration) {
	life := c.ttl
	if pttl >= 0 {
		life = min(life, pttl)
	}
	until := t.at.Add(life)
	if !t.live || !until.After(c.now()) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.live || t.epoch != c.epoch || t.gen != c.gen[c.slot(key)] {
		return // invalidated while it was being read
	}
	if len(c.entries) >= c.max {
		n := c.max / 10 // an arbitrary tenth; a miss costs one round trip
		for k := range c.entries {
			delete(c.entries, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.entries[key] = cacheEntry{val: val, found: found, until: until}
}

// invalidate drops key, and makes reads of its slot already under way
// discard what they read.
func (c *localCache) invalidate(key string) {
	cacheInvalidations.Inc()
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, key)
	c.gen[c.slot(key)]++
}

// setLive empties the cache and turns it on (the subscription is confirmed)
// or off (it broke, or is not confirmed yet).
func (c *localCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.epoch++
	c.live = live
	if live {
		for _, w := range c.waiters {
			close(w)
		}
		c.waiters = nil
	}
}

func (c *localCache) isLive() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.live
}

// whenLive returns a channel closed once the subscription is next
// confirmed (at once if it is now).
func (c *localCache) whenLive() <-chan struct{} {
	ch := make(chan struct{})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live {
		close(ch)
	} else {
		c.waiters = append(c.waiters, ch)
	}
	return ch
}

// watchInvalidations keeps the store's subscription to its invalidation
// channel until ctx ends, turning the cache on while it is confirmed and
// dropping every key announced on it.
func (r *Redis) watchInvalidations(ctx context.Context) {
	// A silent connection (a network fault without a reset) is found by a
	// PING unanswered for two intervals; until then the entries' ttl bounds
	// what the cache serves.
	interval := min(max(r.cache.ttl/2, 100*time.Millisecond), 5*time.Second)
	backoff := 50 * time.Millisecond
	failing := false // a failure was logged and the cache has not been on since
	for ctx.Err() == nil {
		ps := r.c.Subscribe(ctx, r.invalidationChannel())
		stopClosing := context.AfterFunc(ctx, func() { _ = ps.Close() }) // ends a blocked receive
		var err error
		pongDue := false
		for ctx.Err() == nil {
			var msg any
			msg, err = ps.ReceiveTimeout(ctx, interval)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() && !pongDue {
					pongDue = true
					if err = ps.Ping(ctx); err == nil {
						continue
					}
				}
				break // broken, or silent for two intervals: start over
			}
			pongDue = false
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					r.cache.setLive(true)
					backoff = 50 * time.Millisecond
					if failing {
						r.logger.Info("session cache on again: subscribed to the invalidation channel",
							zap.String("channel", r.invalidationChannel()))
						failing = false
					}
				}
			case *redis.Message:
				if from, key, ok := strings.Cut(m.Payload, " "); ok && from != r.cache.self {
					r.cache.invalidate(key)
				}
			}
		}
		r.cache.setLive(false)
		stopClosing()
		_ = ps.Close()
		if ctx.Err() != nil {
			return
		}
		if !failing {
			r.logger.Warn("session cache off: the invalidation channel is unreachable, so every request reads Redis until it is back",
				zap.String("channel", r.invalidationChannel()), zap.Error(err))
			failing = true
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// Cache states, as Health reports them.
const (
	CacheOff  = "off"  // no local cache is configured
	CacheUp   = "up"   // the invalidation subscription is confirmed
	CacheDown = "down" // it is not: every read goes to Redis
)

// Health PINGs Redis (a Cluster: every master) and reports the
// local cache's state.
func (r *Redis) Health(ctx context.Context) (cache string, err error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	} else {
		err = r.c.Ping(ctx).Err()
	}
	switch {
	case r.cache == nil:
		cache = CacheOff
	case r.cache.isLive():
		cache = CacheUp
	default:
		cache = CacheDown
	}
	if err != nil {
		err = unavailable(err)
	}
	return cache, err
}

// CacheLive returns a channel closed once the local cache is in use (its
// subscription confirmed), or nil if the cache is off.
func (r *Redis) CacheLive() <-chan struct{} {
	if r.cache == nil {
		return nil
	}
	return r.cache.whenLive()
}

func (r *Redis) invalidationChannel() string { return r.prefix + "invalidate" }

// cachedGet reads keys through the local cache, the missing ones in one
// pipeline. found[i] tells whether keys[i] exists. With keepAbsent, that a
// key does not exist is cached too: right for revocation entries, which
// are usually absent, but not for session records, where a flood of
// made-up session IDs would only push real sessions out of the cache.
func (r *Redis) cachedGet(ctx context.Context, keepAbsent bool, keys ...string) (vals [][]byte, found []bool, err error) {
	vals, found = make([][]byte, len(keys)), make([]bool, len(keys))
	var misses []int
	for i, k := range keys {
		if r.cache == nil {
			misses = append(misses, i)
		} else if v, f, ok := r.cache.get(k); ok {
			vals[i], found[i] = v, f
			cacheHits.Inc()
		} else {
			misses = append(misses, i)
			cacheMisses.Inc()
		}
	}
	if len(misses) == 0 {
		return vals, found, nil
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	tickets := make([]cacheTicket, len(keys))
	gets := make([]*redis.StringCmd, len(keys))
	pttls := make([]*redis.DurationCmd, len(keys))
	for _, i := range misses {
		if r.cache != nil {
			tickets[i] = r.cache.ticket(keys[i])
		}
	}
	_, err = r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, i := range misses {
			gets[i] = p.Get(ctx, keys[i])
			if r.cache != nil {
				pttls[i] = p.PTTL(ctx, keys[i])
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	for _, i := range misses {
		v, err := gets[i].Bytes() // its own error, e.g. its node is down
		switch {
		case errors.Is(err, redis.Nil):
		case err != nil:
			return nil, nil, err
		default:
			vals[i], found[i] = v, true
		}
		if r.cache != nil && (found[i] || keepAbsent) {
			r.cache.fill(keys[i], tickets[i], vals[i], found[i], pttls[i].Val())
		}
	}
	return vals, found, nil
}

// announce tells every instance (this one at once) that keys changed. It
// runs after the write has completed, so that an instance reading the key
// again after the invalidation reads the new value.
//
// A failed announcement does not fail the write, which has happened: an
// instance that misses it serves the old value for at most its TTL. Most
// failures (Redis down, a missing channel permission) break or prevent
// the other instances' subscriptions too, which turns their caches off.
func (r *Redis) announce(ctx context.Context, keys ...string) {
	if r.cache == nil || len(keys) == 0 {
		return
	}
	for _, k := range keys {
		r.cache.invalidate(k)
	}
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Publish(ctx, r.invalidationChannel(), r.cache.self+" "+k)
		}
		return nil
	})
	// While this instance's own subscription fails, that failure is what
	// the log says; one line per write would add nothing.
	if err != nil && r.cache.isLive() {
		r.logger.Warn("announcing a session change to other instances failed; their local caches may serve the previous state for up to local_cache_ttl",
			zap.String("channel", r.invalidationChannel()), zap.Error(err))
	}
}
