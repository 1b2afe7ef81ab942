package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oidcgate/caddy-oidc/internal/testop"
	"github.com/oidcgate/caddy-oidc/internal/verify"
)

// startOP starts a test provider that stops when the test ends.
func startOP(t *testing.T, cfg testop.Config) *testop.Provider {
	t.Helper()
	op, err := testop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	return op
}

// configFor is the configuration of a client of op: its issuer, client
// ID and secret.
func configFor(op *testop.Provider) Config {
	return Config{Issuer: op.Issuer(), ClientID: op.ClientID(), Auth: ClientAuth{Secret: op.ClientSecret()}, Scopes: []string{"openid", "email"}}
}

// runProvider runs a Provider with cfg until the test ends, and waits for
// its first discovery.
func runProvider(t *testing.T, cfg Config) *Provider {
	t.Helper()
	p := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go p.Run(ctx)
	select {
	case <-p.Discovered():
	case <-time.After(5 * time.Second):
		t.Fatal("not discovered within 5s")
	}
	return p
}

// signIn runs an authorization-code sign-in at the provider of st and
// returns its tokens.
func signIn(t *testing.T, st *State) *Tokens {
	t.Helper()
	const redirect = "http://127.0.0.1:1/callback"
	verifier := oauth2.GenerateVerifier()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(st.AuthCodeURL(redirect, "some-state", "some-nonce", verifier, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorization answered %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	tok, err := st.Exchange(t.Context(), loc.Query().Get("code"), verifier, redirect)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

// waitFor polls cond until it holds or 5 seconds have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDiscoveryRefusesAnotherIssuer(t *testing.T) {
	op := startOP(t, testop.Config{})
	if err := op.ChangeDiscovery(map[string]any{"issuer": "https://other.example"}); err != nil {
		t.Fatal(err)
	}
	p := New(configFor(op))
	st, err := p.Get(t.Context())
	if st != nil || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), `names issuer "https://other.example"`) {
		t.Fatalf("Get = %v, %v; want refused for the issuer", st, err)
	}
	if p.Current() != nil {
		t.Error("a refused document was kept")
	}
}

// TestMultiTenantDiscoveryNeedsTenants: a document naming an issuer
// template is refused without tenants, with a message that names the
// template and the remedy; with tenants, tokens are checked against them.
func TestMultiTenantDiscoveryNeedsTenants(t *testing.T) {
	op := startOP(t, testop.Config{MultiTenant: true})
	_, err := New(configFor(op)).Get(t.Context())
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), op.IssuerTemplate()) || !strings.Contains(err.Error(), "name the tenants") {
		t.Fatalf("without tenants: %v", err)
	}

	for _, c := range []struct {
		tenants []string
		reason  string
	}{
		{[]string{testop.DefaultTenant}, ""},
		{[]string{"*"}, ""},
		{[]string{"22222222-2222-4222-8222-222222222222"}, "tenant"},
	} {
		cfg := configFor(op)
		cfg.Tenants = c.tenants
		st, err := New(cfg).Get(t.Context())
		if err != nil {
			t.Fatalf("tenants %v: %v", c.tenants, err)
		}
		tok := signIn(t, st)
		_, err = st.Verifier.IDToken(t.Context(), tok.IDToken, tok.AccessToken, "some-nonce")
		if got := verify.Reason(err); got != c.reason {
			t.Errorf("tenants %v: ID token refused for %q (%v), want %q", c.tenants, got, err, c.reason)
		}
	}
}

