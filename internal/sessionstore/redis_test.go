package sessionstore

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// startCluster runs a one-node Redis Cluster owning every slot. A single node
// is enough to catch CROSSSLOT errors: the check is per command, not per node.
func startCluster(t *testing.T) *redistest.Server {
	t.Helper()
	srv := redistest.Start(t, redistest.WithArgs("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"))
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	if err := c.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		t.Fatalf("assigning slots: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return srv
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready: %v %s", err, info)
		}
	}
}

func TestRedisOutageFailsFastAndRecovers(t *testing.T) {
	srv := redistest.Start(t)
	h := newRedisHarness(t, RedisOptions{Addrs: []string{srv.Addr()}})
	ctx, s := context.Background(), h.store
	if err := s.Put(ctx, "a", rec("x", "u1", "s1", time.Now().Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	start := time.Now()
	_, err := s.Get(ctx, "a")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with Redis down = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Get with Redis down took %v", d)
	}
	if err := s.Put(ctx, "b", rec("x", "u1", "", time.Now().Add(time.Hour))); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Put with Redis down = %v, want ErrUnavailable", err)
	}
	if _, _, err := s.TryLock(ctx, "k", time.Second); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("TryLock with Redis down = %v, want ErrUnavailable", err)
	}
	if _, err := s.Revoked(ctx, Selector{Subject: "u1", SID: "s1"}, time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Revoked with Redis down = %v, want ErrUnavailable", err)
	}

	// The same client must come back by itself: go-redis re-probes dialing
	// about once a second after repeated dial failures.
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.Put(ctx, "c", rec("y", "u1", "", time.Now().Add(time.Hour)))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover after Redis restarted: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := mustGet(t, s, "c"); string(got.Data) != "y" {
		t.Fatalf("after recovery Get = %q", got.Data)
	}
}

// A Redis that accepts connections but never answers (a network partition,
// a hung server) must not hold requests longer than the op budget.
func TestRedisUnresponsiveFailsWithinBudget(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	h := newRedisHarness(t, RedisOptions{Addrs: []string{l.Addr().String()}})
	start := time.Now()
	_, err = h.store.Get(context.Background(), "a")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3500*time.Millisecond {
		t.Fatalf("Get against a silent server took %v, want about 3s at most", d)
	}
}

// The store writes Data as is: no plaintext wrapper, no copy of it elsewhere.
func TestRedisStoresOnlySealedBytes(t *testing.T) {
	srv := redistest.Start(t)
	h := newRedisHarness(t, RedisOptions{Addrs: []string{srv.Addr()}, KeyPrefix: "p:"})
	ctx := context.Background()
	sealed := []byte{0x00, 0xff, 0x10, 'o', 'p', 'a', 'q', 'u', 'e', 0x80}
	if err := h.store.Put(ctx, "id1", Record{Data: sealed, Subject: "u1", SID: "s1", Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	got, err := raw.Get(ctx, "p:s:{id1}").Bytes()
	if err != nil || !bytes.Equal(got, sealed) {
		t.Fatalf("raw value = %x, %v; want exactly the sealed bytes %x", got, err, sealed)
	}
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	if want := []string{"p:s:{id1}", "p:sid:{s1}", "p:sub:{u1}"}; !slices.Equal(keys, want) {
		t.Fatalf("keys = %q, want %q", keys, want)
	}
	if ttl := raw.PTTL(ctx, "p:sub:{u1}").Val(); ttl < 59*time.Minute {
		t.Fatalf("index TTL = %v, want it to outlive the record", ttl)
	}
}

func TestRedisPasswordAuth(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPassword("hunter2"))
	ctx := context.Background()
	good := newRedisHarness(t, RedisOptions{Addrs: []string{srv.Addr()}, Password: "hunter2"})
	if err := good.store.Put(ctx, "a", rec("x", "", "", time.Now().Add(time.Hour))); err != nil {
		t.Fatalf("Put with the right password: %v", err)
	}
	mustGet(t, good.store, "a")
	bad := newRedisHarness(t, RedisOptions{Addrs: []string{srv.Addr()}, Password: "wrong"})
	if _, err := bad.store.Get(ctx, "a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Get with a wrong password = %v, want ErrUnavailable", err)
	}
}

func TestNewRedisNeedsAnAddress(t *testing.T) {
	if _, err := NewRedis(RedisOptions{}); err == nil {
		t.Fatal("NewRedis without addresses succeeded")
	}
}
