package sessionstore

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// RedisOptions configures NewRedis. One address and no MasterName is a
// standalone server, MasterName selects Sentinel (Addrs are the sentinels),
// several addresses without MasterName a Redis Cluster.
type RedisOptions struct {
	// Addrs are host:port addresses; at least one is required.
	Addrs []string
	// MasterName is the Sentinel master name; empty unless using Sentinel.
	MasterName string
	// Username and Password authenticate to Redis; empty for no AUTH.
	Username, Password string
	// DB is the database number for standalone and Sentinel; default 0.
	DB int
	// TLS enables TLS with this configuration; nil for plain TCP.
	TLS *tls.Config
	// KeyPrefix starts every key; default "caddy-oidc:".
	KeyPrefix string
	// DialTimeout, ReadTimeout and WriteTimeout default to 2s, 1s and 1s:
	// when Redis is down, requests must fail fast with a 503 rather than
	// hang.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// LocalCacheTTL is how long a value read from Redis may be served from
	// this process's memory (see localCache); zero means
	// DefaultLocalCacheTTL, a negative value turns the cache off.
	LocalCacheTTL time.Duration
	// Logger gets the local cache's state changes and failed
	// announcements; nil discards them.
	Logger *zap.Logger
}

// Redis is a Store in Redis, shared by every Caddy instance using it.
//
// Keys, with hash tags so that a record's keys hash like its id in a
// cluster (every command still touches a single key, so no command can
// fail with CROSSSLOT):
//
//	<prefix>s:{<id>}          the sealed Data as a plain string, PX to Expires
//	<prefix>sub:{<subject>}   set of ids, expiring with its latest record
//	<prefix>sid:{<sid>}       set of ids, likewise
//	<prefix>lock:<key>        a lease's random token, PX lease
//	<prefix>rev:sub:<subject> revocation time in unix ms, PX to until
//	<prefix>rev:sid:<sid>     likewise
//	<prefix>rev:sess:<key>    likewise, for one sign-in
//	<prefix>seen:<key>        a remembered one-time value, PX to until
//
// Every change to a record or a revocation is announced on the channel
// <prefix>invalidate, for the instances' local caches.
type Redis struct {
	c         redis.UniversalClient
	prefix    string
	opTimeout time.Duration
	cache     *localCache // nil when off
	logger    *zap.Logger
	stop      context.CancelFunc
	done      chan struct{}
}

