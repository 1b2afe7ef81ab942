package provider

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// userinfoReason is the Reason of a *UserinfoError, or "" for another error.
func userinfoReason(err error) string {
	var ue *UserinfoError
	if errors.As(err, &ue) {
		return ue.Reason
	}
	return ""
}

func claimsOf(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, b)
	}
	return m
}

// TestUserInfoSendsTheTokenInTheAuthorizationHeaderOnly: RFC 6750 2.1, and
// never in the URL, where logs keep it.
func TestUserInfoSendsTheTokenInTheAuthorizationHeaderOnly(t *testing.T) {
	op := startOP(t, testop.Config{UserinfoClaims: map[string]any{"team": "blue"}})
	st := runProvider(t, configFor(op)).Current()
	tok := signIn(t, st)
	info, err := st.UserInfo(t.Context(), tok.AccessToken, "user-1")
	if err != nil {
		t.Fatal(err)
	}
	if c := claimsOf(t, info); c["sub"] != "user-1" || c["team"] != "blue" || c["email"] != "alice@example.com" {
		t.Errorf("claims %v", c)
	}
	h, q := op.LastUserinfoRequest()
	if op.UserinfoCalls() != 1 || h.Get("Authorization") != "Bearer "+tok.AccessToken || len(q) != 0 {
		t.Errorf("%d calls; Authorization %.20q; query %v", op.UserinfoCalls(), h.Get("Authorization"), q)
	}
	if !strings.Contains(h.Get("Accept"), "application/jwt") {
		t.Errorf("Accept %q does not ask for signed answers too", h.Get("Accept"))
	}
}

// TestUserInfoAcceptsASignedAnswer: application/jwt, verified with the
// provider's keys, also after they rotated.
func TestUserInfoAcceptsASignedAnswer(t *testing.T) {
	op := startOP(t, testop.Config{UserinfoClaims: map[string]any{"team": "blue"}})
	st := runProvider(t, configFor(op)).Current()
	tok := signIn(t, st)
	op.SetUserinfoSigned(true)
	for range 2 {
		info, err := st.UserInfo(t.Context(), tok.AccessToken, "user-1")
		if err != nil {
			t.Fatal(err)
		}
		if c := claimsOf(t, info); c["sub"] != "user-1" || c["team"] != "blue" || c["aud"] != op.ClientID() || c["iss"] != op.Issuer() {
			t.Errorf("claims %v", c)
		}
		op.RotateKeys(false)
	}
}

// TestUserInfoRefusals: what must not become the user's claims, and what
// is only the provider being unavailable.
func TestUserInfoRefusals(t *testing.T) {
	op := startOP(t, testop.Config{})
	st := runProvider(t, configFor(op)).Current()
	tok := signIn(t, st)
	for _, c := range []struct {
		m           testop.UserinfoMisbehavior
		reason      string // of the UserinfoError; "" for ErrUnavailable
		unavailable bool
		says        string
	}{
		{testop.UserinfoOtherSubject, "subject", false, "another subject"},
		{testop.UserinfoBadSignature, "signature", false, "does not verify"},
		{testop.UserinfoWrongAudience, "signature", false, "not for this client"},
		{testop.UserinfoUnauthorized, "refused", false, "invalid_token"},
		{testop.UserinfoNotJSON, "malformed", false, "neither JSON nor a JWT"},
		{testop.UserinfoServerError, "", true, "500"},
	} {
		t.Run(c.m.String(), func(t *testing.T) {
			op.SetUserinfoMisbehavior(c.m)
			info, err := st.UserInfo(t.Context(), tok.AccessToken, "user-1")
			if err == nil {
				t.Fatalf("accepted: %s", info)
			}
			if got := userinfoReason(err); got != c.reason || errors.Is(err, ErrUnavailable) != c.unavailable {
				t.Errorf("refused for %q (unavailable: %v): %v; want %q (unavailable: %v)", got, errors.Is(err, ErrUnavailable), err, c.reason, c.unavailable)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("%q does not say %q", err, c.says)
			}
			if strings.Contains(err.Error(), tok.AccessToken) {
				t.Error("the error names the access token")
			}
		})
	}
	op.SetUserinfoMisbehavior(testop.UserinfoBehaves)
	if _, err := st.UserInfo(t.Context(), tok.AccessToken, "someone-else"); userinfoReason(err) != "subject" {
		t.Errorf("the ID token's sub differs: %v", err)
	}
	op.SetDown(true)
	if _, err := st.UserInfo(t.Context(), tok.AccessToken, "user-1"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("provider down: %v", err)
	}
}

func TestUserInfoWithoutEndpoint(t *testing.T) {
	op := startOP(t, testop.Config{})
	op.RemoveUserinfoEndpoint()
	st := runProvider(t, configFor(op)).Current()
	if _, err := st.UserInfo(t.Context(), signIn(t, st).AccessToken, "user-1"); !errors.Is(err, ErrNoUserinfo) {
		t.Fatalf("err = %v, want ErrNoUserinfo", err)
	}
	if op.UserinfoCalls() != 0 {
		t.Error("an endpoint discovery does not name was called")
	}
}

// TestUserInfoIsCompacted: the claims end up in placeholders that header
// values take; a provider's pretty-printing and final newline must not
// make those invalid.
func TestUserInfoIsCompacted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, "{\n  \"sub\": \"user-1\",\n  \"name\": \"Zo\\u00eb  Smith\",\n  \"n\": 1.50\n}\n")
	}))
	t.Cleanup(srv.Close)
	st := &State{Metadata: Metadata{UserinfoEndpoint: srv.URL}, p: New(Config{})}
	info, err := st.UserInfo(t.Context(), "token", "user-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"sub":"user-1","name":"Zo\u00eb  Smith","n":1.50}`; string(info) != want {
		t.Errorf("claims %s, want %s", info, want)
	}
}
