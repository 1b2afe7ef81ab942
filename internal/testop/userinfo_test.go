package testop

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// getWithToken GETs url with the access token in the Authorization header
// and returns the response and its body.
func getWithToken(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// userinfo GETs the userinfo endpoint with token.
func userinfo(t *testing.T, p *Provider, token string) (*http.Response, string) {
	t.Helper()
	return getWithToken(t, p.issuer+"/userinfo", token)
}

// discovery returns the discovery document at issuer.
func discovery(t *testing.T, issuer string) map[string]any {
	t.Helper()
	resp, body := getWithToken(t, issuer+"/.well-known/openid-configuration", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery at %s: %d %s", issuer, resp.StatusCode, body)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// verifyJWT checks raw's signature with the key its kid names in the
// provider's JWKS (wherever discovery says it is) and returns its claims.
func verifyJWT(t *testing.T, p *Provider, raw string) (map[string]any, error) {
	t.Helper()
	resp, body := getWithToken(t, discovery(t, p.Issuer())["jwks_uri"].(string), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, err
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		return nil, errors.New("the kid names no published key")
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return nil, err
	}
	var c map[string]any
	return c, json.Unmarshal(payload, &c)
}

func jsonObject(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %q", err, body)
	}
	return m
}

func TestUserinfoAnswersTheIDTokensEmailAndNameByDefault(t *testing.T) {
	p := newOP(t, Config{Claims: map[string]any{"groups": []string{"a"}}})
	l := newRP(t, p).mustLogin(t)
	resp, body := userinfo(t, p, l.token.AccessToken)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	got := jsonObject(t, body)
	if len(got) != 3 || got["sub"] != "user-1" || got["email"] != "alice@example.com" || got["name"] != "Alice Example" {
		t.Errorf("userinfo = %v", got)
	}
}

// TestUserinfoClaimsAreConfiguredApartFromTheIDTokens: a thin ID token
// (no email, no name) and claims at userinfo only, as Okta answers.
func TestUserinfoClaimsAreConfiguredApartFromTheIDTokens(t *testing.T) {
	p := newOP(t, Config{
		Claims:         map[string]any{"email": nil, "name": nil},
		UserinfoClaims: map[string]any{"email": "thin@example.com", "department": "R&D", "address": map[string]any{"country": "CH"}},
	})
	l := newRP(t, p).mustLogin(t)
	idt := jwtClaims(t, l.rawIDToken)
	if _, ok := idt["email"]; ok {
		t.Errorf("the thin ID token has an email: %v", idt)
	}
	if _, ok := idt["department"]; ok {
		t.Errorf("a userinfo claim is in the ID token: %v", idt)
	}
	got := jsonObject(t, func() string { _, b := userinfo(t, p, l.token.AccessToken); return b }())
	if got["sub"] != "user-1" || got["email"] != "thin@example.com" || got["department"] != "R&D" ||
		got["address"].(map[string]any)["country"] != "CH" || got["name"] != nil {
		t.Errorf("userinfo = %v", got)
	}

	// Replaced at run time; nil removes what the ID token would give.
	if err := p.SetClaims(nil); err != nil {
		t.Fatal(err)
	}
	if err := p.SetUserinfoClaims(map[string]any{"name": nil, "team": "blue", "sub": "ignored"}); err != nil {
		t.Fatal(err)
	}
	got = jsonObject(t, func() string { _, b := userinfo(t, p, l.token.AccessToken); return b }())
	if got["sub"] != "user-1" || got["team"] != "blue" || got["email"] != "alice@example.com" || got["name"] != nil || got["department"] != nil {
		t.Errorf("userinfo after SetUserinfoClaims = %v", got)
	}
	if err := p.SetUserinfoClaims(map[string]any{"bad": make(chan int)}); err == nil {
		t.Error("SetUserinfoClaims accepted claims that are not JSON")
	}
	if _, err := New(Config{UserinfoClaims: map[string]any{"bad": func() {}}}); err == nil {
		t.Error("New accepted userinfo claims that are not JSON")
	}
}

func TestUserinfoCountsCallsAndRecordsTheLastRequest(t *testing.T) {
	p := newOP(t, Config{})
	if h, q := p.LastUserinfoRequest(); h != nil || q != nil || p.UserinfoCalls() != 0 {
		t.Fatal("a userinfo request recorded before any")
	}
	l := newRP(t, p).mustLogin(t)
	userinfo(t, p, l.token.AccessToken)
	resp, _ := getWithToken(t, p.issuer+"/userinfo?x=1", "forged")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("a forged token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	h, q := p.LastUserinfoRequest()
	if p.UserinfoCalls() != 2 || h.Get("Authorization") != "Bearer forged" || q.Get("x") != "1" {
		t.Errorf("calls %d, last Authorization %q, query %v", p.UserinfoCalls(), h.Get("Authorization"), q)
	}
}

func TestUserinfoMisbehaviors(t *testing.T) {
	p := newOP(t, Config{})
	l := newRP(t, p).mustLogin(t)
	for _, c := range []struct {
		m      UserinfoMisbehavior
		status int
		check  func(t *testing.T, resp *http.Response, body string)
	}{
		{UserinfoOtherSubject, 200, func(t *testing.T, _ *http.Response, body string) {
			if got := jsonObject(t, body); got["sub"] != "user-1invalid" || got["email"] != "alice@example.com" {
				t.Errorf("userinfo = %v", got)
			}
		}},
		{UserinfoServerError, 500, nil},
		{UserinfoUnauthorized, 401, func(t *testing.T, resp *http.Response, _ string) {
			if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		}},
		{UserinfoNotJSON, 200, func(t *testing.T, resp *http.Response, body string) {
			if json.Valid([]byte(body)) || strings.Contains(resp.Header.Get("Content-Type"), "json") {
				t.Errorf("%s answer is JSON: %s", resp.Header.Get("Content-Type"), body)
			}
		}},
		{UserinfoBadSignature, 200, func(t *testing.T, resp *http.Response, body string) {
			if resp.Header.Get("Content-Type") != "application/jwt" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if _, err := verifyJWT(t, p, body); err == nil {
				t.Error("the corrupted signature verifies")
			}
			if c := jwtClaims(t, body); c["sub"] != "user-1" || c["aud"] != p.ClientID() {
				t.Errorf("claims %v", c)
			}
		}},
		{UserinfoWrongAudience, 200, func(t *testing.T, resp *http.Response, body string) {
			c, err := verifyJWT(t, p, body)
			if err != nil || resp.Header.Get("Content-Type") != "application/jwt" {
				t.Fatalf("%s: %v", resp.Header.Get("Content-Type"), err)
			}
			if c["aud"] != "some-other-client" || c["iss"] != p.Issuer() || c["sub"] != "user-1" {
				t.Errorf("claims %v", c)
			}
		}},
	} {
		t.Run(c.m.String(), func(t *testing.T) {
			p.SetUserinfoMisbehavior(c.m)
			resp, body := userinfo(t, p, l.token.AccessToken)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, body)
			}
			if c.check != nil {
				c.check(t, resp, body)
			}
		})
	}
	p.SetUserinfoMisbehavior(UserinfoBehaves)
	if resp, body := userinfo(t, p, l.token.AccessToken); resp.StatusCode != 200 || jsonObject(t, body)["sub"] != "user-1" {
		t.Errorf("after UserinfoBehaves: %d %s", resp.StatusCode, body)
	}
	if UserinfoMisbehavior(99).String() != "UserinfoMisbehavior(99)" || UserinfoNotJSON.String() != "UserinfoNotJSON" {
		t.Error("String")
	}
}

// TestSignedUserinfo: application/jwt, RS256 with the current key and its
// kid, iss and aud (OpenID Connect Core 5.3.2).
func TestSignedUserinfo(t *testing.T) {
	p := newOP(t, Config{UserinfoClaims: map[string]any{"team": "blue"}})
	l := newRP(t, p).mustLogin(t)
	p.SetUserinfoSigned(true)
	p.RotateKeys(true)
	resp, body := userinfo(t, p, l.token.AccessToken)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jwt" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	c, err := verifyJWT(t, p, body)
	if err != nil {
		t.Fatal(err)
	}
	if c["iss"] != p.Issuer() || c["aud"] != p.ClientID() || c["sub"] != "user-1" || c["team"] != "blue" || c["email"] != "alice@example.com" {
		t.Errorf("claims %v", c)
	}
	h := jwtHeader(t, body)
	p.mu.Lock()
	kid := p.current.kid
	p.mu.Unlock()
	if h["alg"] != "RS256" || h["kid"] != kid {
		t.Errorf("header %v, want RS256 with the current key %s", h, kid)
	}
	p.SetUserinfoSigned(false)
	if resp, body := userinfo(t, p, l.token.AccessToken); jsonObject(t, body)["team"] != "blue" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("unsigned again: %s %s", resp.Header.Get("Content-Type"), body)
	}
}

func TestRemoveUserinfoEndpoint(t *testing.T) {
	p := newOP(t, Config{})
	l := newRP(t, p).mustLogin(t)
	if discovery(t, p.Issuer())["userinfo_endpoint"] != p.Issuer()+"/userinfo" {
		t.Fatal("no userinfo_endpoint before")
	}
	p.RemoveUserinfoEndpoint()
	if v, ok := discovery(t, p.Issuer())["userinfo_endpoint"]; ok {
		t.Errorf("discovery still names %v", v)
	}
	if resp, _ := userinfo(t, p, l.token.AccessToken); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/userinfo answers %d, want 404", resp.StatusCode)
	}
}
