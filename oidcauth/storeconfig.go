package oidcauth

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
)

// SessionStoreConfig says where sessions are kept.
type SessionStoreConfig struct {
	// Type is `cookie` (the whole session in encrypted cookies; stateless),
	// `memory` (on this Caddy, bounded; kept across config reloads) or
	// `redis` (shared by every Caddy instance using the same Redis). With
	// memory and redis the cookie holds only a random 256-bit session ID.
	// Default: `cookie`.
	Type string `json:"type,omitempty"`

	// MaxEntries bounds the memory store; the least recently used sessions
	// are dropped first. Default: 100000.
	MaxEntries int `json:"max_entries,omitempty"`

	// Redis configures the Redis connection. With the cookie store, a
	// configured Redis keeps the back-channel logout revocation list, so it
	// is shared by every instance.
	Redis *RedisConfig `json:"redis,omitempty"`
}

// RedisConfig is a connection to Redis: one address for a standalone
// server, several for a Cluster, or Sentinel addresses with MasterName.
type RedisConfig struct {
	// Addresses are host:port pairs. Default: `localhost:6379`.
	Addresses []string `json:"addresses,omitempty"`

	// MasterName selects Sentinel mode: the name of the monitored master.
	// Default: none.
	MasterName string `json:"master_name,omitempty"`

	// Username for Redis ACLs. Default: none.
	Username string `json:"username,omitempty"`

	// Password; may be a placeholder such as `{env.REDIS_PASSWORD}`,
	// resolved when the module is provisioned. Default: none.
	Password string `json:"password,omitempty"`

	// DB is the database number (standalone and Sentinel). Default: 0.
	DB int `json:"db,omitempty"`

	// TLS connects with TLS. Default: off.
	TLS bool `json:"tls,omitempty"`

	// TLSServerName is the name expected in the server's certificate.
	// Default: the host of the first address.
	TLSServerName string `json:"tls_server_name,omitempty"`

	// KeyPrefix begins every key this module writes. Default: `caddy-oidc:`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// LocalCacheTTL is how long this instance may serve a session (or a
	// back-channel logout revocation entry) it read from Redis from its own
	// memory instead of asking Redis again. Every change is announced to
	// all instances on the Redis channel `<key_prefix>invalidate`, so a
	// logout or refresh at one instance reaches the others within
	// milliseconds; the cache is used only while that subscription is up,
	// so a Redis outage is noticed at once. The TTL bounds staleness should
	// an announcement be lost. A negative value (`off` in the Caddyfile)
	// turns the cache off: every request then reads Redis. Default: `2s`.
	LocalCacheTTL caddy.Duration `json:"local_cache_ttl,omitempty"`
}

const defaultMemoryEntries = 100000

// memoryStores keeps memory stores across config reloads, so a reload does
// not sign everyone out.
var memoryStores = caddy.NewUsagePool()

type pooledMemory struct{ *sessionstore.Memory }

func (pooledMemory) Destruct() error { return nil }

// openBackend opens the server-side store (a sessionstore.Store) or, for
// the cookie store, the revocation list: in Redis when one is configured,
// else in Caddy's storage. It returns a function that releases it when
// the config is unloaded.
func (h *Handler) openBackend(repl *caddy.Replacer, poolKey string) (sessionstore.Revocations, func(), error) {
	cfg := h.SessionStore
	switch {
	case cfg.Redis != nil && (cfg.Type == "redis" || cfg.Type == "cookie"):
		opts, err := cfg.Redis.options(repl)
		if err != nil {
			return nil, nil, err
		}
		opts.Logger = h.logger
		redisLogOnce.Do(func() { redis.SetLogger(redisLogger{caddy.Log().Named("oidc_auth.redis")}) })
		rs, err := sessionstore.NewRedis(opts)
		if err != nil {
			return nil, nil, fmt.Errorf("redis: %v", err)
		}
		return rs, func() { _ = rs.Close() }, nil
	case cfg.Type == "redis":
		return nil, nil, errors.New("session_store redis needs a redis configuration")
	case cfg.Type == "cookie":
		return openStorageRevocations(h.storage, poolKey, h.logger)
	}
	max := cfg.MaxEntries
	if max <= 0 {
		max = defaultMemoryEntries
	}
	v, _, err := memoryStores.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return pooledMemory{sessionstore.NewMemory(max)}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return v.(pooledMemory).Memory, func() { _, _ = memoryStores.Delete(poolKey) }, nil
}

// storageRevocations keeps one revocation list per client and cookie name
// across config reloads, so reloads do not start a reader of the storage
// each.
var storageRevocations = caddy.NewUsagePool()

type pooledRevocations struct {
	*sessionstore.StorageRevocations
}

func (p pooledRevocations) Destruct() error { return p.Close() }

// openStorageRevocations opens the cookie store's revocation list in
// Caddy's storage, under a directory named after the client and cookie,
// so that instances sharing the storage share the list.
func openStorageRevocations(storage certmagic.Storage, poolKey string, logger *zap.Logger) (sessionstore.Revocations, func(), error) {
	if storage == nil {
		// Only outside a Caddy config; Caddy always has a storage.
		logger.Warn("no storage: the revocation list of cookie sessions is kept in memory only")
		return sessionstore.NewMemory(0), func() {}, nil
	}
	sum := sha256.Sum256([]byte(poolKey))
	dir := "oidc_auth/revocations/" + hex.EncodeToString(sum[:8])
	// A reload that keeps the storage keeps the list; one that changes it
	// gets a new list.
	id := fmt.Sprintf("%p", storage)
	if st, ok := storage.(fmt.Stringer); ok {
		id = st.String()
	}
	key := poolKey + "\x00revocations\x00" + id
	v, _, err := storageRevocations.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledRevocations{sessionstore.NewStorageRevocations(storage, dir, 0, logger)}, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return v.(pooledRevocations).StorageRevocations, func() { _, _ = storageRevocations.Delete(key) }, nil
}

// redisLogOnce routes go-redis's own messages (connection failures, with
// addresses only) to Caddy's log instead of standard error. go-redis has one
// logger per process.
var redisLogOnce sync.Once

type redisLogger struct{ l *zap.Logger }

func (rl redisLogger) Printf(_ context.Context, format string, v ...any) {
	rl.l.Warn(fmt.Sprintf(format, v...))
}

func (rc *RedisConfig) options(repl *caddy.Replacer) (sessionstore.RedisOptions, error) {
	opts := sessionstore.RedisOptions{
		Addrs:      rc.Addresses,
		MasterName: rc.MasterName,
		Username:   rc.Username,
		DB:         rc.DB,
		KeyPrefix:  rc.KeyPrefix,
	}
	if len(opts.Addrs) == 0 {
		opts.Addrs = []string{"localhost:6379"}
	}
	if rc.Password != "" {
		pw, err := repl.ReplaceOrErr(rc.Password, true, true)
		if err != nil {
			return opts, fmt.Errorf("redis password: %v", err)
		}
		opts.Password = pw
	}
	if rc.TLS {
		name := rc.TLSServerName
		if name == "" {
			name, _, _ = net.SplitHostPort(opts.Addrs[0])
		}
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: name}
	}
	opts.DialTimeout = 2 * time.Second
	opts.LocalCacheTTL = time.Duration(rc.LocalCacheTTL)
	return opts, nil
}
