package devop_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"html"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

// relyingParty is the client side of a code flow against a devop.Server.
type relyingParty struct {
	provider *oidc.Provider
	oauth2   oauth2.Config
	browser  *http.Client
	// tokenParams, when set, adds parameters to the code exchange (a
	// client assertion, say).
	tokenParams func() map[string]string
}

func newRelyingParty(t *testing.T, srv *devop.Server, clientID, clientSecret string, scopes ...string) *relyingParty {
	t.Helper()
	// The callback only has to exist: the test reads code and state from
	// the URL the browser lands on.
	callback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("callback reached"))
	}))
	t.Cleanup(callback.Close)

	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, srv.Issuer())
	if err != nil {
		t.Fatalf("discovery at %s: %v", srv.Issuer(), err)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &relyingParty{
		provider: provider,
		oauth2: oauth2.Config{
			ClientID:     clientID,
			ClientSecret: clientSecret,
			Endpoint:     provider.Endpoint(),
			RedirectURL:  callback.URL + "/oauth2/callback",
			Scopes:       append([]string{oidc.ScopeOpenID}, scopes...),
		},
		browser: &http.Client{Jar: jar, Timeout: 10 * time.Second},
	}
}

// signIn runs the browser part of the code flow with PKCE and returns the
// token response and its verified ID token.
func (rp *relyingParty) signIn(t *testing.T) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	code, verifier, nonce := rp.authorize(t)
	opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}
	if rp.tokenParams != nil {
		for k, v := range rp.tokenParams() {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	tok, err := rp.oauth2.Exchange(context.Background(), code, opts...)
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	idToken := rp.verify(t, tok)
	if idToken.Nonce != nonce {
		t.Errorf("ID token nonce = %q, want %q", idToken.Nonce, nonce)
	}
	if err := idToken.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	return tok, idToken
}

// authorize runs the browser part of the code flow with PKCE: the
// authorization request, the login form, the callback. It returns the code
// with its PKCE verifier and the nonce.
func (rp *relyingParty) authorize(t *testing.T) (code, verifier, nonce string) {
	t.Helper()
	state, nonce, verifier := randomString(t), randomString(t), oauth2.GenerateVerifier()
	authURL := rp.oauth2.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))

	loginPage, err := rp.browser.Get(authURL)
	if err != nil {
		t.Fatalf("authorization request: %v", err)
	}
	loginPage.Body.Close()
	if loginPage.StatusCode != http.StatusOK {
		t.Fatalf("authorization request: status %s", loginPage.Status)
	}

	landed, err := devop.SignIn(rp.browser, loginPage.Request.URL.String(), devop.DemoUsername, devop.DemoPassword)
	if err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	landed.Body.Close()
	back := landed.Request.URL
	if !strings.HasPrefix(back.String(), rp.oauth2.RedirectURL+"?") {
		t.Fatalf("sign-in ended at %s, want the callback %s", back.Redacted(), rp.oauth2.RedirectURL)
	}
	if got := back.Query().Get("state"); got != state {
		t.Fatalf("callback state = %q, want %q", got, state)
	}
	return back.Query().Get("code"), verifier, nonce
}

func (rp *relyingParty) verify(t *testing.T, tok *oauth2.Token) *oidc.IDToken {
	t.Helper()
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		t.Fatal("token response has no id_token")
	}
	idToken, err := rp.provider.Verifier(&oidc.Config{ClientID: rp.oauth2.ClientID}).Verify(context.Background(), raw)
	if err != nil {
		t.Fatalf("verifying ID token: %v", err)
	}
	return idToken
}

func randomString(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func startProvider(t *testing.T, cfg devop.Config) *devop.Server {
	t.Helper()
	srv, err := devop.New(cfg)
	if err != nil {
		t.Fatalf("devop.New: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

type profileClaims struct {
	Subject           string `json:"sub"`
	Email             string `json:"email"`
	EmailVerified     *bool  `json:"email_verified"`
	Name              string `json:"name"`
	GivenName         string `json:"given_name"`
	FamilyName        string `json:"family_name"`
	PreferredUsername string `json:"preferred_username"`
}

func TestCodeFlowIDTokenCarriesProfileAndEmail(t *testing.T) {
	srv := startProvider(t, devop.Config{})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret, oidc.ScopeProfile, oidc.ScopeEmail)

	_, idToken := rp.signIn(t)

	var c profileClaims
	if err := idToken.Claims(&c); err != nil {
		t.Fatal(err)
	}
	want := profileClaims{
		Subject:           devop.DemoSubject,
		Email:             devop.DemoEmail,
		Name:              devop.DemoName,
		GivenName:         devop.DemoGivenName,
		FamilyName:        devop.DemoFamilyName,
		PreferredUsername: devop.DemoUsername,
	}
	if c.EmailVerified == nil || !*c.EmailVerified {
		t.Errorf("email_verified = %v, want true", c.EmailVerified)
	}
	c.EmailVerified = nil
	if c != want {
		t.Errorf("ID token claims = %+v, want %+v", c, want)
	}
	if idToken.Issuer != srv.Issuer() || strings.HasSuffix(srv.Issuer(), "/") {
		t.Errorf("iss = %q, Issuer() = %q; want equal and without trailing slash", idToken.Issuer, srv.Issuer())
	}
}

func TestRefreshTokenGrantIssuesNewTokens(t *testing.T) {
	srv := startProvider(t, devop.Config{})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret,
		oidc.ScopeEmail, oidc.ScopeOfflineAccess)

	tok, _ := rp.signIn(t)
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for scope offline_access")
	}

	refreshed, err := rp.oauth2.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh grant: %v", err)
	}
	if refreshed.AccessToken == "" || refreshed.AccessToken == tok.AccessToken {
		t.Errorf("refresh returned access token %q, want a new one", refreshed.AccessToken)
	}
	var c profileClaims
	if err := rp.verify(t, refreshed).Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.Email != devop.DemoEmail {
		t.Errorf("refreshed ID token email = %q, want %q", c.Email, devop.DemoEmail)
	}
}

