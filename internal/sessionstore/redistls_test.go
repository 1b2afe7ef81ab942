package sessionstore

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
)

// TestRedisOverTLS: against a redis-server that speaks only TLS, the store
// works (its invalidation subscription too) when the certificate is
// trusted and names the server, and refuses to talk otherwise.
func TestRedisOverTLS(t *testing.T) {
	certs := redistest.NewCerts(t)
	srv := redistest.Start(t, redistest.WithTLS(certs))
	ctx := context.Background()
	for _, name := range []string{"localhost", "127.0.0.1"} {
		r, err := NewRedis(RedisOptions{Addrs: []string{srv.Addr()}, TLS: certs.ClientTLS(name), KeyPrefix: "tls:"})
		if err != nil {
			t.Fatal(err)
		}
		waitLive(t, r)
		if err := r.Put(ctx, "a", rec("v-"+name, "u", "", time.Now().Add(time.Hour))); err != nil {
			t.Fatalf("Put with server name %q: %v", name, err)
		}
		if got := mustGet(t, r, "a"); string(got.Data) != "v-"+name {
			t.Fatalf("Get with server name %q = %q", name, got.Data)
		}
		r.Close()
	}

	for _, tc := range []struct {
		name string
		tls  *tls.Config
		want string // in the error
	}{
		{"a wrong server name", certs.ClientTLS("redis.example.com"), "certificate is valid for"},
		{"a certificate from another CA", redistest.NewCerts(t).ClientTLS("localhost"), "certificate signed by unknown authority"},
		{"plain TCP", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewRedis(RedisOptions{Addrs: []string{srv.Addr()}, TLS: tc.tls, KeyPrefix: "tls:", LocalCacheTTL: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = r.Get(ctx, "a")
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Get = %v, want ErrUnavailable mentioning %q", err, tc.want)
			}
		})
	}
}
