package testop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// longSecret is long enough for client_secret_jwt (RFC 7518 3.2).
const longSecret = "a-client-secret-of-at-least-32-bytes!"

// codeRequest authorizes and returns a token request form for the code,
// without client authentication.
func codeRequest(t *testing.T, r *rp) url.Values {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	loc := r.mustAuthorize(t, r.conf.AuthCodeURL("state", oidc.Nonce("n"), oauth2.S256ChallengeOption(verifier)))
	return url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {loc.Query().Get("code")},
		"redirect_uri":  {r.conf.RedirectURL},
		"code_verifier": {verifier},
	}
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	status int
	body   map[string]any
}

func (tr tokenResponse) errorCode() string { s, _ := tr.body["error"].(string); return s }

// postToken sends a token request; basic, when set, is "id:secret".
func postToken(t *testing.T, p *Provider, form url.Values, basic string) tokenResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, p.Issuer()+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id, secret, ok := strings.Cut(basic, ":"); ok {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return tokenResponse{resp.StatusCode, body}
}

// assertionClaims are valid claims of a client assertion for p.
func assertionClaims(p *Provider) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": p.ClientID(),
		"sub": p.ClientID(),
		"aud": p.Issuer() + "/token",
		"jti": randomString(20),
		"iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(),
	}
}

// signAssertion signs claims with key (a []byte secret or a private key),
// with kid and extra headers when given.
func signAssertion(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, headers map[string]any, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range headers {
		opts = opts.WithHeader(jose.HeaderKey(k), v)
	}
	if kid != "" {
		key = jose.JSONWebKey{Key: key, KeyID: kid}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func withAssertion(form url.Values, assertion string) url.Values {
	form.Set("client_assertion_type", jwtBearer)
	form.Set("client_assertion", assertion)
	return form
}

func wantInvalidClient(t *testing.T, tr tokenResponse, because string) {
	t.Helper()
	desc, _ := tr.body["error_description"].(string)
	if tr.status != http.StatusUnauthorized || tr.errorCode() != "invalid_client" || !strings.Contains(desc, because) {
		t.Errorf("answer %d %v, want 401 invalid_client saying %q", tr.status, tr.body, because)
	}
}

func wantTokens(t *testing.T, tr tokenResponse) {
	t.Helper()
	if tr.status != http.StatusOK || tr.body["access_token"] == nil || tr.body["id_token"] == nil {
		t.Fatalf("answer %d %v, want tokens", tr.status, tr.body)
	}
}

func discoveredAuthMethods(t *testing.T, p *Provider) []string {
	t.Helper()
	resp, err := http.Get(p.Issuer() + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	return md.Methods
}

func TestTokenAuthMethodsAreAnnounced(t *testing.T) {
	if got := discoveredAuthMethods(t, newOP(t, Config{})); !slices.Equal(got, []string{ClientSecretBasic, ClientSecretPost}) {
		t.Errorf("default: %v", got)
	}
	methods := []string{PrivateKeyJWT, ClientSecretJWT}
	p := newOP(t, Config{TokenAuthMethods: methods})
	methods[0] = "changed" // the provider keeps its own copy
	if got := discoveredAuthMethods(t, p); !slices.Equal(got, []string{PrivateKeyJWT, ClientSecretJWT}) {
		t.Errorf("configured: %v", got)
	}
}

func TestUnannouncedAuthMethodIsRefused(t *testing.T) {
	p := newOP(t, Config{TokenAuthMethods: []string{ClientSecretPost}})
	r := newRP(t, p)
	wantInvalidClient(t, postToken(t, p, codeRequest(t, r), p.ClientID()+":"+p.ClientSecret()), "client_secret_basic is not allowed")
	if got := p.LastTokenAuthMethod(); got != ClientSecretBasic {
		t.Errorf("LastTokenAuthMethod = %q after a basic request", got)
	}
	form := codeRequest(t, r)
	form.Set("client_id", p.ClientID())
	form.Set("client_secret", p.ClientSecret())
	wantTokens(t, postToken(t, p, form, ""))
	if got := p.LastTokenAuthMethod(); got != ClientSecretPost || p.LastClientAuthFailure() != "" {
		t.Errorf("LastTokenAuthMethod = %q (%q), want client_secret_post", got, p.LastClientAuthFailure())
	}

	// Without any client authentication: a public client, not announced.
	form = codeRequest(t, r)
	form.Set("client_id", p.ClientID())
	wantInvalidClient(t, postToken(t, p, form, ""), "none is not allowed")
}

func TestPublicClientWhenNoneIsAnnounced(t *testing.T) {
	p := newOP(t, Config{TokenAuthMethods: []string{AuthNone}})
	r := newRP(t, p)
	form := codeRequest(t, r)
	form.Set("client_id", p.ClientID())
	wantTokens(t, postToken(t, p, form, ""))
	form = codeRequest(t, r)
	form.Set("client_id", "another")
	wantInvalidClient(t, postToken(t, p, form, ""), "unknown client")
}

func TestMoreThanOneAuthMethodIsRefused(t *testing.T) {
	p := newOP(t, Config{ClientSecret: longSecret, TokenAuthMethods: []string{ClientSecretBasic, ClientSecretPost, ClientSecretJWT}})
	r := newRP(t, p)
	form := codeRequest(t, r)
	form.Set("client_secret", p.ClientSecret())
	wantInvalidClient(t, postToken(t, p, form, p.ClientID()+":"+p.ClientSecret()), "more than one")
	form = withAssertion(codeRequest(t, r), signAssertion(t, jose.HS256, []byte(longSecret), "", nil, assertionClaims(p)))
	form.Set("client_secret", p.ClientSecret())
	wantInvalidClient(t, postToken(t, p, form, ""), "more than one")
	if p.LastTokenAuthMethod() != "" {
		t.Errorf("LastTokenAuthMethod = %q for a mixed request", p.LastTokenAuthMethod())
	}
}

func TestClientSecretJWT(t *testing.T) {
	p := newOP(t, Config{ClientSecret: longSecret, TokenAuthMethods: []string{ClientSecretJWT}})
	r := newRP(t, p)
	claims := assertionClaims(p)
	tr := postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.HS256, []byte(longSecret), "", nil, claims)), "")
	wantTokens(t, tr)
	if got := p.LastTokenAuthMethod(); got != ClientSecretJWT {
		t.Errorf("LastTokenAuthMethod = %q", got)
	}
	h, c := p.LastClientAssertion()
	if h["alg"] != "HS256" || c["jti"] != claims["jti"] || c["iss"] != p.ClientID() {
		t.Errorf("LastClientAssertion = %v %v", h, c)
	}

	// The refresh grant is authenticated the same way.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.body["refresh_token"].(string)}}
	wantTokens(t, postToken(t, p, withAssertion(form, signAssertion(t, jose.HS256, []byte(longSecret), "", nil, assertionClaims(p))), ""))

	wrong := signAssertion(t, jose.HS256, []byte(strings.ToUpper(longSecret)), "", nil, assertionClaims(p))
	wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), wrong), ""), "does not verify with the client secret")
}

func newECKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newRSAKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPrivateKeyJWTWithRegisteredKeys(t *testing.T) {
	rsaKey, ecKey, other := newRSAKey(t), newECKey(t, elliptic.P256()), newECKey(t, elliptic.P256())
	p := newOP(t, Config{
		TokenAuthMethods: []string{PrivateKeyJWT},
		ClientKeys:       []crypto.PublicKey{rsaKey.Public(), ecKey.Public()},
	})
	r := newRP(t, p)
	for _, c := range []struct {
		name string
		alg  jose.SignatureAlgorithm
		key  crypto.Signer
		kid  string
	}{
		{"RS256", jose.RS256, rsaKey, ""},
		{"ES256", jose.ES256, ecKey, ""},
		{"kid is not needed for ClientKeys", jose.ES256, ecKey, "any-kid"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, c.alg, c.key, c.kid, nil, assertionClaims(p))), "")
			wantTokens(t, tr)
			if p.LastTokenAuthMethod() != PrivateKeyJWT {
				t.Errorf("LastTokenAuthMethod = %q", p.LastTokenAuthMethod())
			}
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.body["refresh_token"].(string)}}
			wantTokens(t, postToken(t, p, withAssertion(form, signAssertion(t, c.alg, c.key, c.kid, nil, assertionClaims(p))), ""))
		})
	}
	wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.ES256, other, "", nil, assertionClaims(p))), ""),
		"does not verify with a registered key")
	// An assertion signed with the client secret is client_secret_jwt,
	// which this provider does not allow.
	wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.HS256, []byte(longSecret), "", nil, assertionClaims(p))), ""),
		"client_secret_jwt is not allowed")
}

func TestPrivateKeyJWTChoosesJWKSKeyByKid(t *testing.T) {
	a, b := newECKey(t, elliptic.P384()), newRSAKey(t)
	p := newOP(t, Config{
		TokenAuthMethods: []string{PrivateKeyJWT},
		ClientJWKS: jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: a.Public(), KeyID: "key-a"},
			{Key: b.Public(), KeyID: "key-b"},
		}},
	})
	r := newRP(t, p)
	wantTokens(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.ES384, a, "key-a", nil, assertionClaims(p))), ""))
	if h, _ := p.LastClientAssertion(); h["kid"] != "key-a" {
		t.Errorf("recorded header %v", h)
	}
	wantTokens(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.RS256, b, "", nil, assertionClaims(p))), ""))
	wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.ES384, a, "key-b", nil, assertionClaims(p))), ""),
		"does not verify")
	wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.ES384, a, "key-c", nil, assertionClaims(p))), ""),
		`kid "key-c" names no registered key`)
}

