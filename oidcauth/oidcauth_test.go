package oidcauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
	"github.com/oidcgate/caddy-oidc/internal/testop"
	"go.uber.org/zap"
)

func TestSignedInRequestSetsUserPlaceholdersAndSession(t *testing.T) {
	h := newTestHandler(t, &Handler{})
	s := testSession(time.Now(), 100, 100)
	r := signedInRequest(t, h, s)
	next := &recordingNext{}
	if err := h.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
		t.Fatal(err)
	}
	if next.r == nil {
		t.Fatal("next handler not called")
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	for k, want := range map[string]string{
		"http.auth.user.id":             "user-1",
		"http.auth.user.email":          "alice@example.com",
		"http.auth.user.email_verified": "true",
		"http.auth.user.age":            "42",
	} {
		if got, _ := repl.GetString(k); got != want {
			t.Errorf("{%s} = %q, want %q", k, got, want)
		}
	}
	if _, ok := repl.Get("http.auth.user.groups"); ok {
		t.Error("array claims are not top-level scalars")
	}
	got, ok := SessionFromRequest(next.r)
	if !ok || got.Subject() != "user-1" || got.AccessToken() != s.AccessToken() {
		t.Fatalf("SessionFromRequest = %v, %v", got, ok)
	}
}

func TestSessionFormattingRevealsNoToken(t *testing.T) {
	s := testSession(time.Now(), 10, 40)
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(f, s)
		if strings.Contains(out, s.AccessToken()) || strings.Contains(out, s.RefreshToken()) || strings.Contains(out, s.RawIDToken()) {
			t.Errorf("%s prints a token: %s", f, out)
		}
	}
}

func TestSessionEndsAfterAbsoluteLifetime(t *testing.T) {
	start := time.Now()
	clock := newTestClock(start)
	h := newTestHandler(t, &Handler{SessionLifetime: caddy.Duration(time.Hour), now: clock.Now})
	s := testSession(start, 10, 10)
	for _, c := range []struct {
		at   time.Duration
		want int
	}{{59 * time.Minute, 200}, {61 * time.Minute, 401}} {
		clock.Set(start.Add(c.at))
		rec := httptest.NewRecorder()
		r := signedInRequest(t, h, s)
		r.Header.Set("Accept", "application/json")
		_ = h.ServeHTTP(rec, r, &recordingNext{})
		if got := statusOf200(rec); got != c.want {
			t.Errorf("after %s: %d, want %d", c.at, got, c.want)
		}
	}
}

