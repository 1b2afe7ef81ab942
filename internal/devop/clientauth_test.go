package devop_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// clientAssertion is a private_key_jwt assertion of client for srv, as RFC
// 7523 and Zitadel want it: aud the issuer.
func clientAssertion(t *testing.T, srv *devop.Server, client string, key crypto.Signer, kid string) string {
	t.Helper()
	return clientAssertionFor(t, srv.Issuer(), client, key, kid)
}

func clientAssertionFor(t *testing.T, aud, client string, key crypto.Signer, kid string) string {
	t.Helper()
	alg := jose.RS256
	if _, ok := key.(*ecdsa.PrivateKey); ok {
		alg = jose.ES256
	}
	signingKey := any(key)
	if kid != "" {
		signingKey = jose.JSONWebKey{Key: key, KeyID: kid}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: signingKey}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims, _ := json.Marshal(map[string]any{
		"iss": client, "sub": client, "aud": aud, "jti": randomString(t),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(),
	})
	jws, err := signer.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantInvalidClient(t *testing.T, err error) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Errorf("err = %v, want invalid_client", err)
	}
}

func TestClientSecretBasicIsTheDefault(t *testing.T) {
	srv := startProvider(t, devop.Config{})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret)
	rp.oauth2.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	rp.signIn(t)
	if got := srv.LastTokenAuthMethod(); got != devop.ClientSecretBasic {
		t.Errorf("LastTokenAuthMethod = %q", got)
	}
	rp.oauth2.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	code, verifier, _ := rp.authorize(t)
	_, err := rp.oauth2.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	wantInvalidClient(t, err)
	if got := srv.LastTokenAuthMethod(); got != devop.ClientSecretPost {
		t.Errorf("LastTokenAuthMethod = %q after a post request", got)
	}
}

func TestClientSecretPostClient(t *testing.T) {
	srv := startProvider(t, devop.Config{ClientAuthMethod: devop.ClientSecretPost})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret, oidc.ScopeOfflineAccess)
	rp.oauth2.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	tok, _ := rp.signIn(t)
	if got := srv.LastTokenAuthMethod(); got != devop.ClientSecretPost {
		t.Errorf("LastTokenAuthMethod = %q", got)
	}
	if _, err := rp.oauth2.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Errorf("refresh with client_secret_post: %v", err)
	}

	rp.oauth2.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	code, verifier, _ := rp.authorize(t)
	_, err := rp.oauth2.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	wantInvalidClient(t, err)
}

// tokenRequest posts a token request with a client assertion.
func tokenRequest(t *testing.T, rp *relyingParty, form url.Values, assertion string) (int, map[string]any) {
	t.Helper()
	form.Set("client_assertion_type", jwtBearer)
	form.Set("client_assertion", assertion)
	resp, err := http.PostForm(rp.oauth2.Endpoint.TokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func TestPrivateKeyJWTClient(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := startProvider(t, devop.Config{
		ClientAuthMethod: devop.PrivateKeyJWT,
		ClientKeys:       map[string]crypto.PublicKey{"rsa-1": rsaKey.Public(), "": ecKey.Public()},
	})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, "", oidc.ScopeOfflineAccess)
	rp.oauth2.Endpoint.AuthStyle = oauth2.AuthStyleInParams

	for _, c := range []struct {
		name string
		key  crypto.Signer
		kid  string
	}{{"RSA with kid", rsaKey, "rsa-1"}, {"EC without kid", ecKey, ""}} {
		t.Run(c.name, func(t *testing.T) {
			rp.tokenParams = func() map[string]string {
				return map[string]string{"client_assertion_type": jwtBearer, "client_assertion": clientAssertion(t, srv, devop.DefaultClientID, c.key, c.kid)}
			}
			tok, _ := rp.signIn(t)
			if got := srv.LastTokenAuthMethod(); got != devop.PrivateKeyJWT {
				t.Errorf("LastTokenAuthMethod = %q", got)
			}
			status, body := tokenRequest(t, rp, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}},
				clientAssertion(t, srv, devop.DefaultClientID, c.key, c.kid))
			if status != http.StatusOK || body["access_token"] == nil {
				t.Errorf("refresh with private_key_jwt: %d %v", status, body)
			}
		})
	}

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, assertion := range map[string]string{
		"unknown key":  clientAssertion(t, srv, devop.DefaultClientID, other, ""),
		"unknown kid":  clientAssertion(t, srv, devop.DefaultClientID, rsaKey, "rsa-2"),
		"wrong kid":    clientAssertion(t, srv, devop.DefaultClientID, ecKey, "rsa-1"),
		"other client": clientAssertion(t, srv, "someone", ecKey, ""),
		// Like Zitadel, the provider wants its issuer as the audience.
		"aud the token endpoint": clientAssertionFor(t, rp.oauth2.Endpoint.TokenURL, devop.DefaultClientID, ecKey, ""),
	} {
		t.Run(name, func(t *testing.T) {
			code, verifier, _ := rp.authorize(t)
			status, body := tokenRequest(t, rp, url.Values{
				"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "redirect_uri": {rp.oauth2.RedirectURL},
			}, assertion)
			// The zitadel provider answers a signature it cannot verify
			// with invalid_grant, where RFC 6749 5.2 has invalid_client.
			if status != http.StatusBadRequest && status != http.StatusUnauthorized || body["error"] != "invalid_grant" && body["error"] != "invalid_client" {
				t.Errorf("answer %d %v, want the assertion refused", status, body)
			}
		})
	}

	t.Run("a client secret instead", func(t *testing.T) {
		rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret)
		code, verifier, _ := rp.authorize(t)
		_, err := rp.oauth2.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
		wantInvalidClient(t, err)
	})
}

func TestNewRefusesClientAuthItCannotDo(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, c := range []struct {
		cfg  devop.Config
		want string
	}{
		{devop.Config{ClientAuthMethod: "client_secret_jwt"}, "want client_secret_basic"},
		{devop.Config{ClientAuthMethod: devop.PrivateKeyJWT}, "needs a registered public key"},
		{devop.Config{ClientAuthMethod: devop.PrivateKeyJWT, ClientKeys: map[string]crypto.PublicKey{"": edKey.Public()}}, "not an RSA or ECDSA public key"},
	} {
		srv, err := devop.New(c.cfg)
		if err == nil {
			srv.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q) = %v, want an error saying %q", c.cfg.ClientAuthMethod, err, c.want)
		}
	}
}
