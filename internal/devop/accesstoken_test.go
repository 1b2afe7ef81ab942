package devop_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

// introspectionEndpoint is what srv's discovery names, with the
// authentication methods it takes there.
func introspectionEndpoint(t *testing.T, rp *relyingParty) (string, []string) {
	t.Helper()
	var doc struct {
		Endpoint string   `json:"introspection_endpoint"`
		Methods  []string `json:"introspection_endpoint_auth_methods_supported"`
	}
	if err := rp.provider.Claims(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Endpoint == "" {
		t.Fatal("discovery names no introspection_endpoint")
	}
	return doc.Endpoint, doc.Methods
}

// introspect asks the introspection endpoint about tok; basic, when set,
// is "id:secret", and extra joins the form.
func introspect(t *testing.T, endpoint, tok, basic string, extra url.Values) (int, map[string]any) {
	t.Helper()
	form := url.Values{"token": {tok}}
	for k, v := range extra {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
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
	return resp.StatusCode, body
}

func jwtPart(t *testing.T, raw string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %.20q...", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAccessTokensAreOpaqueByDefault(t *testing.T) {
	srv := startProvider(t, devop.Config{})
	tok, _ := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret).signIn(t)
	if strings.Count(tok.AccessToken, ".") == 2 {
		t.Errorf("the default access token looks like a JWT: %.20q...", tok.AccessToken)
	}
}

func TestJWTAccessTokens(t *testing.T) {
	srv := startProvider(t, devop.Config{AccessTokenType: devop.AccessTokenJWT})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret, oidc.ScopeEmail, oidc.ScopeOfflineAccess)
	tok, _ := rp.signIn(t)

	h := jwtPart(t, tok.AccessToken, 0)
	if h["alg"] != "RS256" || h["kid"] == nil || h["typ"] != "JWT" {
		t.Errorf("header %v, want RS256 with a kid and typ JWT", h)
	}
	// Signed with the provider's published keys.
	keys := oidc.NewRemoteKeySet(t.Context(), srv.Issuer()+"/keys")
	if _, err := keys.VerifySignature(t.Context(), tok.AccessToken); err != nil {
		t.Fatalf("the access token does not verify with the provider's keys: %v", err)
	}
	c := jwtPart(t, tok.AccessToken, 1)
	if c["iss"] != srv.Issuer() || c["sub"] != devop.DemoSubject || c["client_id"] != devop.DefaultClientID || c["jti"] == nil {
		t.Errorf("claims %v", c)
	}
	if aud, _ := c["aud"].([]any); len(aud) != 1 || aud[0] != devop.DefaultClientID {
		t.Errorf("aud %v, want the client", c["aud"])
	}
	for _, k := range []string{"iat", "nbf", "exp"} {
		v, _ := c[k].(float64)
		if d := time.Until(time.Unix(int64(v), 0)); k == "exp" && d < time.Minute || k != "exp" && d > time.Minute {
			t.Errorf("%s is %v away", k, d)
		}
	}

	// A refresh issues another JWT.
	stale := *tok
	stale.Expiry = time.Now().Add(-time.Minute)
	fresh, err := rp.oauth2.TokenSource(t.Context(), &stale).Token()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken == tok.AccessToken || strings.Count(fresh.AccessToken, ".") != 2 {
		t.Error("the refresh did not issue a new JWT access token")
	}
}

func TestNewRefusesAnUnknownAccessTokenType(t *testing.T) {
	if _, err := devop.New(devop.Config{AccessTokenType: "paseto"}); err == nil {
		t.Fatal("New took access token type paseto")
	}
}

