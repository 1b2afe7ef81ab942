package redistest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of StartCluster's nodes:
// a master silent for this long is suspected, and its replica takes over
// a second or two later. Redis's default, 15 s, would make every failover
// test wait for it.
const ClusterNodeTimeout = time.Second

// Cluster is a Redis Cluster whose every master has one replica, set up
// as `redis-cli --cluster create --cluster-replicas 1` would.
type Cluster struct {
	t testing.TB
	// Masters and Replicas: Replicas[i] replicates Masters[i], which
	// serves the i-th of len(Masters) equal slot ranges.
	Masters, Replicas []*Server
	ranges            [][2]int
}

// StartCluster runs masters masters and as many replicas, and waits until
// every node agrees on the slot map and every replica is in sync. The
// cluster stops when the test ends.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	args := WithArgs("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout/time.Millisecond)),
		"--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")
	c := &Cluster{t: t}
	for range masters {
		c.Masters = append(c.Masters, Start(t, args))
		c.Replicas = append(c.Replicas, Start(t, args))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids := make([]string, masters)
	for i, m := range c.Masters {
		start, end := i*16384/masters, (i+1)*16384/masters-1
		c.ranges = append(c.ranges, [2]int{start, end})
		rc := m.client()
		// Distinct config epochs, as redis-cli sets them, so the nodes
		// need not resolve a collision before the cluster is usable.
		c.must(rc.Do(ctx, "CLUSTER", "SET-CONFIG-EPOCH", i+1).Err())
		c.must(rc.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", start, end).Err())
		id, err := rc.Do(ctx, "CLUSTER", "MYID").Text()
		c.must(err)
		ids[i] = id
		rc.Close()
	}
	first := c.Masters[0].client()
	defer first.Close()
	for _, s := range c.nodes()[1:] {
		c.must(first.ClusterMeet(ctx, "127.0.0.1", strconv.Itoa(s.port)).Err())
	}
	for i, r := range c.Replicas {
		rc := r.client()
		c.wait(ctx, "replica "+r.Addr()+" to learn its master", func() bool {
			nodes, err := rc.ClusterNodes(ctx).Result()
			return err == nil && strings.Contains(nodes, ids[i])
		})
		c.must(rc.ClusterReplicate(ctx, ids[i]).Err())
		rc.Close()
	}
	for _, s := range c.nodes() {
		rc := s.client()
		c.wait(ctx, "node "+s.Addr()+" to see the whole cluster", func() bool {
			return c.settled(ctx, rc)
		})
		rc.Close()
	}
	return c
}

// Addrs are the masters' addresses, what a client is configured with.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, m := range c.Masters {
		out = append(out, m.Addr())
	}
	return out
}

// Shard is the index in Masters of the master serving key.
func (c *Cluster) Shard(key string) int {
	slot := Slot(key)
	for i, r := range c.ranges {
		if slot >= r[0] && slot <= r[1] {
			return i
		}
	}
	panic(fmt.Sprintf("redistest: slot %d of %q is in no range", slot, key))
}

// Slot is the cluster hash slot of key: CRC16 of its hash tag (the part
// between the first "{" and the next "}", if not empty) or of all of it.
func Slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// WaitPromoted polls the replica of shard i until it reports itself a
// master, and returns when it first did (within a poll interval of 10 ms).
// The error of a promotion that did not come has the replica's log.
func (c *Cluster) WaitPromoted(ctx context.Context, i int) (time.Time, error) {
	at, err := waitMaster(ctx, c.Replicas[i])
	if err != nil {
		err = fmt.Errorf("%w\n%s", err, c.Replicas[i].log())
	}
	return at, err
}

func (c *Cluster) nodes() []*Server { return append(slices.Clone(c.Masters), c.Replicas...) }

// settled reports whether the node sees the cluster ok, with every slot
// range served by a master and a replica, and its replication in sync.
func (c *Cluster) settled(ctx context.Context, rc *redis.Client) bool {
	info, err := rc.ClusterInfo(ctx).Result()
	if err != nil || !strings.Contains(info, "cluster_state:ok") ||
		!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d\r", 2*len(c.Masters))) {
		return false
	}
	slots, err := rc.ClusterSlots(ctx).Result()
	if err != nil || len(slots) != len(c.Masters) {
		return false
	}
	for _, s := range slots {
		if len(s.Nodes) != 2 {
			return false
		}
	}
	repl, err := rc.Info(ctx, "replication").Result()
	if err != nil {
		return false
	}
	return strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up")
}

func (c *Cluster) wait(ctx context.Context, what string, cond func() bool) {
	c.t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			c.t.Fatalf("redis cluster: waiting for %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) must(err error) {
	c.t.Helper()
	if err != nil {
		c.t.Fatalf("redis cluster: %v", err)
	}
}

// client is a plain connection to this one server, for setting it up.
func (s *Server) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.password, TLSConfig: s.tls,
		DisableIdentity: true, MaxRetries: -1})
}

// waitMaster polls s until it reports the master role.
func waitMaster(ctx context.Context, s *Server) (time.Time, error) {
	rc := s.client()
	defer rc.Close()
	for {
		role, err := rc.Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "master" {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s did not become a master: %w", s.Addr(), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}
