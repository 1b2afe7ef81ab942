package provider

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

const redirectURI = "http://127.0.0.1:1/oauth2/callback"

func startTestOP(t *testing.T, cfg testop.Config) *testop.Provider {
	t.Helper()
	op, err := testop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	return op
}

// discovered is a Provider for op's client, discovered.
func discovered(t *testing.T, op *testop.Provider, auth ClientAuth) *State {
	t.Helper()
	p := New(Config{Issuer: op.Issuer(), ClientID: op.ClientID(), Auth: auth, Scopes: []string{"openid", "email"}})
	st, err := p.Get(t.Context())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return st
}

// authorize runs the front channel and returns a code and its verifier.
func authorize(t *testing.T, st *State) (code, verifier string) {
	t.Helper()
	verifier = oauth2.GenerateVerifier()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(st.AuthCodeURL(redirectURI, "state", "nonce", verifier, nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorization: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code"), verifier
}

// signInAndVerify exchanges a fresh code and verifies the ID token.
func signInAndVerify(t *testing.T, st *State) *Tokens {
	t.Helper()
	code, verifier := authorize(t, st)
	tok, err := st.Exchange(t.Context(), code, verifier, redirectURI)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.IDToken == "" {
		t.Fatalf("tokens %+v", tok)
	}
	if _, err := st.Verifier.IDToken(t.Context(), tok.IDToken, tok.AccessToken, "nonce"); err != nil {
		t.Fatalf("ID token: %v", err)
	}
	return tok
}

func TestEachClientAuthMethodExchangesAndRefreshes(t *testing.T) {
	rsa, ec := rsaKey(t), ecKey(t, elliptic.P256())
	cert := certificateFor(t, rsa)
	for _, c := range []struct {
		name   string
		method string // the only one the provider announces
		auth   ClientAuth
		keys   []crypto.PublicKey
		jwks   []jose.JSONWebKey
	}{
		{name: "basic", method: ClientSecretBasic, auth: ClientAuth{Secret: longSecret}},
		{name: "post", method: ClientSecretPost, auth: ClientAuth{Secret: longSecret}},
		{name: "client_secret_jwt", method: ClientSecretJWT, auth: ClientAuth{Secret: longSecret}},
		{name: "client_secret_jwt with aud the issuer", method: ClientSecretJWT, auth: ClientAuth{Secret: longSecret, AssertionAudience: AudienceIssuer}},
		{name: "private_key_jwt RSA", method: PrivateKeyJWT, auth: ClientAuth{Key: rsa}, keys: []crypto.PublicKey{rsa.Public()}},
		{name: "private_key_jwt EC with kid", method: PrivateKeyJWT, auth: ClientAuth{Key: ec, KeyID: "ec-1"},
			jwks: []jose.JSONWebKey{{Key: rsa.Public(), KeyID: "rsa-1"}, {Key: ec.Public(), KeyID: "ec-1"}}},
		{name: "private_key_jwt with a certificate", method: PrivateKeyJWT, auth: ClientAuth{Key: rsa, Certificate: cert},
			jwks: []jose.JSONWebKey{{Key: rsa.Public(), Certificates: []*x509.Certificate{cert}}}},
		{name: "none", method: None, auth: ClientAuth{}},
	} {
		t.Run(c.name, func(t *testing.T) {
			op := startTestOP(t, testop.Config{
				ClientSecret:     longSecret,
				TokenAuthMethods: []string{c.method},
				ClientKeys:       c.keys,
				ClientJWKS:       jose.JSONWebKeySet{Keys: c.jwks},
			})
			st := discovered(t, op, c.auth)
			if st.TokenAuth != c.method {
				t.Fatalf("chose %q, want %q", st.TokenAuth, c.method)
			}
			tok := signInAndVerify(t, st)
			if got := op.LastTokenAuthMethod(); got != c.method {
				t.Errorf("the provider saw %q at the code exchange, want %q", got, c.method)
			}
			refreshed, err := st.Refresh(t.Context(), tok.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v (%s)", err, op.LastClientAuthFailure())
			}
			if refreshed.AccessToken == tok.AccessToken || op.RefreshCalls() != 1 || op.LastTokenAuthMethod() != c.method {
				t.Errorf("refresh: %d calls, method %q", op.RefreshCalls(), op.LastTokenAuthMethod())
			}
		})
	}
}

func TestDefaultMethodFollowsTheProvider(t *testing.T) {
	op := startTestOP(t, testop.Config{TokenAuthMethods: []string{ClientSecretPost}})
	st := discovered(t, op, ClientAuth{Secret: op.ClientSecret()})
	if st.TokenAuth != ClientSecretPost {
		t.Fatalf("chose %q", st.TokenAuth)
	}
	signInAndVerify(t, st)
	form, header := op.LastTokenRequest()
	if op.LastTokenAuthMethod() != ClientSecretPost || form.Get("client_secret") != op.ClientSecret() || header.Get("Authorization") != "" {
		t.Errorf("method %q, form %v", op.LastTokenAuthMethod(), form)
	}
}

func TestDiscoveryFailsWhenNoMethodFits(t *testing.T) {
	op := startTestOP(t, testop.Config{TokenAuthMethods: []string{PrivateKeyJWT}})
	p := New(Config{Issuer: op.Issuer(), ClientID: op.ClientID(), Auth: ClientAuth{Secret: "s"}})
	// Unusable, like an unreachable provider (the metadata may change), but
	// the error says why.
	_, err := p.Get(t.Context())
	if err == nil || !strings.Contains(err.Error(), "the configuration allows [client_secret_basic client_secret_post]") {
		t.Fatalf("Get = %v, want an error naming the methods", err)
	}
}

func TestUnknownKeyIsInvalidClient(t *testing.T) {
	op := startTestOP(t, testop.Config{TokenAuthMethods: []string{PrivateKeyJWT}, ClientKeys: []crypto.PublicKey{rsaKey(t).Public()}})
	st := discovered(t, op, ClientAuth{Key: ecKey(t, elliptic.P256())})
	code, verifier := authorize(t, st)
	_, err := st.Exchange(t.Context(), code, verifier, redirectURI)
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "invalid_client" || te.Status != http.StatusUnauthorized || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Exchange = %v, want TokenError invalid_client", err)
	}
}

func TestTokenErrorInvalidGrant(t *testing.T) {
	op := startTestOP(t, testop.Config{})
	st := discovered(t, op, ClientAuth{Secret: op.ClientSecret()})
	_, verifier := authorize(t, st)
	_, err := st.Exchange(t.Context(), "not-a-code", verifier, redirectURI)
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "invalid_grant" || te.Status != http.StatusBadRequest || errors.Is(err, ErrUnavailable) {
		t.Fatalf("Exchange = %v, want TokenError invalid_grant", err)
	}
	if te.Description == "" || te.Error() != "the token endpoint answered invalid_grant: "+te.Description {
		t.Errorf("Error() = %q", te.Error())
	}
	op.RevokeRefreshTokens()
	if _, err := st.Refresh(t.Context(), "revoked"); !errors.As(err, &te) || te.Code != "invalid_grant" {
		t.Errorf("Refresh = %v, want invalid_grant", err)
	}
}

func TestTokenEndpointServerErrorIsUnavailable(t *testing.T) {
	op := startTestOP(t, testop.Config{})
	st := discovered(t, op, ClientAuth{Secret: op.ClientSecret()})
	code, verifier := authorize(t, st)
	op.SetMisbehavior(testop.TokenEndpointError)
	_, err := st.Exchange(t.Context(), code, verifier, redirectURI)
	var te *TokenError
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &te) || te.Status != http.StatusInternalServerError {
		t.Fatalf("Exchange = %v, want an ErrUnavailable TokenError with status 500", err)
	}

	// A provider that is down (503 without an OAuth error) is unavailable
	// too, and so is one that cannot be reached.
	op.SetMisbehavior(testop.MisbehaveNone)
	op.SetDown(true)
	if _, err := st.Refresh(t.Context(), "x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("while down: %v", err)
	}
	op.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if _, err := st.Refresh(ctx, "x"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("unreachable: %v", err)
	}
}

func TestAuthenticateOtherEndpoint(t *testing.T) {
	op := startTestOP(t, testop.Config{ClientSecret: longSecret, TokenAuthMethods: []string{ClientSecretJWT}})
	st := discovered(t, op, ClientAuth{Secret: longSecret})
	form, header := url.Values{"token": {"t"}}, http.Header{}
	if err := st.Authenticate(op.Issuer()+"/introspect", form, header); err != nil {
		t.Fatal(err)
	}
	aud := decodeAssertion(t, form.Get("client_assertion"), []byte(longSecret), jose.HS256).claims.Aud
	if aud != op.Issuer()+"/introspect" || form.Get("token") != "t" {
		t.Errorf("aud %q, form %v", aud, form)
	}
}
