package sessionstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
)

// readmeACL is the README's ACL SETUSER line, for the user name, password
// and key prefix given, as arguments for Do. The README is what operators
// copy, so that is the line under test.
func readmeACL(t testing.TB, user, password, prefix string) []any {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.Lines(string(b)) {
		if strings.HasPrefix(l, "ACL SETUSER ") {
			if line != "" {
				t.Fatal("README.md has more than one ACL SETUSER line")
			}
			line = strings.TrimSpace(l)
		}
	}
	if line == "" {
		t.Fatal("README.md has no ACL SETUSER line")
	}
	var args []any
	for i, f := range strings.Fields(line) {
		switch {
		case i == 2:
			f = user
		case strings.HasPrefix(f, ">"):
			f = ">" + password
		default:
			f = strings.ReplaceAll(f, "caddy-oidc:", prefix)
		}
		args = append(args, f)
	}
	return args
}

// deniedTo returns what Redis's ACL log holds about user: commands, keys
// or channels refused to it.
func deniedTo(ctx context.Context, raw *redis.Client, user string) ([]string, error) {
	entries, err := raw.ACLLog(ctx, 100).Result()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.Username == user {
			out = append(out, fmt.Sprintf("%s %q (%s)", e.Reason, e.Object, e.Context))
		}
	}
	return out, nil
}

var aclUsers atomic.Int64

// aclHarness is newRedisHarness for a store that signs in as a user created
// with the README's ACL line for the test's key prefix, with its local cache
// on; the test fails if Redis refused that user anything.
func aclHarness(addrs ...string) func(t *testing.T) harness {
	return func(t *testing.T) harness {
		t.Helper()
		ctx := context.Background()
		raw := redis.NewClient(&redis.Options{Addr: addrs[0]})
		t.Cleanup(func() { raw.Close() })
		user := fmt.Sprintf("caddy-%d", aclUsers.Add(1))
		prefix := "caddy-oidc:" + t.Name() + ":"
		if err := raw.Do(ctx, readmeACL(t, user, "pw", prefix)...).Err(); err != nil {
			t.Fatalf("the README's ACL line: %v", err)
		}
		// A short cache TTL makes the subscription's keep-alive PING (sent
		// after half of it in silence) part of every test.
		r, err := NewRedis(RedisOptions{Addrs: addrs, Username: user, Password: "pw", KeyPrefix: prefix,
			LocalCacheTTL: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			r.Close()
			denied, err := deniedTo(ctx, raw, user)
			if err != nil {
				t.Errorf("reading the ACL log: %v", err)
			}
			for _, d := range denied {
				t.Errorf("Redis refused the README's ACL user: %s", d)
			}
		})
		waitLive(t, r)
		return harness{store: r, now: time.Now, advance: time.Sleep}
	}
}

// TestRedisACLUserReachesOnlyItsKeys: the README's ACL line grants the
// store's own keys and channel, and nothing else.
func TestRedisACLUserReachesOnlyItsKeys(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	if err := raw.Do(ctx, readmeACL(t, "caddy", "pw", "caddy-oidc:")...).Err(); err != nil {
		t.Fatal(err)
	}
	as := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "caddy", Password: "pw"})
	defer as.Close()
	if err := as.Set(ctx, "caddy-oidc:s:{x}", "v", 0).Err(); err != nil {
		t.Fatalf("own key: %v", err)
	}
	for what, err := range map[string]error{
		"another key":     as.Get(ctx, "other:key").Err(),
		"another channel": as.Publish(ctx, "other", "x").Err(),
		"FLUSHALL":        as.FlushAll(ctx).Err(),
		"KEYS":            as.Keys(ctx, "*").Err(),
		"CONFIG":          as.ConfigGet(ctx, "*").Err(),
	} {
		var reply redis.Error
		if !errors.As(err, &reply) || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("%s: %v, want NOPERM", what, err)
		}
	}
}
