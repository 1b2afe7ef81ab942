package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelDownAfter is the sentinels' down-after-milliseconds: a master
// silent for this long is suspected, and replaced a second or two later.
// Redis's default, 30 s, would make every failover test wait for it.
const SentinelDownAfter = 500 * time.Millisecond

// SentinelMasterName is the name the sentinels monitor the master under.
const SentinelMasterName = "redistest"

// Sentinel is a master, its replica and three sentinels watching them,
// the smallest set-up that survives the loss of any one process.
type Sentinel struct {
	t               testing.TB
	Master, Replica *Server
	Sentinels       []*Server
}

// StartSentinel runs the set-up and waits until every sentinel knows the
// replica and the other sentinels, so that a failover can start at once.
// Everything stops when the test ends.
//
// Sentinels that split their votes try again after twice the
// failover-timeout: 3 s (rather than Redis's default 3 minutes, or the
// 10 s of most examples) keeps that retry within a test's patience.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	// Without the delay (5 s by default), a master waits for more replicas
	// before it sends the first one its data.
	noDelay := WithArgs("--repl-diskless-sync-delay", "0")
	s := &Sentinel{t: t, Master: Start(t, noDelay)}
	s.Replica = Start(t, noDelay, WithArgs("--replicaof", "127.0.0.1", strconv.Itoa(s.Master.port)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A sentinel learns of replicas from the master's INFO, which it reads
	// on connecting and then every 10 s: the replica must be listed by then.
	rc := s.Replica.client()
	for {
		repl, err := rc.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(repl, "master_link_status:up") {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("replica %s did not sync: %v %v", s.Replica.Addr(), err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	rc.Close()
	conf := fmt.Sprintf(`sentinel monitor %[1]s 127.0.0.1 %[2]d 2
sentinel down-after-milliseconds %[1]s %[3]d
sentinel failover-timeout %[1]s 3000
sentinel parallel-syncs %[1]s 1
`, SentinelMasterName, s.Master.port, SentinelDownAfter.Milliseconds())
	for range 3 {
		s.Sentinels = append(s.Sentinels, Start(t, func(srv *Server) { srv.conf = conf }, WithArgs("--sentinel")))
	}
	for _, sn := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), DisableIdentity: true, MaxRetries: -1})
		for !s.ready(ctx, sc) {
			select {
			case <-ctx.Done():
				t.Fatalf("sentinel %s: the replica and the other sentinels were not discovered: %v", sn.Addr(), ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
		sc.Close()
	}
	return s
}

// Addrs are the sentinels' addresses, what a client is configured with.
func (s *Sentinel) Addrs() []string {
	var out []string
	for _, sn := range s.Sentinels {
		out = append(out, sn.Addr())
	}
	return out
}

// WaitPromoted polls the replica until it reports itself a master, and
// returns when it first did (within a poll interval of 10 ms). The error of
// a promotion that did not come has the sentinels' logs (a sentinel whose
// timer ran two seconds late, on a starved machine, waits 30 s in TILT
// mode before it acts again).
func (s *Sentinel) WaitPromoted(ctx context.Context) (time.Time, error) {
	at, err := waitMaster(ctx, s.Replica)
	if err != nil {
		var logs strings.Builder
		for _, sn := range s.Sentinels {
			fmt.Fprintf(&logs, "sentinel %s:\n%s\n", sn.Addr(), sn.log())
		}
		err = fmt.Errorf("%w\n%s", err, logs.String())
	}
	return at, err
}

func (s *Sentinel) ready(ctx context.Context, sc *redis.SentinelClient) bool {
	replicas, err := sc.Replicas(ctx, SentinelMasterName).Result()
	if err != nil || len(replicas) != 1 || replicas[0]["port"] != strconv.Itoa(s.Replica.port) ||
		strings.Contains(replicas[0]["flags"], "down") || replicas[0]["master-link-status"] != "ok" {
		return false
	}
	others, err := sc.Sentinels(ctx, SentinelMasterName).Result()
	return err == nil && len(others) == len(s.Sentinels)-1
}
