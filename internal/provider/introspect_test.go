package provider

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// introspector is a Provider for op's client with an introspection
// timeout, discovered.
func introspector(t *testing.T, op *testop.Provider, auth ClientAuth, timeout time.Duration) *State {
	t.Helper()
	p := New(Config{Issuer: op.Issuer(), ClientID: op.ClientID(), Auth: auth, IntrospectionTimeout: timeout})
	st, err := p.Get(t.Context())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return st
}

func TestIntrospectActiveToken(t *testing.T) {
	op := startTestOP(t, testop.Config{})
	st := introspector(t, op, ClientAuth{Secret: op.ClientSecret()}, 0)
	tok := op.MintOpaqueAccessToken(testop.AccessTokenSpec{Subject: "svc", Scope: "orders:read", TTL: time.Hour,
		Claims: map[string]any{"groups": []string{"ops"}}})

	in, err := st.Introspect(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if !in.Active || in.Subject != "svc" || in.Claims["scope"] != "orders:read" || in.Claims["client_id"] != op.ClientID() {
		t.Errorf("answer %+v", in)
	}
	if d := time.Until(in.Expiry); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expiry %v away, want an hour", d)
	}
	if !strings.Contains(string(in.ClaimsJSON), `"groups":["ops"]`) {
		t.Errorf("ClaimsJSON %s", in.ClaimsJSON)
	}
	form, header, method := op.LastIntrospectionRequest()
	if form.Get("token") != tok || form.Get("token_type_hint") != "access_token" || method != testop.ClientSecretBasic ||
		!strings.HasPrefix(header.Get("Authorization"), "Basic ") || form.Has("client_secret") {
		t.Errorf("request %v %v by %q", form, header, method)
	}
}

func TestIntrospectInactiveToken(t *testing.T) {
	op := startTestOP(t, testop.Config{})
	st := introspector(t, op, ClientAuth{Secret: op.ClientSecret()}, 0)
	revoked := op.MintOpaqueAccessToken(testop.AccessTokenSpec{})
	op.RevokeAccessToken(revoked)
	for name, tok := range map[string]string{"unknown": "no-such-token", "revoked": revoked} {
		in, err := st.Introspect(t.Context(), tok)
		if err != nil || in.Active || in.Subject != "" || !in.Expiry.IsZero() {
			t.Errorf("%s: %+v, %v; want inactive", name, in, err)
		}
	}
}

// TestIntrospectFailuresAreUnavailable: whatever keeps the provider from
// answering, the token could not be checked; that is not the caller's
// fault, so it is ErrUnavailable (503), not a refusal (401).
func TestIntrospectFailuresAreUnavailable(t *testing.T) {
	op := startTestOP(t, testop.Config{})
	st := introspector(t, op, ClientAuth{Secret: op.ClientSecret()}, 300*time.Millisecond)
	tok := op.MintOpaqueAccessToken(testop.AccessTokenSpec{})
	for _, status := range []int{http.StatusUnauthorized, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		op.SetIntrospectionStatus(status)
		if _, err := st.Introspect(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
			t.Errorf("status %d: %v, want ErrUnavailable", status, err)
		}
	}
	op.SetIntrospectionStatus(0)

	// A client that is refused is refused for every token: unavailable
	// too, not the caller's fault.
	wrong := introspector(t, op, ClientAuth{Secret: "wrong"}, 0)
	if _, err := wrong.Introspect(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a wrong client secret: %v", err)
	}

	op.SetIntrospectionDelay(10 * time.Second)
	start := time.Now()
	_, err := st.Introspect(t.Context(), tok)
	if !errors.Is(err, ErrUnavailable) || time.Since(start) > 2*time.Second {
		t.Errorf("a hanging provider: %v after %v, want ErrUnavailable after the 300ms timeout", err, time.Since(start))
	}
	op.SetIntrospectionDelay(0)

	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html>maintenance</html>"))
	}))
	defer notJSON.Close()
	if err := op.ChangeDiscovery(map[string]any{"introspection_endpoint": notJSON.URL}); err != nil {
		t.Fatal(err)
	}
	if _, err := introspector(t, op, ClientAuth{Secret: op.ClientSecret()}, 0).Introspect(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Errorf("an answer that is not JSON: %v", err)
	}
	op.RestoreDiscovery()

	op.Close()
	if _, err := st.Introspect(t.Context(), tok); !errors.Is(err, ErrUnavailable) {
		t.Errorf("an unreachable provider: %v", err)
	}
}

