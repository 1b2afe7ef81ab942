package integration

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/oidcgate/caddy-oidc/internal/devop"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// clientSecretJWTSecret is long enough for client_secret_jwt (32 bytes).
const clientSecretJWTSecret = "integration-client-secret-of-32-bytes-or-more"

// clientKey is a private key of the relying party with its PEM text.
type clientKey struct {
	signer crypto.Signer
	pem    string
}

func newRSAClientKey(t *testing.T) clientKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{k, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}
}

func newECClientKey(t *testing.T, c elliptic.Curve) clientKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{k, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))}
}

// writeKeyFile writes PEM text to a file only its owner reads.
func writeKeyFile(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "client-key.pem")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// selfSignedCertificate is a certificate for the key, as one uploads to
// Entra ID as a client credential.
func selfSignedCertificate(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2025),
		Subject:      pkix.Name{CommonName: "caddy-oidc integration client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// newZitadelProviderFor starts the zitadel OP with client caddy-test
// registered for one client authentication method.
func newZitadelProviderFor(t *testing.T, method string, keys map[string]crypto.PublicKey) *devop.Server {
	t.Helper()
	op, err := devop.New(devop.Config{
		Addr:                   "127.0.0.1:0",
		ClientID:               "caddy-test",
		ClientSecret:           "test-secret",
		ClientAuthMethod:       method,
		ClientKeys:             keys,
		RedirectURIs:           []string{"http://127.0.0.1:*/oauth2/callback"},
		PostLogoutRedirectURIs: []string{"http://127.0.0.1:*/*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	return op
}

// signInAtZitadel navigates to path, fills the provider's login form, and
// fails the test unless the browser lands back on path through the
// upstream.
func signInAtZitadel(t *testing.T, b *browser, s *site, op *devop.Server, path string) {
	t.Helper()
	resp, body := b.navigate(s.url + path)
	if !strings.HasPrefix(resp.Request.URL.String(), op.Issuer()) {
		t.Fatalf("navigation ended at %s (%d), want the provider's login page: %s", resp.Request.URL, resp.StatusCode, body)
	}
	resp, err := devop.SignIn(b.client, resp.Request.URL.String(), devop.DemoUsername, devop.DemoPassword)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != path {
		t.Fatalf("after the login form: %s %d, want %s 200: %s", resp.Request.URL, resp.StatusCode, path, page)
	}
}

// TestZitadelSignInWithEachClientAuthMethod signs in through Caddy at the
// zitadel OP, whose client is registered for one method and refuses the
// others: client_secret_basic (chosen by default), client_secret_post,
// and private_key_jwt with an RSA key from a file and with an EC key from
// the environment.
func TestZitadelSignInWithEachClientAuthMethod(t *testing.T) {
	rsaKey, ecKey := newRSAClientKey(t), newECClientKey(t, elliptic.P256())
	rsaFile := writeKeyFile(t, rsaKey.pem)
	t.Setenv("CADDY_OIDC_IT_EC_CLIENT_KEY", ecKey.pem)
	for _, c := range []struct {
		name, method string
		keys         map[string]crypto.PublicKey
		secret       string
		extra        string
	}{
		{name: "client_secret_basic by default", method: devop.ClientSecretBasic, secret: "test-secret"},
		{name: "client_secret_post", method: devop.ClientSecretPost, secret: "test-secret", extra: "client_auth client_secret_post"},
		{name: "private_key_jwt RSA from client_key_file", method: devop.PrivateKeyJWT,
			keys:  map[string]crypto.PublicKey{"rsa-1": rsaKey.signer.Public()},
			extra: "client_key_file " + rsaFile + "\n\t\tclient_key_id rsa-1\n\t\tclient_assertion_audience issuer"},
		{name: "private_key_jwt EC from client_key {env.*}", method: devop.PrivateKeyJWT,
			keys:  map[string]crypto.PublicKey{"": ecKey.signer.Public()},
			extra: "client_auth private_key_jwt\n\t\tclient_key {env.CADDY_OIDC_IT_EC_CLIENT_KEY}\n\t\tclient_assertion_audience issuer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			op := newZitadelProviderFor(t, c.method, c.keys)
			up := newUpstream(t)
			s := startSite(t, up, siteOptions{issuer: op.Issuer(), clientID: "caddy-test", secret: c.secret, extra: c.extra})
			b := newBrowser(t)
			signInAtZitadel(t, b, s, op, "/app")
			if got := up.lastHeader().Get("X-User-Email"); got != devop.DemoEmail {
				t.Errorf("upstream saw X-User-Email %q, want %q", got, devop.DemoEmail)
			}
			if got := op.LastTokenAuthMethod(); got != c.method {
				t.Errorf("the provider saw %q, want %q", got, c.method)
			}
			// (The secret is in the Caddyfile itself, and so in Caddy's
			// debug log of its config.)
			assertNoSecrets(t, "Caddy's log", s.logs(), rsaKey.pem, ecKey.pem)
		})
	}
}

// TestZitadelRefusesAssertionForTheTokenEndpoint pins why
// client_assertion_audience exists: without it the assertion's aud is the
// token endpoint, which Zitadel refuses.
func TestZitadelRefusesAssertionForTheTokenEndpoint(t *testing.T) {
	key := newECClientKey(t, elliptic.P256())
	op := newZitadelProviderFor(t, devop.PrivateKeyJWT, map[string]crypto.PublicKey{"": key.signer.Public()})
	up := newUpstream(t)
	s := startSite(t, up, siteOptions{issuer: op.Issuer(), clientID: "caddy-test", extra: "client_key_file " + writeKeyFile(t, key.pem)})
	b := newBrowser(t)
	resp, _ := b.navigate(s.url + "/app")
	resp, err := devop.SignIn(b.client, resp.Request.URL.String(), devop.DemoUsername, devop.DemoPassword)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(page), "refused to issue tokens") {
		t.Fatalf("sign-in with aud the token endpoint: %d %s, want 502 from the refused exchange", resp.StatusCode, page)
	}
	if op.LastTokenAuthMethod() != devop.PrivateKeyJWT {
		t.Errorf("the provider saw %q", op.LastTokenAuthMethod())
	}
}

// testopKeySite protects an upstream with oidc_auth against p, the client
// authenticating with the key in a file and the given further lines.
func testopKeySite(t *testing.T, p *testop.Provider, keyPEM, extra string) (*site, *upstream) {
	t.Helper()
	up := newUpstream(t)
	extra = "client_key_file " + writeKeyFile(t, keyPEM) + "\n\t\t" + extra
	return startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), extra: extra}), up
}

