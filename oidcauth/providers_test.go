package oidcauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
	"github.com/oidcgate/caddy-oidc/internal/rules"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// newProvidersHandler provisions a Handler with one named provider per
// test provider.
func newProvidersHandler(t *testing.T, h *Handler, ops map[string]*testop.Provider) (*Handler, error) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	for name, op := range ops {
		h.Providers = append(h.Providers, &NamedProvider{Name: name, ProviderConfig: ProviderConfig{
			Issuer: op.Issuer(), ClientID: op.ClientID(), ClientSecret: op.ClientSecret(),
		}})
	}
	h.SessionKeys = []string{testKey()}
	h.storage = &certmagic.FileStorage{Path: t.TempDir()}
	if err := h.provision(ctx, zap.NewNop()); err != nil {
		return nil, err
	}
	return h, h.Validate()
}

func testProvider(t *testing.T) *testop.Provider {
	t.Helper()
	p, err := testop.New(testop.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestProviderConfigurationIsChecked: the single-provider settings and
// provider blocks do not mix; names are unique and plain; rules name only
// configured providers.
func TestProviderConfigurationIsChecked(t *testing.T) {
	a, b := testProvider(t), testProvider(t)
	for _, c := range []struct {
		name string
		h    *Handler
		ops  map[string]*testop.Provider
		want string
	}{
		{"both forms", &Handler{ProviderConfig: ProviderConfig{Issuer: a.Issuer(), ClientID: "x"}}, map[string]*testop.Provider{"b": b}, "not both"},
		{"a name with a space", &Handler{}, map[string]*testop.Provider{"a b": a}, "a name of letters, digits, - and _ is required"},
		{"an unknown provider in a rule", &Handler{Allow: []rules.Rule{{Conditions: []rules.Condition{{Provider: []string{"c"}}}}}},
			map[string]*testop.Provider{"a": a, "b": b}, `rules: provider "c"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := newProvidersHandler(t, c.h, c.ops)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
	dup := &Handler{Providers: []*NamedProvider{
		{Name: "a", ProviderConfig: ProviderConfig{Issuer: a.Issuer(), ClientID: "x"}},
		{Name: "a", ProviderConfig: ProviderConfig{Issuer: b.Issuer(), ClientID: "y"}},
	}}
	if _, err := newProvidersHandler(t, dup, nil); err == nil || !strings.Contains(err.Error(), "named twice") {
		t.Fatalf("two providers of one name: %v", err)
	}
	// A rule about providers needs provider blocks.
	single := &Handler{Allow: []rules.Rule{{Conditions: []rules.Condition{{Provider: []string{"a"}}}}}}
	single.Issuer, single.ClientID = a.Issuer(), "x"
	if _, err := newProvidersHandler(t, single, nil); err == nil || !strings.Contains(err.Error(), `rules: provider "a"`) {
		t.Fatalf("a provider rule with one provider: %v", err)
	}
}

// startLoginAt starts a sign-in at the handler's login path and returns
// the login cookie and the state the authorization request carries.
func startLoginAt(t *testing.T, h *Handler, query string) (*http.Cookie, url.Values) {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, caddyRequest(httptest.NewRequest(http.MethodGet, "http://example.com/oauth2/login"+query, nil)), nil); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusFound {
		t.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	loc, _ := url.Parse(rec.Header().Get("Location"))
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login set %d cookies", len(cookies))
	}
	return cookies[0], loc.Query()
}

// TestCallbackRefusesAnAnswerNamingAnotherIssuer (RFC 9207 2.4): an
// authorization response whose iss is not the provider the sign-in went to
// is refused before its code is redeemed anywhere.
func TestCallbackRefusesAnAnswerNamingAnotherIssuer(t *testing.T) {
	a, b := testProvider(t), testProvider(t)
	h, err := newProvidersHandler(t, &Handler{}, map[string]*testop.Provider{"a": a, "b": b})
	if err != nil {
		t.Fatal(err)
	}
	cookie, q := startLoginAt(t, h, "?provider=a")
	if !strings.HasPrefix(q.Get("redirect_uri"), "http://example.com/") {
		t.Fatalf("authorization request %v", q)
	}
	callback := func(iss string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "http://example.com/oauth2/callback?code=abc&state="+q.Get("state")+"&iss="+url.QueryEscape(iss), nil)
		r.AddCookie(cookie)
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, caddyRequest(r), nil); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	before := a.TokenCalls() + b.TokenCalls()
	rec := callback(b.Issuer())
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "another identity provider") {
		t.Fatalf("callback naming provider b for a sign-in at a: %d %s", rec.Code, rec.Body)
	}
	if n := a.TokenCalls() + b.TokenCalls() - before; n != 0 {
		t.Fatalf("the code was redeemed %d times", n)
	}
}

// TestSessionsKeepTheirProvider: a session's record names its provider;
// read back, the session is that provider's, and a session whose provider
// is no longer configured, or whose ID token is of another provider,
// does not open.
func TestSessionsKeepTheirProvider(t *testing.T) {
	a, b := testProvider(t), testProvider(t)
	h, err := newProvidersHandler(t, &Handler{}, map[string]*testop.Provider{"a": a, "b": b})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s := testSession(now, 0, 100)
	s.providerName = "b"
	// testSession's ID token is of issuer http://op: of neither provider.
	plain, err := s.marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := unmarshalSession(plain)
	if err != nil {
		t.Fatal(err)
	}
	if back.providerName != "b" {
		t.Fatalf("provider read back %q, want b", back.providerName)
	}
	if err := h.adopt(back); err == nil || !strings.Contains(err.Error(), "not of provider") {
		t.Fatalf("a session of b whose ID token is of another issuer: %v", err)
	}
	back.providerName = "gone"
	if err := h.adopt(back); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("a session of a provider no longer configured: %v", err)
	}

	payload := `{"iss":"` + b.Issuer() + `","sub":"user-1","aud":"` + b.ClientID() + `"}`
	s = testSession(now, 0, 100)
	s.rawIDToken, s.providerName = fakeJWT(payload), "b"
	if err := s.deriveClaims(); err != nil {
		t.Fatal(err)
	}
	if plain, err = s.marshal(); err != nil {
		t.Fatal(err)
	}
	if back, err = unmarshalSession(plain); err != nil {
		t.Fatal(err)
	}
	if err := h.adopt(back); err != nil {
		t.Fatal(err)
	}
	if back.provider != h.providerByName["b"] || back.Provider() != "b" {
		t.Fatalf("adopted session's provider %v", back.provider)
	}
	if v, _ := back.userPlaceholder("provider"); v != "b" {
		t.Fatalf("{http.auth.user.provider} = %v, want b", v)
	}
	if !rules.HasProvider(back.ruleClaims(), []string{"b"}) || rules.HasProvider(back.ruleClaims(), []string{"a"}) {
		t.Fatal("the rules do not see the session's provider")
	}
	// The same subject at two providers is two users in the store's
	// indexes.
	if h.providerByName["a"].indexKey("user-1") == h.providerByName["b"].indexKey("user-1") {
		t.Fatal("index keys of one subject at two providers are equal")
	}
}

// TestAnExpiredSessionIsCountedOnce: a session past its lifetime is
// counted as an expired logout the first time it is presented, and
// forgotten, so that presenting it again counts nothing more.
func TestAnExpiredSessionIsCountedOnce(t *testing.T) {
	start := time.Now()
	clock := newTestClock(start)
	h := newTestHandler(t, &Handler{SessionLifetime: caddy.Duration(time.Hour), now: clock.Now})
	s := testSession(start, 10, 10)
	r := signedInRequest(t, h, s)
	expired := metrics.Logouts.WithLabelValues("default", logoutExpired)
	before := counterValue(t, expired)
	clock.Set(start.Add(61 * time.Minute))
	for i := range 2 {
		rec := httptest.NewRecorder()
		req := caddyRequest(r.Clone(r.Context()))
		req.Header.Set("Accept", "application/json")
		_ = h.ServeHTTP(rec, req, &recordingNext{})
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("request %d after the lifetime: %d", i+1, rec.Code)
		}
		if got := counterValue(t, expired) - before; got != 1 {
			t.Fatalf("after request %d: %v expired logouts, want 1", i+1, got)
		}
	}
}

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
