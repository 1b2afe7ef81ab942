package main

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

// serve sends one request with the given headers to an api checking tokens
// at the provider at issuer, and returns the raw answer and its fields.
func serve(t *testing.T, issuer string, headers map[string]string) (string, answer) {
	t.Helper()
	a := &api{issuer: issuer, client: &http.Client{Timeout: 5 * time.Second}}
	req := httptest.NewRequest(http.MethodGet, "/api/whoami", nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	var ans answer
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, rec.Body)
	}
	return rec.Body.String(), ans
}

func TestAnswerDescribesARejectedTokenWithoutQuotingIt(t *testing.T) {
	op, err := devop.New(devop.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)

	const token = "not-an-access-token-of-this-provider"
	body, ans := serve(t, op.Issuer(), map[string]string{
		"Authorization": "Bearer " + token,
		"X-User-Email":  devop.DemoEmail,
	})
	if ans.Valid || ans.Error != "userinfo answered 401" {
		t.Errorf("valid %t, error %q; want the provider's refusal", ans.Valid, ans.Error)
	}
	if ans.Bearer == nil || ans.Bearer.Placeholder || ans.Bearer.Format != "opaque" || ans.Bearer.Length != len(token) {
		t.Errorf("bearer = %+v, want an opaque %d-character token", ans.Bearer, len(token))
	}
	if strings.Contains(body, token) {
		t.Errorf("the answer quotes the token:\n%s", body)
	}
	if strings.Join(ans.Headers, ",") != "Authorization,X-User-Email" || ans.ForwardedEmail != devop.DemoEmail {
		t.Errorf("headers %q, forwarded email %q", ans.Headers, ans.ForwardedEmail)
	}
}

func TestAnswerFlagsAnUnreplacedPlaceholder(t *testing.T) {
	// No provider: a placeholder is refused before anyone is asked.
	_, ans := serve(t, "http://127.0.0.1:1", map[string]string{"Authorization": "Bearer <<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"})
	if ans.Valid || ans.Bearer == nil || !ans.Bearer.Placeholder || !strings.Contains(ans.Error, "placeholder") {
		t.Errorf("answer to a placeholder: %+v (bearer %+v)", ans, ans.Bearer)
	}
}

func TestAnswerReadsTheForwardedIDTokensSubject(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	idToken := enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"sub":"demo-user"}`)) + ".c2ln"
	body, ans := serve(t, "http://127.0.0.1:1", map[string]string{"X-ID-Token": idToken})
	if !ans.IDTokenForwarded || ans.IDTokenSub != "demo-user" || ans.Bearer != nil || ans.Error != "no bearer token" {
		t.Errorf("answer: %s", body)
	}
	if strings.Contains(body, idToken) {
		t.Errorf("the answer quotes the ID token:\n%s", body)
	}
}
