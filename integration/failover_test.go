package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// TestRedisFailoverGives503ThenServesAgain: two instances share a Redis
// Cluster (three masters with a replica each) or a Sentinel set-up, and
// the master holding a signed-in user's session dies. The user's requests,
// through both instances, get 200 or 503 (never 500, never 401: nobody is
// signed out, nothing hangs), and 200 again within two seconds of the
// replica's promotion.
func TestRedisFailoverGives503ThenServesAgain(t *testing.T) {
	for _, topology := range []string{"cluster", "sentinel"} {
		t.Run(topology, func(t *testing.T) {
			var masters []string
			var victim int // the master to kill
			var block string
			var kill func(i int)
			var promoted func(ctx context.Context, i int) (time.Time, error)
			switch topology {
			case "cluster":
				cl := redistest.StartCluster(t, 3)
				masters = cl.Addrs()
				victim = cl.Shard("caddy-oidc:invalidate")
				block = fmt.Sprintf("session_store redis {\n\t\t\taddress %s\n\t\t}", strings.Join(masters, " "))
				kill = func(i int) { cl.Masters[i].Stop() }
				promoted = cl.WaitPromoted
			case "sentinel":
				st := redistest.StartSentinel(t)
				masters = []string{st.Master.Addr()}
				block = fmt.Sprintf("session_store redis {\n\t\t\taddress %s\n\t\t\tmaster_name %s\n\t\t}",
					strings.Join(st.Addrs(), " "), redistest.SentinelMasterName)
				kill = func(int) { st.Master.Stop() }
				promoted = func(ctx context.Context, _ int) (time.Time, error) { return st.WaitPromoted(ctx) }
			}
			p := newProvider(t, testop.Config{})
			c := startCluster(t, p, newUpstream(t), 2, block)
			// The victim holds both the user's session and the instances'
			// invalidation subscriptions, so their local caches turn off
			// and cannot hide the outage: users sign in until one's
			// session lands there.
			var b *browser
			for range 30 {
				before := sessionRecords(t, masters)
				b = newBrowser(t)
				if resp, body := b.navigate(c.urls[0] + "/"); resp.StatusCode != http.StatusOK {
					t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
				}
				if sessionRecords(t, masters)[victim] > before[victim] {
					break
				}
				b = nil
			}
			if b == nil {
				t.Fatal("no session on the master to be killed after 30 sign-ins")
			}
			for _, u := range c.urls {
				if st := apiCall(t, b, u).StatusCode; st != http.StatusOK {
					t.Fatalf("before the failover, %s: %d", u, st)
				}
			}

			killed := time.Now()
			kill(victim)
			type promotionResult struct {
				at  time.Time
				err error
			}
			promotion := make(chan promotionResult, 1)
			go func() {
				ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
				defer cancel()
				at, err := promoted(ctx, victim)
				promotion <- promotionResult{at, err}
			}()
			var promotedAt, last503 time.Time
			var n503, n200 int
			var slowest time.Duration
			for i := 0; ; i++ {
				start := time.Now()
				st := apiCall(t, b, c.urls[i%2]).StatusCode
				slowest = max(slowest, time.Since(start))
				switch st {
				case http.StatusOK:
					n200++
				case http.StatusServiceUnavailable:
					n503++
					last503 = time.Now()
				default:
					t.Fatalf("%v after the master was killed, instance %d: %d, want 200 or 503",
						time.Since(killed).Round(time.Millisecond), i%2, st)
				}
				select {
				case r := <-promotion:
					if r.err != nil {
						t.Fatal(r.err)
					}
					promotedAt = r.at
				default:
				}
				now := time.Now()
				if !promotedAt.IsZero() && (now.Sub(promotedAt) > 10*time.Second ||
					now.Sub(promotedAt) > 2500*time.Millisecond && now.Sub(last503) > time.Second) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			recovery := last503.Sub(promotedAt)
			t.Logf("%s: replica promoted %v after the master was killed; last 503 %v after the promotion (%d × 503, %d × 200, slowest request %v)",
				topology, promotedAt.Sub(killed).Round(time.Millisecond), recovery.Round(time.Millisecond),
				n503, n200, slowest.Round(time.Millisecond))
			if n503 == 0 {
				t.Errorf("no 503: the failover went unseen, so the test proved nothing")
			}
			if recovery > 2*time.Second {
				t.Errorf("503 until %v after the promotion, want at most 2s", recovery)
			}
			if slowest > 3500*time.Millisecond {
				t.Errorf("a request took %v", slowest)
			}
		})
	}
}

// sessionRecords counts the session records on each master.
func sessionRecords(t *testing.T, masters []string) []int {
	t.Helper()
	n := make([]int, len(masters))
	for i, addr := range masters {
		rc := redis.NewClient(&redis.Options{Addr: addr})
		keys, err := rc.Keys(context.Background(), "caddy-oidc:s:*").Result()
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		n[i] = len(keys)
	}
	return n
}