// TestClientSecretJWTSignIn: a provider that takes only client_secret_jwt
// gets an HS256 assertion for its token endpoint, with just a (long)
// client_secret configured.
func TestClientSecretJWTSignIn(t *testing.T) {
	p := newProvider(t, testop.Config{ClientSecret: clientSecretJWTSecret, TokenAuthMethods: []string{testop.ClientSecretJWT}})
	// From the environment, so that Caddy's debug log of its config does
	// not show it.
	t.Setenv("CADDY_OIDC_IT_CLIENT_SECRET", clientSecretJWTSecret)
	up := newUpstream(t)
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: "{env.CADDY_OIDC_IT_CLIENT_SECRET}"})
	newBrowser(t).signIn(s, "/app")
	if up.lastHeader().Get("X-User-Email") == "" {
		t.Error("the upstream saw no user")
	}
	if got := p.LastTokenAuthMethod(); got != testop.ClientSecretJWT {
		t.Fatalf("the provider saw %q (%s)", got, p.LastClientAuthFailure())
	}
	header, claims := p.LastClientAssertion()
	if header["alg"] != "HS256" || claims["aud"] != p.Issuer()+"/token" || claims["iss"] != p.ClientID() || claims["sub"] != p.ClientID() {
		t.Errorf("assertion %v %v", header, claims)
	}
	form, httpHeader := p.LastTokenRequest()
	if form.Has("client_secret") || httpHeader.Get("Authorization") != "" {
		t.Error("the client secret itself went to the token endpoint")
	}
	assertNoSecrets(t, "Caddy's log", s.logs(), clientSecretJWTSecret, form.Get("client_assertion"))
}

