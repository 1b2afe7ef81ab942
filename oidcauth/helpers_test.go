package oidcauth

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/caddyreq"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

func testKey() string {
	k := make([]byte, sessionKeySize)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// newTestHandler provisions a Handler for unit tests and benchmarks, with a
// test provider as its issuer.
func newTestHandler(tb testing.TB, h *Handler) *Handler {
	tb.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	tb.Cleanup(cancel)
	if h.Issuer == "" {
		p, err := testop.New(testop.Config{ClientID: "client"})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(p.Close)
		h.Issuer = p.Issuer()
	}
	if h.ClientID == "" {
		h.ClientID = "client"
	}
	if len(h.SessionKeys) == 0 {
		h.SessionKeys = []string{testKey()}
	}
	if h.storage == nil {
		h.storage = &certmagic.FileStorage{Path: tb.TempDir()}
	}
	if err := h.provision(ctx, zap.NewNop()); err != nil {
		tb.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		tb.Fatal(err)
	}
	// Discovery runs in the background and reads the handler's clock.
	// Discovering here, serialized with it, means that a reachable
	// provider's is over before a test sets h.now.
	_, _ = h.defaultProvider().op.Get(ctx)
	return h
}

// testClock is a clock a test moves while the handler's goroutines (the
// provider's discovery) read it. Set it as the handler's now before
// provisioning.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fakeJWT builds a compact JWT-shaped string with the given payload; the
// session layer never checks signatures (the callback did).
func fakeJWT(payload string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"RS256","kid":"k1"}`)) + "." +
		enc.EncodeToString([]byte(payload)) + "." + enc.EncodeToString(make([]byte, 256))
}

func testSession(now time.Time, idTokenPadding, accessTokenSize int) *Session {
	payload := `{"iss":"http://op","sub":"user-1","aud":"client","email":"alice@example.com","name":"Alice Example","email_verified":true,"age":42,"groups":["a","b"],"pad":"` + strings.Repeat("x", idTokenPadding) + `"}`
	s := &Session{
		signInID:     randomString(16),
		subject:      "user-1",
		rawIDToken:   fakeJWT(payload),
		accessToken:  randomString(accessTokenSize * 3 / 4),
		refreshToken: randomString(48),
		tokenExpiry:  now.Add(time.Hour),
		createdAt:    now,
		lastSeen:     now,
	}
	if err := s.deriveClaims(); err != nil {
		panic(err)
	}
	return s
}

// signedInRequest returns a request carrying s's cookies, as Caddy would
// hand it to a handler (with a replacer and vars in its context).
func signedInRequest(tb testing.TB, h *Handler, s *Session) *http.Request {
	tb.Helper()
	setup := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
	rec := httptest.NewRecorder()
	if s.provider == nil {
		s.owner, s.provider = h, h.defaultProvider()
	}
	if err := h.store.Save(rec, setup, s); err != nil {
		tb.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "http://example.com/app", nil)
	for _, c := range rec.Result().Cookies() {
		r.AddCookie(c)
	}
	return caddyRequest(r)
}

// caddyRequest gives r what Caddy's server gives every request before the
// handlers run: headers of its own (as parsed from the wire), a replacer
// with the HTTP placeholders registered, and a vars map holding the client
// IP and trusted-proxy flag.
func caddyRequest(r *http.Request) *http.Request {
	return caddyreq.WithContext(r.Clone(r.Context()))
}

// recordingNext is a next handler that remembers the request it was given.
type recordingNext struct{ r *http.Request }

func (n *recordingNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.r = r
	return nil
}