func TestLogoutRedirectsToRegisteredGlob(t *testing.T) {
	srv := startProvider(t, devop.Config{})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret)
	tok, _ := rp.signIn(t)

	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := rp.provider.Claims(&meta); err != nil || meta.EndSession == "" {
		t.Fatalf("discovery has no end_session_endpoint (%v)", err)
	}
	afterLogout := strings.TrimSuffix(rp.oauth2.RedirectURL, "/oauth2/callback") + "/signed-out"

	// A relying party's self-submitting logout page, as a browser gets it.
	page := `<form method="post" action="` + html.EscapeString(meta.EndSession) + `">
		<input type="hidden" name="id_token_hint" value="` + tok.Extra("id_token").(string) + `">
		<input type="hidden" name="post_logout_redirect_uri" value="` + afterLogout + `">
		<input type="hidden" name="client_id" value="` + devop.DefaultClientID + `">
		</form><script>document.forms[0].submit()</script>`
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := devop.SubmitForm(noFollow, rp.oauth2.RedirectURL, page)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); !strings.HasPrefix(loc, afterLogout) {
		t.Errorf("end session redirected to %q (status %s), want %s", loc, resp.Status, afterLogout)
	}
}

func TestSignInReportsWrongPassword(t *testing.T) {
	srv := startProvider(t, devop.Config{})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret)
	authURL := rp.oauth2.AuthCodeURL("state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))

	// The authorization URL itself leads to the login page.
	resp, err := devop.SignIn(rp.browser, authURL, devop.DemoUsername, "wrong")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("SignIn with a wrong password ended at %s, want an error", resp.Request.URL.Redacted())
	}
	if !strings.Contains(err.Error(), "wrong") {
		t.Errorf("error %q does not carry the provider's message", err)
	}
}

func TestServersInOneProcessKeepTheirOwnClients(t *testing.T) {
	a := startProvider(t, devop.Config{ClientID: "client-a", ClientSecret: "secret-a"})
	b := startProvider(t, devop.Config{ClientID: "client-b", ClientSecret: "secret-b"})

	newRelyingParty(t, a, "client-a", "secret-a").signIn(t)
	newRelyingParty(t, b, "client-b", "secret-b").signIn(t)

	// b does not know a's client.
	rp := newRelyingParty(t, b, "client-a", "secret-a")
	resp, err := rp.browser.Get(rp.oauth2.AuthCodeURL("state"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.HasPrefix(resp.Request.URL.Path, "/login/") {
		t.Errorf("provider b showed its login page to client-a")
	}
}

func TestRedirectURIOutsideGlobsIsRefused(t *testing.T) {
	srv := startProvider(t, devop.Config{RedirectURIs: []string{"http://127.0.0.1:*/oauth2/callback"}})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret)
	rp.oauth2.RedirectURL = strings.Replace(rp.oauth2.RedirectURL, "/oauth2/callback", "/elsewhere", 1)

	resp, err := rp.browser.Get(rp.oauth2.AuthCodeURL("state"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if strings.HasPrefix(resp.Request.URL.Path, "/login/") || strings.HasPrefix(resp.Request.URL.String(), rp.oauth2.RedirectURL) {
		t.Errorf("authorization with an unregistered redirect_uri ended at %s", resp.Request.URL.Redacted())
	}
}

func TestNewDefaultsIssuerToListenHost(t *testing.T) {
	srv := startProvider(t, devop.Config{Addr: "localhost:0"})
	u, err := url.Parse(srv.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "http" || u.Hostname() != "localhost" || u.Port() == "0" || u.Port() == "" || u.Path != "" {
		t.Errorf("Issuer() = %q, want http://localhost:<port>", srv.Issuer())
	}
}

func TestNewRejectsIssuerItCannotServe(t *testing.T) {
	for _, issuer := range []string{
		"http://localhost:9998/",
		"http://localhost:9998/realms/demo",
		"localhost:9998",
		"ftp://localhost:9998",
		"http://localhost:9998?x=1",
	} {
		if srv, err := devop.New(devop.Config{Issuer: issuer}); err == nil {
			srv.Close()
			t.Errorf("New accepted issuer %q", issuer)
		}
	}
}
