package sessionstore

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// A Redis Cluster client routes each key by a slot map it reads with
// CLUSTER SLOTS. go-redis reads it again when a node answers MOVED or ASK,
// which a dead master never does, and otherwise only every
// ClusterStateReloadInterval (60 s unless set, and UniversalOptions cannot
// set it). So after a master fails and its replica takes over, requests
// for the dead master's slots would go on failing for up to a minute while
// the replica already serves them. The store therefore builds its cluster
// client itself: the slot map is re-read every few seconds, and at once
// when a node cannot be reached.
//
// Sentinel gets the same kind of client, go-redis's failover cluster
// client, whose "slot map" is the master and replicas Sentinel names. The
// plain failover client would keep one connection pool for whichever
// master is current; while the master is down, that pool's dial breaker
// opens and then probes only once a second, adding up to a second after
// Sentinel has named the new master. Here a new master is a new node with
// a fresh pool.
const (
	// clusterStateReloadInterval bounds how old the slot map gets while
	// nothing fails (a new node, a failover that moved no traffic). The
	// reload happens on the next command, in the background, and costs one
	// CLUSTER SLOTS.
	clusterStateReloadInterval = 2 * time.Second
	// clusterReloadGap spaces the reloads that unreachable nodes trigger:
	// until the replica is promoted, every request for the dead master's
	// slots fails, and one CLUSTER SLOTS per gap is enough to notice the
	// promotion.
	clusterReloadGap = 100 * time.Millisecond
)

// newRedisClient connects to the Redis that opts describe: a standalone
// server, Sentinel (MasterName set) or a Cluster (several addresses).
func newRedisClient(opts RedisOptions) redis.UniversalClient {
	u := &redis.UniversalOptions{
		// A copy: the cluster client appends the nodes it discovers to
		// this slice, which other stores may share.
		Addrs:        slices.Clone(opts.Addrs),
		MasterName:   opts.MasterName,
		Username:     opts.Username,
		Password:     opts.Password,
		DB:           opts.DB,
		TLSConfig:    opts.TLS,
		DialTimeout:  opts.DialTimeout,
		ReadTimeout:  opts.ReadTimeout,
		WriteTimeout: opts.WriteTimeout,
		// One retry covers a pooled connection that died with a Redis
		// restart or failover; more, and the default five dial attempts,
		// would multiply the time a request waits during an outage.
		MaxRetries:            1,
		DialerRetries:         1,
		ContextTimeoutEnabled: true,
		// No CLIENT SETINFO on connecting: Redis before 7.2 does not know
		// it, and an ACL user would need it granted for nothing.
		DisableIdentity: true,
	}
	var c *redis.ClusterClient
	switch {
	case opts.MasterName != "":
		c = redis.NewFailoverClusterClient(u.Failover())
	case len(opts.Addrs) > 1:
		co := u.Cluster()
		co.ClusterStateReloadInterval = clusterStateReloadInterval
		c = redis.NewClusterClient(co)
	default:
		return redis.NewClient(u.Simple())
	}
	reloader := &clusterReloader{reload: func() { c.ReloadState(context.Background()) }}
	c.OnNewNode(func(node *redis.Client) { node.AddHook(reloader) })
	return c
}

// clusterReloader is a hook on every node's client that re-reads the slot
// map when the node cannot be reached, at most once per clusterReloadGap.
type clusterReloader struct {
	reload func()
	last   atomic.Int64 // unix nanoseconds of the last reload
}

func (r *clusterReloader) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		r.check(err)
		return conn, err
	}
}

func (r *clusterReloader) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.check(err)
		return err
	}
}

func (r *clusterReloader) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		r.check(err)
		for _, c := range cmds {
			if unreachable(c.Err()) {
				r.check(c.Err())
				break
			}
		}
		return err
	}
}

func (r *clusterReloader) check(err error) {
	if !unreachable(err) {
		return
	}
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(clusterReloadGap) || !r.last.CompareAndSwap(last, now) {
		return
	}
	r.reload()
}

// unreachable reports whether err says the node could not be reached or
// stopped answering (refused, reset, timed out), as opposed to an answer
// from Redis, the caller giving up or the store closing.
func unreachable(err error) bool {
	var reply redis.Error // every reply from Redis, redis.Nil included
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, redis.ErrClosed), errors.As(err, &reply):
		return false
	}
	return true
}
