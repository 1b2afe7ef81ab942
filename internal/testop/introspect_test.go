package testop

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// introspect asks p's introspection endpoint about tok, authenticating
// with basic ("id:secret") when set.
func introspect(t *testing.T, p *Provider, form url.Values, basic string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, discovery(t, p.Issuer())["introspection_endpoint"].(string), strings.NewReader(form.Encode()))
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

func clientBasic(p *Provider) string { return p.ClientID() + ":" + p.ClientSecret() }

func tokenForm(tok string) url.Values { return url.Values{"token": {tok}} }

func TestIntrospectionIsAnnounced(t *testing.T) {
	p := newOP(t, Config{TokenAuthMethods: []string{ClientSecretPost}})
	doc := discovery(t, p.Issuer())
	if doc["introspection_endpoint"] != p.Issuer()+"/introspect" {
		t.Errorf("introspection_endpoint = %v", doc["introspection_endpoint"])
	}
	if m, _ := doc["introspection_endpoint_auth_methods_supported"].([]any); len(m) != 1 || m[0] != ClientSecretPost {
		t.Errorf("introspection_endpoint_auth_methods_supported = %v", doc["introspection_endpoint_auth_methods_supported"])
	}
}

func TestIntrospectionOfIssuedTokens(t *testing.T) {
	for _, format := range []string{AccessTokenOpaque, AccessTokenJWT} {
		t.Run(format, func(t *testing.T) {
			p := newOP(t, Config{AccessTokenFormat: format, AccessTokenAudience: []string{"https://api.example"}})
			l := newRP(t, p).mustLogin(t)
			status, in := introspect(t, p, tokenForm(l.token.AccessToken), clientBasic(p))
			if status != http.StatusOK || in["active"] != true {
				t.Fatalf("%d %v, want active", status, in)
			}
			for k, want := range map[string]any{
				"sub": "user-1", "scope": "openid email", "client_id": p.ClientID(),
				"aud": "https://api.example", "iss": p.Issuer(), "token_type": "Bearer",
			} {
				if in[k] != want {
					t.Errorf("%s = %v, want %v", k, in[k], want)
				}
			}
			exp, _ := in["exp"].(float64)
			if d := time.Until(time.Unix(int64(exp), 0)); d < 59*time.Minute || d > time.Hour {
				t.Errorf("exp is %v away, want an hour", d)
			}
			if format == AccessTokenJWT {
				if in["username"] != "alice@example.com" || in["jti"] != jwtClaims(t, l.token.AccessToken)["jti"] {
					t.Errorf("username %v, jti %v: want the token's", in["username"], in["jti"])
				}
			} else if in["username"] != "user-1" {
				t.Errorf("username %v, want the subject", in["username"])
			}
			form, hdr, method := p.LastIntrospectionRequest()
			if form.Get("token") != l.token.AccessToken || hdr.Get("Authorization") == "" || method != ClientSecretBasic {
				t.Errorf("last request: %v, %v, %q", form, hdr, method)
			}
		})
	}
}