// TestPrivateKeyJWTSignInWithKeyID: the assertion names the key
// registered at the provider by client_key_id, and is signed with the
// algorithm of the key's curve.
func TestPrivateKeyJWTSignInWithKeyID(t *testing.T) {
	key := newECClientKey(t, elliptic.P384())
	p := newProvider(t, testop.Config{
		TokenAuthMethods: []string{testop.PrivateKeyJWT},
		ClientJWKS:       jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.signer.Public(), KeyID: "caddy-2025"}}},
	})
	s, _ := testopKeySite(t, p, key.pem, "client_key_id caddy-2025")
	newBrowser(t).signIn(s, "/app")
	if got := p.LastTokenAuthMethod(); got != testop.PrivateKeyJWT {
		t.Fatalf("the provider saw %q (%s)", got, p.LastClientAuthFailure())
	}
	header, claims := p.LastClientAssertion()
	if header["kid"] != "caddy-2025" || header["alg"] != "ES384" || claims["jti"] == nil {
		t.Errorf("assertion %v %v", header, claims)
	}
	assertNoSecrets(t, "Caddy's log", s.logs(), key.pem)
}

// TestPrivateKeyJWTSignInWithCertificate: with the certificate after the
// key in client_key_file, the assertion carries its thumbprints, which the
// provider (like Entra ID) checks against the registered certificate.
func TestPrivateKeyJWTSignInWithCertificate(t *testing.T) {
	key := newRSAClientKey(t)
	cert := selfSignedCertificate(t, key.signer)
	p := newProvider(t, testop.Config{
		TokenAuthMethods: []string{testop.PrivateKeyJWT},
		ClientJWKS:       jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.signer.Public(), Certificates: []*x509.Certificate{cert}}}},
	})
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	s, _ := testopKeySite(t, p, key.pem+certPEM, "client_auth private_key_jwt")
	newBrowser(t).signIn(s, "/app")
	if got := p.LastTokenAuthMethod(); got != testop.PrivateKeyJWT {
		t.Fatalf("the provider saw %q (%s)", got, p.LastClientAuthFailure())
	}
	s1, s256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
	header, _ := p.LastClientAssertion()
	if header["x5t"] != base64.RawURLEncoding.EncodeToString(s1[:]) || header["x5t#S256"] != base64.RawURLEncoding.EncodeToString(s256[:]) || header["alg"] != "RS256" {
		t.Errorf("assertion header %v, want the certificate's x5t and x5t#S256", header)
	}
}

// TestDefaultClientAuthIsTheProvidersChoice: a provider announcing only
// client_secret_post gets the secret in the form, with nothing but a
// client_secret configured.
func TestDefaultClientAuthIsTheProvidersChoice(t *testing.T) {
	p := newProvider(t, testop.Config{TokenAuthMethods: []string{testop.ClientSecretPost}})
	s, _ := testopSite(t, p, siteOptions{})
	newBrowser(t).signIn(s, "/app")
	form, header := p.LastTokenRequest()
	if p.LastTokenAuthMethod() != testop.ClientSecretPost || form.Get("client_secret") != p.ClientSecret() || header.Get("Authorization") != "" {
		t.Errorf("the provider saw %q (form has a secret: %v, Authorization %q)", p.LastTokenAuthMethod(), form.Has("client_secret"), header.Get("Authorization"))
	}
}