// NewRedis returns a store using the Redis described by opts. It does not
// connect: Caddy must start while Redis is down, and the client connects
// (and reconnects after outages) on demand.
func NewRedis(opts RedisOptions) (*Redis, error) {
	if len(opts.Addrs) == 0 {
		return nil, errors.New("sessionstore: redis: no address")
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = "caddy-oidc:"
	}
	opts.DialTimeout = orDefault(opts.DialTimeout, 2*time.Second)
	opts.ReadTimeout = orDefault(opts.ReadTimeout, time.Second)
	opts.WriteTimeout = orDefault(opts.WriteTimeout, time.Second)
	c := newRedisClient(opts)
	r := &Redis{
		c:         c,
		prefix:    opts.KeyPrefix,
		opTimeout: opts.DialTimeout + opts.ReadTimeout,
		logger:    opts.Logger,
	}
	if r.logger == nil {
		r.logger = zap.NewNop()
	}
	if opts.LocalCacheTTL >= 0 {
		r.cache = newLocalCache(orDefault(opts.LocalCacheTTL, DefaultLocalCacheTTL))
		ctx, stop := context.WithCancel(context.Background())
		r.stop, r.done = stop, make(chan struct{})
		go func() {
			defer close(r.done)
			r.watchInvalidations(ctx)
		}()
	}
	return r, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// indexScript adds a record id to an index set and makes the set live at
// least as long as the record. PEXPIRE GT would do without Lua but needs
// Redis 7 and treats a fresh set (no TTL) as never expiring.
var indexScript = redis.NewScript(`
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1`)

// unlockScript deletes a lease only if it still holds our token, so a
// holder whose lease expired cannot release the next holder's.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

// replaceScript writes a record only if it still holds the value whose
// SHA-1 is ARGV[1]: a record deleted meanwhile stays deleted.
var replaceScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if not cur or redis.sha1hex(cur) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1`)

// revokeScript keeps the latest revocation time and the longest retention,
// so concurrent or repeated logouts never shorten a revocation.
var revokeScript = redis.NewScript(`
local v = ARGV[1]
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) > tonumber(v) then v = cur end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then ttl = ARGV[2] end
redis.call('SET', KEYS[1], v, 'PX', ttl)
return 1`)

func (r *Redis) recordKey(id string) string      { return r.prefix + "s:{" + id + "}" }
func (r *Redis) subjectKey(sub string) string    { return r.prefix + "sub:{" + sub + "}" }
func (r *Redis) sidKey(sid string) string        { return r.prefix + "sid:{" + sid + "}" }
func (r *Redis) lockKey(key string) string       { return r.prefix + "lock:" + key }
func (r *Redis) revocationKey(key string) string { return r.prefix + "rev:" + key }
func (r *Redis) seenKey(key string) string       { return r.prefix + "seen:" + key }

// op bounds every operation, including its retry, by one dial plus one read
// timeout, unless the caller's deadline is sooner.
func (r *Redis) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.opTimeout)
}

// Get implements Store. It is on every request's path: a record read
// recently is served from the local cache, otherwise it costs one round
// trip.
func (r *Redis) Get(ctx context.Context, id string) (Record, error) {
	key := r.recordKey(id)
	if r.cache == nil {
		return r.get(ctx, key)
	}
	if b, found, ok := r.cache.get(key); ok && found {
		cacheHits.Inc()
		return Record{Data: b}, nil
	}
	b, found, err := r.cachedGet(ctx, false, key)
	switch {
	case err != nil:
		return Record{}, unavailable(err)
	case !found[0]:
		return Record{}, ErrNotFound
	}
	return Record{Data: b[0]}, nil
}

// Reload implements Store: one GET, never from the local cache.
func (r *Redis) Reload(ctx context.Context, id string) (Record, error) {
	return r.get(ctx, r.recordKey(id))
}

func (r *Redis) get(ctx context.Context, key string) (Record, error) {
	b, err := r.c.Get(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return Record{}, ErrNotFound
	case err != nil:
		return Record{}, unavailable(err)
	}
	return Record{Data: b}, nil
}

// Put implements Store. The index entries are written before the record, so
// a record never exists that back-channel logout cannot find.
func (r *Redis) Put(ctx context.Context, id string, rec Record) error {
	if id == "" {
		return errEmptyID
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	ttl := time.Until(rec.Expires).Truncate(time.Millisecond)
	if ttl <= 0 {
		return r.del(ctx, r.recordKey(id))
	}
	if err := r.index(ctx, id, rec, ttl); err != nil {
		return err
	}
	if err := r.c.Set(ctx, r.recordKey(id), rec.Data, ttl).Err(); err != nil {
		return unavailable(err)
	}
	r.announce(ctx, r.recordKey(id))
	return nil
}

// index adds id to its subject's and sid's index sets, which live at least
// as long as the record.
func (r *Redis) index(ctx context.Context, id string, rec Record, ttl time.Duration) error {
	if rec.Subject == "" && rec.SID == "" {
		return nil
	}
	_, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		ms := ttl.Milliseconds()
		if rec.Subject != "" {
			indexScript.Eval(ctx, p, []string{r.subjectKey(rec.Subject)}, id, ms)
		}
		if rec.SID != "" {
			indexScript.Eval(ctx, p, []string{r.sidKey(rec.SID)}, id, ms)
		}
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	return nil
}

// Replace implements Store: the comparison and the write are one script,
// so no delete can slip in between.
func (r *Redis) Replace(ctx context.Context, id string, old []byte, rec Record) (bool, error) {
	if id == "" {
		return false, errEmptyID
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	ttl := time.Until(rec.Expires).Truncate(time.Millisecond)
	if ttl <= 0 {
		ttl = time.Millisecond // expires at once, like Put's delete, but only if still ours
	}
	if err := r.index(ctx, id, rec, ttl); err != nil {
		return false, err
	}
	sum := sha1.Sum(old)
	n, err := replaceScript.Run(ctx, r.c, []string{r.recordKey(id)}, hex.EncodeToString(sum[:]), rec.Data, ttl.Milliseconds()).Int()
	if err != nil {
		return false, unavailable(err)
	}
	if n == 1 {
		r.announce(ctx, r.recordKey(id))
	}
	return n == 1, nil
}

// Delete implements Store. The id stays in its index sets until they expire
// or DeleteMatching clears them; deleting an absent record is harmless.
func (r *Redis) Delete(ctx context.Context, id string) error {
	ctx, cancel := r.op(ctx)
	defer cancel()
	return r.del(ctx, r.recordKey(id))
}

func (r *Redis) del(ctx context.Context, key string) error {
	if err := r.c.Del(ctx, key).Err(); err != nil {
		return unavailable(err)
	}
	r.announce(ctx, key)
	return nil
}

// DeleteMatching implements Store. It removes from the index sets exactly
// the ids it read, rather than deleting the sets, so a session created
// concurrently stays indexed.
func (r *Redis) DeleteMatching(ctx context.Context, subject, sid string) (int, error) {
	var sets []string
	if sid != "" {
		sets = append(sets, r.sidKey(sid))
	}
	if subject != "" {
		sets = append(sets, r.subjectKey(subject))
	}
	if len(sets) == 0 {
		return 0, errNoSelector
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	members := make([]*redis.StringSliceCmd, len(sets))
	if _, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range sets {
			members[i] = p.SMembers(ctx, s)
		}
		return nil
	}); err != nil {
		return 0, unavailable(err)
	}
	// With both a sid and a subject, a session must be in both sets: the
	// sets live in different slots, so intersect here, not with SINTER.
	ids := members[0].Val()
	if len(members) == 2 {
		inSubject := make(map[string]bool)
		for _, id := range members[1].Val() {
			inSubject[id] = true
		}
		ids = filter(ids, func(id string) bool { return inSubject[id] })
	}
	if len(ids) == 0 {
		return 0, nil
	}
	dels := make([]*redis.IntCmd, len(ids))
	if _, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			dels[i] = p.Del(ctx, r.recordKey(id))
		}
		for _, s := range sets {
			p.SRem(ctx, s, toAny(ids)...)
		}
		return nil
	}); err != nil {
		return 0, unavailable(err)
	}
	n := 0
	keys := make([]string, 0, len(ids))
	for i, d := range dels {
		if d.Val() > 0 {
			n++
			keys = append(keys, r.recordKey(ids[i]))
		}
	}
	r.announce(ctx, keys...)
	return n, nil
}

// TryLock implements Store across every instance sharing the Redis.
func (r *Redis) TryLock(ctx context.Context, key string, lease time.Duration) (func(), bool, error) {
	ctx, cancel := r.op(ctx)
	defer cancel()
	token := rand.Text()
	k := r.lockKey(key)
	ok, err := r.c.SetNX(ctx, k, token, max(lease, time.Millisecond)).Result()
	if err != nil {
		return func() {}, false, unavailable(err)
	}
	if !ok {
		return func() {}, false, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			// A fresh context: release often runs after the request's
			// context is done. A failed release only delays the next
			// holder until the lease expires.
			ctx, cancel := context.WithTimeout(context.Background(), r.opTimeout)
			defer cancel()
			_ = unlockScript.Run(ctx, r.c, []string{k}, token).Err()
		})
	}, true, nil
}

// Revoke implements Revocations.
func (r *Redis) Revoke(ctx context.Context, sel Selector, at, until time.Time) error {
	key, ok := sel.key()
	if !ok {
		return errNoSelector
	}
	ttl := time.Until(until).Milliseconds()
	if ttl <= 0 {
		return nil
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	if err := revokeScript.Run(ctx, r.c, []string{r.revocationKey(key)}, at.UnixMilli(), ttl).Err(); err != nil {
		return unavailable(err)
	}
	r.announce(ctx, r.revocationKey(key))
	return nil
}

// Revoked implements Revocations: one round trip for all of sel's keys,
// or none while the local cache holds them.
func (r *Redis) Revoked(ctx context.Context, sel Selector, issuedAt time.Time) (bool, error) {
	keys := sel.keys()
	if len(keys) == 0 {
		return false, nil
	}
	for i, k := range keys {
		keys[i] = r.revocationKey(k)
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	vals, found, err := r.cachedGet(ctx, true, keys...)
	if err != nil {
		return false, unavailable(err)
	}
	for i, v := range vals {
		if !found[i] {
			continue
		}
		at, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return false, fmt.Errorf("sessionstore: revocation %q: %w", keys[i], err)
		}
		if revokedAt(at, issuedAt) {
			return true, nil
		}
	}
	return false, nil
}

// Remember implements Revocations with SET NX, so the first instance of a
// cluster to see key wins.
func (r *Redis) Remember(ctx context.Context, key string, until time.Time) (bool, error) {
	ttl := time.Until(until)
	if ttl <= 0 {
		return true, nil
	}
	ctx, cancel := r.op(ctx)
	defer cancel()
	ok, err := r.c.SetNX(ctx, r.seenKey(key), "1", max(ttl, time.Millisecond)).Result()
	if err != nil {
		return false, unavailable(err)
	}
	return ok, nil
}

// Close implements Store.
func (r *Redis) Close() error {
	if r.stop != nil {
		r.stop()
		<-r.done
	}
	return r.c.Close()
}

func filter(ids []string, keep func(string) bool) []string {
	out := ids[:0]
	for _, id := range ids {
		if keep(id) {
			out = append(out, id)
		}
	}
	return out
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

var _ Store = (*Redis)(nil)