func TestIntrospectWithoutAnEndpoint(t *testing.T) {
	op := startTestOP(t, testop.Config{})
	if err := op.ChangeDiscovery(map[string]any{"introspection_endpoint": nil}); err != nil {
		t.Fatal(err)
	}
	st := introspector(t, op, ClientAuth{Secret: op.ClientSecret()}, 0)
	if _, err := st.Introspect(t.Context(), "tok"); !errors.Is(err, ErrNoIntrospection) {
		t.Errorf("%v, want ErrNoIntrospection", err)
	}
	if op.IntrospectionCalls() != 0 {
		t.Error("the endpoint was called all the same")
	}
}

// TestIntrospectionAuthFollowsTheProvidersList: where the provider lists
// other methods for introspection than the token endpoint's, one of those
// is used.
func TestIntrospectionAuthFollowsTheProvidersList(t *testing.T) {
	op := startTestOP(t, testop.Config{TokenAuthMethods: []string{testop.ClientSecretBasic, testop.ClientSecretPost}})
	if err := op.ChangeDiscovery(map[string]any{
		"token_endpoint_auth_methods_supported":         []string{ClientSecretPost},
		"introspection_endpoint_auth_methods_supported": []string{ClientSecretBasic, PrivateKeyJWT},
	}); err != nil {
		t.Fatal(err)
	}
	st := introspector(t, op, ClientAuth{Secret: op.ClientSecret()}, 0)
	if st.TokenAuth != ClientSecretPost || st.IntrospectionAuth != ClientSecretBasic {
		t.Fatalf("token %s, introspection %s", st.TokenAuth, st.IntrospectionAuth)
	}
	if in, err := st.Introspect(t.Context(), op.MintOpaqueAccessToken(testop.AccessTokenSpec{})); err != nil || !in.Active {
		t.Fatalf("%+v %v", in, err)
	}
	if _, _, method := op.LastIntrospectionRequest(); method != testop.ClientSecretBasic {
		t.Errorf("introspected with %s", method)
	}

	for _, c := range []struct {
		token, want string
		supported   []string
	}{
		{ClientSecretPost, ClientSecretPost, nil},
		{ClientSecretPost, ClientSecretPost, []string{ClientSecretBasic, ClientSecretPost}},
		{ClientSecretPost, ClientSecretBasic, []string{PrivateKeyJWT, ClientSecretBasic}},
		{ClientSecretPost, ClientSecretPost, []string{PrivateKeyJWT}}, // none fits
	} {
		if got := (ClientAuth{Secret: "s"}).introspectionMethod(c.token, c.supported); got != c.want {
			t.Errorf("token %s, supported %v: %s, want %s", c.token, c.supported, got, c.want)
		}
	}
}

func TestIntrospectWithAClientAssertion(t *testing.T) {
	op := startTestOP(t, testop.Config{ClientSecret: longSecret, TokenAuthMethods: []string{ClientSecretJWT}})
	st := introspector(t, op, ClientAuth{Secret: longSecret}, 0)
	if in, err := st.Introspect(t.Context(), op.MintOpaqueAccessToken(testop.AccessTokenSpec{})); err != nil || !in.Active {
		t.Fatalf("%+v %v", in, err)
	}
	if form, _, method := op.LastIntrospectionRequest(); method != testop.ClientSecretJWT || form.Get("client_assertion") == "" {
		t.Errorf("method %s, form %v", method, form)
	}
}