// selfSigned makes a certificate for key.
func selfSigned(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test-client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
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

func TestPrivateKeyJWTChecksCertificateThumbprint(t *testing.T) {
	key := newRSAKey(t)
	cert := selfSigned(t, key)
	p := newOP(t, Config{
		TokenAuthMethods: []string{PrivateKeyJWT},
		ClientJWKS:       jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), Certificates: []*x509.Certificate{cert}}}},
	})
	r := newRP(t, p)
	sum := sha1.Sum(cert.Raw)
	x5t := base64.RawURLEncoding.EncodeToString(sum[:])
	wantTokens(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.RS256, key, "", map[string]any{"x5t": x5t}, assertionClaims(p))), ""))
	wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.RS256, key, "", nil, assertionClaims(p))), ""),
		"no x5t or x5t#S256")
	wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.RS256, key, "", map[string]any{"x5t#S256": x5t}, assertionClaims(p))), ""),
		"does not name the registered certificate")
}

func TestClientAssertionClaimsAreChecked(t *testing.T) {
	p := newOP(t, Config{ClientSecret: longSecret, TokenAuthMethods: []string{ClientSecretJWT}})
	r := newRP(t, p)
	now := time.Now()
	cases := []struct {
		name   string
		change func(c map[string]any)
		want   string // "" accepts
	}{
		{"aud is the issuer", func(c map[string]any) { c["aud"] = p.Issuer() }, ""},
		{"aud array with the token endpoint", func(c map[string]any) { c["aud"] = []string{"https://else", p.Issuer() + "/token"} }, ""},
		{"other aud", func(c map[string]any) { c["aud"] = "https://else/token" }, "aud must contain"},
		{"no aud", func(c map[string]any) { delete(c, "aud") }, "aud must contain"},
		{"other iss", func(c map[string]any) { c["iss"] = "someone" }, "iss and sub"},
		{"other sub", func(c map[string]any) { c["sub"] = "someone" }, "iss and sub"},
		{"no exp", func(c map[string]any) { delete(c, "exp") }, "no exp"},
		{"expired", func(c map[string]any) { c["exp"] = now.Add(-time.Second).Unix() }, "expired"},
		{"exp too far", func(c map[string]any) { c["exp"] = now.Add(11 * time.Minute).Unix() }, "more than 10m0s away"},
		{"no jti", func(c map[string]any) { delete(c, "jti") }, "no jti"},
		{"iat in the future", func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix() }, "iat is in the future"},
		{"nbf in the future", func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }, "nbf is in the future"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims := assertionClaims(p)
			c.change(claims)
			tr := postToken(t, p, withAssertion(codeRequest(t, r), signAssertion(t, jose.HS256, []byte(longSecret), "", nil, claims)), "")
			if c.want == "" {
				wantTokens(t, tr)
			} else {
				wantInvalidClient(t, tr, c.want)
			}
		})
	}

	t.Run("jti used twice", func(t *testing.T) {
		assertion := signAssertion(t, jose.HS256, []byte(longSecret), "", nil, assertionClaims(p))
		wantTokens(t, postToken(t, p, withAssertion(codeRequest(t, r), assertion), ""))
		wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), assertion), ""), "jti was used before")
	})
	t.Run("client_id differs from iss", func(t *testing.T) {
		form := withAssertion(codeRequest(t, r), signAssertion(t, jose.HS256, []byte(longSecret), "", nil, assertionClaims(p)))
		form.Set("client_id", "someone")
		wantInvalidClient(t, postToken(t, p, form, ""), "client_id and client_assertion iss differ")
	})
	t.Run("wrong assertion type", func(t *testing.T) {
		form := withAssertion(codeRequest(t, r), signAssertion(t, jose.HS256, []byte(longSecret), "", nil, assertionClaims(p)))
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
		wantInvalidClient(t, postToken(t, p, form, ""), "client_assertion_type must be")
	})
	t.Run("alg none", func(t *testing.T) {
		claims, _ := json.Marshal(assertionClaims(p))
		unsigned := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString(claims) + "."
		wantInvalidClient(t, postToken(t, p, withAssertion(codeRequest(t, r), unsigned), ""), `alg "none" is not allowed`)
	})
}