func TestSessionEndsAfterIdleTimeoutAndUseExtendsIt(t *testing.T) {
	start := time.Now()
	clock := newTestClock(start)
	h := newTestHandler(t, &Handler{IdleTimeout: caddy.Duration(30 * time.Minute), now: clock.Now})
	s := testSession(start, 10, 10)
	r := signedInRequest(t, h, s)
	old := caddyRequest(r) // the same cookies, for later: oidc_auth takes them out of r

	// Used after 20 minutes: still valid, and the cookie is renewed.
	clock.Set(start.Add(20 * time.Minute))
	rec := httptest.NewRecorder()
	_ = h.ServeHTTP(rec, r, &recordingNext{})
	if statusOf200(rec) != 200 || len(rec.Result().Cookies()) == 0 {
		t.Fatalf("after 20m: %d with %d cookies, want 200 and a renewed cookie", rec.Code, len(rec.Result().Cookies()))
	}
	renewed := caddyRequest(httptest.NewRequest("GET", "http://example.com/", nil))
	for _, c := range rec.Result().Cookies() {
		renewed.AddCookie(c)
	}
	renewed.Header.Set("Accept", "application/json")

	// 40 minutes after sign-in but 20 after last use: valid with the
	// renewed cookie, not with the old one.
	clock.Set(start.Add(40 * time.Minute))
	rec = httptest.NewRecorder()
	_ = h.ServeHTTP(rec, renewed, &recordingNext{})
	if statusOf200(rec) != 200 {
		t.Fatalf("renewed cookie after 40m: %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	old.Header.Set("Accept", "application/json")
	_ = h.ServeHTTP(rec, old, &recordingNext{})
	if statusOf200(rec) != 401 {
		t.Fatalf("old cookie idle for 40m: %d, want 401", rec.Code)
	}
}

// statusOf200 reads a recorder's status, counting "nothing written" as the
// 200 the next handler would have sent.
func statusOf200(rec *httptest.ResponseRecorder) int {
	if !rec.Flushed && rec.Body.Len() == 0 && rec.Code == 200 {
		return 200
	}
	return rec.Code
}

func TestUserinfoServesClaimsAndRawIDTokenButNoOtherToken(t *testing.T) {
	h := newTestHandler(t, &Handler{})
	s := testSession(time.Now(), 10, 80)
	r := signedInRequest(t, h, s)
	r.URL.Path = "/oauth2/userinfo"
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, r, &recordingNext{}); err != nil {
		t.Fatal(err)
	}
	var body struct {
		Sub        string         `json:"sub"`
		IDToken    map[string]any `json:"idToken"`
		RawIDToken string         `json:"rawIdToken"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Sub != "user-1" || body.IDToken["email"] != "alice@example.com" || body.RawIDToken != s.RawIDToken() {
		t.Fatalf("userinfo = %s", rec.Body)
	}
	if strings.Contains(rec.Body.String(), s.AccessToken()) || strings.Contains(rec.Body.String(), s.RefreshToken()) {
		t.Fatal("userinfo contains the access or refresh token")
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Error("userinfo is cacheable")
	}

	rec = httptest.NewRecorder()
	anon := caddyRequest(httptest.NewRequest(http.MethodGet, "http://example.com/oauth2/userinfo", nil))
	_ = h.ServeHTTP(rec, anon, &recordingNext{})
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("userinfo without a session: %d", rec.Code)
	}
}

func TestValidateRefusesReservedAuthParamsAndWeakAlgorithms(t *testing.T) {
	for _, h := range []*Handler{
		{ProviderConfig: ProviderConfig{AuthParams: map[string]string{"nonce": "fixed"}}},
		{ProviderConfig: ProviderConfig{AuthParams: map[string]string{"code_challenge_method": "plain"}}},
		{ProviderConfig: ProviderConfig{SigningAlgs: []string{"none"}}},
		{ProviderConfig: ProviderConfig{SigningAlgs: []string{"HS256"}}},
		{Unauthenticated: "maybe"},
		{RedirectURL: "ftp://x/cb"},
	} {
		ctxH := *h
		if ctxH.Issuer == "" {
			ctxH.Issuer = "http://127.0.0.1:1"
		}
		ctxH.ClientID = "c"
		ctxH.SessionKeys = []string{testKey()}
		ctxH.storage = &certmagic.FileStorage{Path: t.TempDir()}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
		err := ctxH.provision(ctx, zap.NewNop())
		if err == nil {
			err = ctxH.Validate()
		}
		cancel()
		if err == nil {
			t.Errorf("%+v accepted", *h)
		}
	}
}

// TestIdleTouchCannotBringAnEndedSessionBack: with an idle timeout, a
// request that moves a server-side session's last-seen time forward writes
// it back. If a logout deleted the session meanwhile, that write must not
// recreate it; the request is then signed out too.
func TestIdleTouchCannotBringAnEndedSessionBack(t *testing.T) {
	rs := redistest.Start(t)
	for _, cfg := range []*SessionStoreConfig{
		{Type: "memory"},
		{Type: "redis", Redis: &RedisConfig{Addresses: []string{rs.Addr()}}},
	} {
		t.Run(cfg.Type, func(t *testing.T) {
			h := newTestHandler(t, &Handler{SessionStore: cfg, IdleTimeout: caddy.Duration(30 * time.Minute)})
			start := time.Now()
			r := signedInRequest(t, h, testSession(start, 10, 10))
			s, err := h.loadSession(r)
			if err != nil || s == nil {
				t.Fatalf("no session: %v", err)
			}
			// The request read the session; a logout deletes it now...
			if err := h.store.Delete(httptest.NewRecorder(), caddyRequest(r), s); err != nil {
				t.Fatal(err)
			}
			// ...and the request's touch comes after.
			err = h.store.Update(httptest.NewRecorder(), r, s, s.touched(start.Add(10*time.Minute)))
			if !errors.Is(err, errSessionGone) {
				t.Fatalf("touch after logout: %v, want errSessionGone", err)
			}
			if again, err := h.loadSession(caddyRequest(r)); err != nil || again != nil {
				t.Fatalf("after the touch the session is back (%v)", err)
			}

		})
	}
}

// TestSessionCacheMatchesEveryChunk: decoded sessions are cached by their
// sealed cookie; a request whose first chunk matches a cached session but
// whose later chunks were changed is not that session (the whole sealed
// value is authenticated, not its first part).
func TestSessionCacheMatchesEveryChunk(t *testing.T) {
	h := newTestHandler(t, &Handler{})
	r := signedInRequest(t, h, testSession(time.Now(), 6000, 1200))
	if s, _ := h.loadSession(caddyRequest(r)); s == nil {
		t.Fatal("no session")
	}
	var cookies []*http.Cookie
	for _, c := range r.Cookies() {
		cookies = append(cookies, c)
	}
	if len(cookies) < 2 {
		t.Fatalf("%d cookies, want a chunked session", len(cookies))
	}
	for i := 1; i < len(cookies); i++ {
		tampered := httptest.NewRequest(http.MethodGet, "http://example.com/app", nil)
		for j, c := range cookies {
			c := *c
			if j == i {
				v := []byte(c.Value)
				v[len(v)/2] ^= 'A' ^ 'B'
				if v[len(v)/2] == c.Value[len(v)/2] {
					v[len(v)/2] = 'x'
				}
				c.Value = string(v)
			}
			tampered.AddCookie(&c)
		}
		if s, err := h.loadSession(caddyRequest(tampered)); s != nil || err != nil {
			t.Fatalf("chunk %d tampered after caching: the session was served (%v)", i, err)
		}
	}
}

// TestLoginStateExpiresAfterTenMinutes: a callback more than ten minutes
// after its sign-in started is refused, one within them accepted.
func TestLoginStateExpiresAfterTenMinutes(t *testing.T) {
	p, err := testop.New(testop.Config{ClientID: "client"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	start := time.Now()
	clock := newTestClock(start)
	h := newTestHandler(t, &Handler{ProviderConfig: ProviderConfig{Issuer: p.Issuer(), ClientSecret: p.ClientSecret()}, now: clock.Now})
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		after time.Duration
		want  int
	}{{9 * time.Minute, http.StatusSeeOther}, {11 * time.Minute, http.StatusBadRequest}} {
		clock.Set(start)
		login := caddyRequest(httptest.NewRequest(http.MethodGet, "http://example.com/oauth2/login", nil))
		rec := httptest.NewRecorder()
		_ = h.ServeHTTP(rec, login, &recordingNext{})
		if rec.Code != http.StatusFound {
			t.Fatalf("login: %d", rec.Code)
		}
		resp, err := noFollow.Get(rec.Header().Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cb, _ := url.Parse(resp.Header.Get("Location"))
		callback := caddyRequest(httptest.NewRequest(http.MethodGet, cb.RequestURI(), nil))
		callback.Host = "example.com"
		for _, ck := range rec.Result().Cookies() {
			callback.AddCookie(ck)
		}
		clock.Set(start.Add(c.after))
		rec = httptest.NewRecorder()
		_ = h.ServeHTTP(rec, callback, &recordingNext{})
		if rec.Code != c.want {
			t.Fatalf("callback %s after the sign-in started: %d, want %d\n%s", c.after, rec.Code, c.want, rec.Body)
		}
	}
}

// TestAccessTokenWithoutExpiresIn: RFC 6749 5.1 does not require
// expires_in. Such a token expires at its JWT exp, else after the
// configured lifetime, else never, so that token_inject knows when to
// refresh it.
func TestAccessTokenWithoutExpiresIn(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	said := now.Add(time.Hour)
	jwt := fakeJWT(`{"exp":1800000600}`)
	for _, c := range []struct {
		lifetime time.Duration
		said     time.Time
		token    string
		want     time.Time
	}{
		{0, said, jwt, said},
		{0, time.Time{}, jwt, time.Unix(1_800_000_600, 0)},
		{time.Minute, time.Time{}, "opaque", now.Add(time.Minute)},
		{0, time.Time{}, "opaque", time.Time{}},
		{time.Minute, time.Time{}, fakeJWT(`{"sub":"x"}`), now.Add(time.Minute)},
	} {
		p := &oidcProvider{cfg: ProviderConfig{AccessTokenLifetime: caddy.Duration(c.lifetime)}}
		if got := p.accessTokenExpiry(c.said, c.token, now); !got.Equal(c.want) {
			t.Errorf("lifetime %s, said %v, token %.20q: %v, want %v", c.lifetime, c.said, c.token, got, c.want)
		}
	}
}