// TestRediscoveryAfterAKeySetMissFollowsMovedKeys: the provider moves its
// keys (and rotates them); the first token signed with the new key misses,
// which makes the key set refetch at once and the provider be discovered
// again, and the token verifies with the keys where discovery now says.
func TestRediscoveryAfterAKeySetMissFollowsMovedKeys(t *testing.T) {
	op := startOP(t, testop.Config{})
	cfg := configFor(op)
	cfg.RediscoveryInterval = time.Hour // only a miss makes it read the document again
	p := runProvider(t, cfg)
	st := p.Current()
	tok := signIn(t, st)
	if _, err := st.Verifier.IDToken(t.Context(), tok.IDToken, tok.AccessToken, "some-nonce"); err != nil {
		t.Fatal(err)
	}
	discoveries := op.DiscoveryFetches()

	moved := op.MoveKeys("rotated")
	op.RotateKeys(false)
	tok = signIn(t, st)
	if _, err := st.Verifier.IDToken(t.Context(), tok.IDToken, tok.AccessToken, "some-nonce"); err == nil {
		t.Fatal("a token of the moved keys verified with the old key set")
	}
	waitFor(t, "rediscovery", func() bool { return p.Current().Metadata.JWKSURI == moved })
	if n := op.DiscoveryFetches() - discoveries; n != 1 {
		t.Errorf("%d discoveries after one miss, want 1", n)
	}
	st = p.Current()
	if _, err := st.Verifier.IDToken(t.Context(), tok.IDToken, tok.AccessToken, "some-nonce"); err != nil {
		t.Fatalf("with the keys where discovery now says: %v", err)
	}
}

func TestRediscoveryIsPeriodic(t *testing.T) {
	op := startOP(t, testop.Config{})
	cfg := configFor(op)
	cfg.RediscoveryInterval = 20 * time.Millisecond
	p := runProvider(t, cfg)
	first := p.Current()
	if err := op.ChangeDiscovery(map[string]any{"end_session_endpoint": "https://op.example/bye"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the changed document", func() bool { return p.Current().Metadata.EndSessionEndpoint == "https://op.example/bye" })
	if st := p.Current(); st.Keys != first.Keys {
		t.Error("the key set (and its refetch limit) was replaced although jwks_uri stayed")
	}
	if st, err := p.Get(t.Context()); err != nil || st.Metadata.EndSessionEndpoint != "https://op.example/bye" {
		t.Errorf("Get after rediscovery: %v", err)
	}
}

// TestFailedRediscoveryKeepsWhatWasKnown: a provider that is down, or
// whose document turns into one that must be refused, leaves the relying
// party with what it learned before.
func TestFailedRediscoveryKeepsWhatWasKnown(t *testing.T) {
	op := startOP(t, testop.Config{})
	cfg := configFor(op)
	cfg.RediscoveryInterval = 20 * time.Millisecond
	p := runProvider(t, cfg)
	known := p.Current()
	for _, breakIt := range []func(){
		func() { op.SetDown(true) },
		func() {
			op.SetDown(false)
			_ = op.ChangeDiscovery(map[string]any{"issuer": "https://other.example", "jwks_uri": "https://other.example/keys"})
		},
		func() { _ = op.ChangeDiscovery(map[string]any{"issuer": nil}) },
	} {
		breakIt()
		n := op.DiscoveryFetches()
		waitFor(t, "two more discoveries", func() bool { return op.DiscoveryFetches() >= n+2 })
		if st, err := p.Get(t.Context()); st != known || err != nil || p.Current() != known {
			t.Fatalf("after a failed rediscovery: %v, %v", st, err)
		}
	}
}

// TestFailedFirstDiscoveryIsNotRepeatedAtOnce: a document that is read but
// cannot be used (no client authentication in common) counts as a failed
// attempt, so requests do not each fetch it again.
func TestFailedFirstDiscoveryIsNotRepeatedAtOnce(t *testing.T) {
	op := startOP(t, testop.Config{})
	if err := op.ChangeDiscovery(map[string]any{"token_endpoint_auth_methods_supported": []string{"tls_client_auth"}}); err != nil {
		t.Fatal(err)
	}
	p := New(configFor(op))
	for range 3 {
		if _, err := p.Get(t.Context()); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "tls_client_auth") {
			t.Fatalf("Get: %v", err)
		}
	}
	if n := op.DiscoveryFetches(); n != 1 {
		t.Errorf("%d discovery fetches for 3 requests in a row, want 1", n)
	}
}