// TestRefreshWithPrivateKeyJWT: an access token about to expire is
// refreshed once for concurrent requests, the refresh authenticated with a
// fresh private_key_jwt assertion.
func TestRefreshWithPrivateKeyJWT(t *testing.T) {
	key := newRSAClientKey(t)
	p := newProvider(t, testop.Config{
		AccessTokenTTL:   10 * time.Second, // within token_inject's 30s refresh window
		TokenAuthMethods: []string{testop.PrivateKeyJWT},
		ClientKeys:       []crypto.PublicKey{key.signer.Public()},
	})
	up := newUpstream(t)
	routes := fmt.Sprintf("token_inject\n\treverse_proxy %s", up.hostPort())
	extra := "client_key_file " + writeKeyFile(t, key.pem) + "\n\t\tscopes openid email offline_access"
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), extra: extra, routes: routes})
	b := newBrowser(t)
	b.signIn(s, "/")
	_, signInAssertion := p.LastClientAssertion()
	p.SetAccessTokenTTL(time.Hour)

	var wg sync.WaitGroup
	statuses := make([]int, 20)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			resp, _ := b.do(req)
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Fatalf("request %d: %d", i, st)
		}
	}
	if n := p.RefreshCalls(); n != 1 {
		t.Fatalf("%d refresh calls, want 1", n)
	}
	form, _ := p.LastTokenRequest()
	_, refreshAssertion := p.LastClientAssertion()
	if form.Get("grant_type") != "refresh_token" || p.LastTokenAuthMethod() != testop.PrivateKeyJWT || p.LastClientAuthFailure() != "" {
		t.Fatalf("last token request: %s with %q (%s)", form.Get("grant_type"), p.LastTokenAuthMethod(), p.LastClientAuthFailure())
	}
	if refreshAssertion["jti"] == signInAssertion["jti"] {
		t.Error("the refresh reused the sign-in's assertion")
	}
	if tok := strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer "); !p.ValidAccessToken(tok) {
		t.Errorf("upstream got %.20q, want the refreshed token", tok)
	}
	assertNoSecrets(t, "Caddy's log", s.logs(), append(p.IssuedTokens(), key.pem, form.Get("client_assertion"))...)
}

// TestUnknownClientKeyGivesClearPage: a key the provider has not
// registered makes the token exchange fail with invalid_client; the
// browser gets a 502 page saying so, and nothing secret is logged.
func TestUnknownClientKeyGivesClearPage(t *testing.T) {
	registered, used := newECClientKey(t, elliptic.P256()), newECClientKey(t, elliptic.P256())
	p := newProvider(t, testop.Config{
		TokenAuthMethods: []string{testop.PrivateKeyJWT},
		ClientKeys:       []crypto.PublicKey{registered.signer.Public()},
	})
	s, up := testopKeySite(t, p, used.pem, "")
	resp, body := newBrowser(t).navigate(s.url + "/app")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "invalid_client") || resp.Request.URL.Path != "/oauth2/callback" {
		t.Fatalf("sign-in with an unknown key: %d at %s: %s, want a 502 page naming invalid_client", resp.StatusCode, resp.Request.URL.Path, body)
	}
	if up.requests != 0 {
		t.Error("the upstream was reached")
	}
	if p.LastTokenAuthMethod() != testop.PrivateKeyJWT || len(p.IssuedTokens()) != 0 {
		t.Errorf("the provider saw %q and issued %d tokens", p.LastTokenAuthMethod(), len(p.IssuedTokens()))
	}
	logs := s.logs()
	if !strings.Contains(logs, "token exchange refused") || !strings.Contains(logs, "invalid_client") {
		t.Errorf("the log does not say why the sign-in failed:\n%s", logs)
	}
	form, _ := p.LastTokenRequest()
	// (The single-use code is in the access log's callback URL.)
	assertNoSecrets(t, "Caddy's log", logs, used.pem, form.Get("client_assertion"), form.Get("code_verifier"))
	assertNoSecrets(t, "the error page", body, form.Get("client_assertion"), form.Get("code"), form.Get("code_verifier"))
}