// TestIntrospectionWithTheClientsCredentials: the zitadel provider answers
// the client about the tokens it was issued (their aud names it), once it
// authenticates with client_secret_basic or private_key_jwt.
func TestIntrospectionWithTheClientsCredentials(t *testing.T) {
	for _, typ := range []string{devop.AccessTokenOpaque, devop.AccessTokenJWT} {
		t.Run(typ, func(t *testing.T) {
			srv := startProvider(t, devop.Config{AccessTokenType: typ})
			rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret, oidc.ScopeEmail)
			tok, _ := rp.signIn(t)
			endpoint, methods := introspectionEndpoint(t, rp)
			if strings.Join(methods, " ") != "client_secret_basic private_key_jwt" {
				t.Errorf("introspection_endpoint_auth_methods_supported = %v", methods)
			}
			basic := devop.DefaultClientID + ":" + devop.DefaultClientSecret

			status, in := introspect(t, endpoint, tok.AccessToken, basic, nil)
			if status != http.StatusOK || in["active"] != true {
				t.Fatalf("%d %v, want active", status, in)
			}
			if in["sub"] != devop.DemoSubject || in["client_id"] != devop.DefaultClientID || in["email"] != devop.DemoEmail ||
				!strings.Contains(in["scope"].(string), "email") || in["exp"] == nil {
				t.Errorf("answer %v", in)
			}

			if _, in := introspect(t, endpoint, "not-a-token", basic, nil); in["active"] != false {
				t.Errorf("an unknown token: %v", in)
			}
			if status, _ := introspect(t, endpoint, tok.AccessToken, devop.DefaultClientID+":wrong", nil); status != http.StatusUnauthorized {
				t.Errorf("a wrong secret: %d, want 401", status)
			}
			// The secret in the form (client_secret_post) is not taken here.
			post := url.Values{"client_id": {devop.DefaultClientID}, "client_secret": {devop.DefaultClientSecret}}
			if status, _ := introspect(t, endpoint, tok.AccessToken, "", post); status != http.StatusUnauthorized {
				t.Errorf("client_secret_post: %d, want 401", status)
			}
		})
	}
}

func TestIntrospectionWithPrivateKeyJWT(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv := startProvider(t, devop.Config{
		ClientAuthMethod: devop.PrivateKeyJWT,
		ClientKeys:       map[string]crypto.PublicKey{"": key.Public()},
	})
	rp := newRelyingParty(t, srv, devop.DefaultClientID, "")
	rp.oauth2.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	rp.tokenParams = func() map[string]string {
		return map[string]string{"client_assertion_type": jwtBearer, "client_assertion": clientAssertion(t, srv, devop.DefaultClientID, key, "")}
	}
	tok, _ := rp.signIn(t)
	endpoint, _ := introspectionEndpoint(t, rp)
	assertion := url.Values{"client_assertion_type": {jwtBearer}, "client_assertion": {clientAssertion(t, srv, devop.DefaultClientID, key, "")}}
	if status, in := introspect(t, endpoint, tok.AccessToken, "", assertion); status != http.StatusOK || in["active"] != true || in["sub"] != devop.DemoSubject {
		t.Errorf("%d %v, want active", status, in)
	}
}

// TestDemoUserGroups: the demo user's groups reach the ID token, the
// userinfo endpoint, JWT access tokens and introspection answers.
func TestDemoUserGroups(t *testing.T) {
	want := strings.Join(devop.DemoGroups, ",")
	groups := func(v any) string {
		var out []string
		list, _ := v.([]any)
		for _, g := range list {
			s, _ := g.(string)
			out = append(out, s)
		}
		return strings.Join(out, ",")
	}
	for _, kind := range []string{devop.AccessTokenJWT, devop.AccessTokenOpaque} {
		srv := startProvider(t, devop.Config{AccessTokenType: kind})
		rp := newRelyingParty(t, srv, devop.DefaultClientID, devop.DefaultClientSecret, oidc.ScopeEmail, oidc.ScopeProfile)
		tok, idToken := rp.signIn(t)
		var idClaims map[string]any
		if err := idToken.Claims(&idClaims); err != nil {
			t.Fatal(err)
		}
		if got := groups(idClaims["groups"]); got != want {
			t.Errorf("%s: ID token groups %q, want %q", kind, got, want)
		}
		info, err := rp.provider.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatal(err)
		}
		var infoClaims map[string]any
		if err := info.Claims(&infoClaims); err != nil {
			t.Fatal(err)
		}
		if got := groups(infoClaims["groups"]); got != want {
			t.Errorf("%s: userinfo groups %q, want %q", kind, got, want)
		}
		if kind == devop.AccessTokenJWT {
			if got := groups(jwtPart(t, tok.AccessToken, 1)["groups"]); got != want {
				t.Errorf("JWT access token groups %q, want %q", got, want)
			}
		}
		endpoint, _ := introspectionEndpoint(t, rp)
		if _, in := introspect(t, endpoint, tok.AccessToken, devop.DefaultClientID+":"+devop.DefaultClientSecret, nil); groups(in["groups"]) != want {
			t.Errorf("%s: introspection answer %v, want groups %q", kind, in, want)
		}
	}
}