func TestIntrospectionOfInactiveTokens(t *testing.T) {
	p := newOP(t, Config{})
	revoked := p.MintOpaqueAccessToken(AccessTokenSpec{})
	p.RevokeAccessToken(revoked)
	short := p.MintOpaqueAccessToken(AccessTokenSpec{TTL: time.Second})
	for name, tok := range map[string]string{
		"unknown":       "no-such-token",
		"expired":       p.MintOpaqueAccessToken(AccessTokenSpec{Fault: AccessTokenExpired}),
		"not yet valid": p.MintOpaqueAccessToken(AccessTokenSpec{Fault: AccessTokenNotYetValid}),
		"revoked":       revoked,
	} {
		status, in := introspect(t, p, tokenForm(tok), clientBasic(p))
		if status != http.StatusOK || len(in) != 1 || in["active"] != false {
			t.Errorf("%s: %d %v, want only active false", name, status, in)
		}
	}
	if _, in := introspect(t, p, tokenForm(short), clientBasic(p)); in["active"] != true {
		t.Fatalf("a token of a second: %v", in)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, in := introspect(t, p, tokenForm(short), clientBasic(p)); in["active"] != false {
		t.Errorf("after its expiry: %v", in)
	}
}

func TestIntrospectionOfMintedOpaqueToken(t *testing.T) {
	p := newOP(t, Config{})
	tok := p.MintOpaqueAccessToken(AccessTokenSpec{
		Subject: "svc", Audience: []string{"a", "b"}, Scope: "orders:read",
		Claims: map[string]any{"groups": []string{"ops"}, "preferred_username": "svc-user", "client_id": nil},
	})
	if strings.Contains(tok, ".") || len(tok) != 64 {
		t.Errorf("minted opaque token %q", tok)
	}
	_, in := introspect(t, p, tokenForm(tok), clientBasic(p))
	if in["active"] != true || in["sub"] != "svc" || in["scope"] != "orders:read" || in["username"] != "svc-user" {
		t.Errorf("answer %v", in)
	}
	if aud, _ := in["aud"].([]any); len(aud) != 2 {
		t.Errorf("aud %v, want both", in["aud"])
	}
	if g, _ := in["groups"].([]any); len(g) != 1 || g[0] != "ops" {
		t.Errorf("groups %v", in["groups"])
	}
	if _, ok := in["client_id"]; ok {
		t.Error("a claim mapped to nil is in the answer")
	}
}

func TestIntrospectionAuthenticatesTheClient(t *testing.T) {
	p := newOP(t, Config{})
	tok := p.MintOpaqueAccessToken(AccessTokenSpec{})
	cases := []struct {
		name   string
		form   url.Values
		basic  string
		status int
	}{
		{"basic", tokenForm(tok), clientBasic(p), http.StatusOK},
		{"post", url.Values{"token": {tok}, "client_id": {p.ClientID()}, "client_secret": {p.ClientSecret()}}, "", http.StatusOK},
		{"wrong secret", tokenForm(tok), p.ClientID() + ":wrong", http.StatusUnauthorized},
		{"none", tokenForm(tok), "", http.StatusUnauthorized},
		{"no token", url.Values{}, clientBasic(p), http.StatusBadRequest},
	}
	for _, c := range cases {
		if status, in := introspect(t, p, c.form, c.basic); status != c.status {
			t.Errorf("%s: %d %v, want %d", c.name, status, in, c.status)
		}
	}
	if p.IntrospectionCalls() != len(cases) {
		t.Errorf("IntrospectionCalls = %d, want %d", p.IntrospectionCalls(), len(cases))
	}

	// A client assertion may name the introspection endpoint as its
	// audience.
	jp := newOP(t, Config{ClientSecret: longSecret, TokenAuthMethods: []string{ClientSecretJWT}})
	claims := assertionClaims(jp)
	claims["aud"] = jp.Issuer() + "/introspect"
	assertion := signAssertion(t, "HS256", []byte(longSecret), "", nil, claims)
	if status, in := introspect(t, jp, withAssertion(tokenForm(jp.MintOpaqueAccessToken(AccessTokenSpec{})), assertion), ""); status != 200 || in["active"] != true {
		t.Errorf("client_secret_jwt: %d %v", status, in)
	}
	if _, _, method := jp.LastIntrospectionRequest(); method != ClientSecretJWT {
		t.Errorf("method %q", method)
	}
}

func TestIntrospectionFailures(t *testing.T) {
	p := newOP(t, Config{})
	tok := p.MintOpaqueAccessToken(AccessTokenSpec{})
	for _, status := range []int{http.StatusServiceUnavailable, http.StatusInternalServerError, http.StatusUnauthorized} {
		p.SetIntrospectionStatus(status)
		if got, _ := introspect(t, p, tokenForm(tok), clientBasic(p)); got != status {
			t.Errorf("SetIntrospectionStatus(%d): %d", status, got)
		}
	}
	p.SetIntrospectionStatus(0)

	p.SetIntrospectionDelay(300 * time.Millisecond)
	start := time.Now()
	if _, in := introspect(t, p, tokenForm(tok), clientBasic(p)); in["active"] != true || time.Since(start) < 300*time.Millisecond {
		t.Errorf("delayed answer %v after %v", in, time.Since(start))
	}
	p.SetIntrospectionDelay(0)

	// A client that gives up ends the wait; so does Close.
	p.SetIntrospectionDelay(time.Hour)
	c := &http.Client{Timeout: 200 * time.Millisecond}
	if _, err := c.PostForm(p.Issuer()+"/introspect", tokenForm(tok)); err == nil {
		t.Error("an hour's delay answered")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = http.PostForm(p.Issuer()+"/introspect", tokenForm(tok))
	}()
	for p.IntrospectionCalls() < 6 {
		time.Sleep(10 * time.Millisecond)
	}
	p.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("Close did not end a delayed introspection")
	}
}
