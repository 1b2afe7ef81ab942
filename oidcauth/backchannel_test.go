package oidcauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// FuzzLogoutToken: the back-channel logout endpoint is open to anyone who
// can reach it, and a logout token it accepts ends sessions. Only a token
// the provider signed is accepted; anything else is refused with 400 and a
// fixed description, never with the reason (which goes to the log), the
// sender's text, a URL or a library's error.
//
// The request body is form, then logout_token=token when token is not
// empty; method is the request's method, POST when empty.
func FuzzLogoutToken(f *testing.F) {
	p, err := testop.New(testop.Config{ClientID: "client"})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(p.Close)
	h := newTestHandler(f, &Handler{ProviderConfig: ProviderConfig{Issuer: p.Issuer()}})
	if _, err := h.defaultProvider().op.Get(context.Background()); err != nil {
		f.Fatal(err)
	}
	logout := func(method, body string) *httptest.ResponseRecorder {
		r := caddyRequest(httptest.NewRequest(http.MethodPost, "http://example.com/oauth2/backchannel-logout", strings.NewReader(body)))
		r.Method = method
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, r, &recordingNext{}); err != nil {
			rec.Code = http.StatusInternalServerError
		}
		return rec
	}
	// A token the provider signed is accepted: the refusals below are not
	// all the endpoint can say.
	genuine, err := p.LogoutToken("user-1", "")
	if err != nil {
		f.Fatal(err)
	}
	if rec := logout(http.MethodPost, url.Values{"logout_token": {genuine}}.Encode()); rec.Code != http.StatusOK {
		f.Fatalf("a genuine logout token: %d %s", rec.Code, rec.Body)
	}

	f.Fuzz(func(t *testing.T, method, token, form string) {
		if method == "" {
			method = http.MethodPost
		}
		body := form
		if token != "" {
			if body != "" {
				body += "&"
			}
			body += "logout_token=" + url.QueryEscape(token)
		}
		status, description := http.StatusBadRequest, "the logout token is not valid"
		if values, err := url.ParseQuery(body); method != http.MethodPost {
			status, description = http.StatusMethodNotAllowed, "use POST"
		} else if err != nil || len(body) > maxLogoutRequest {
			description = "unreadable form"
		} else if values.Get("logout_token") == "" {
			description = "no logout_token"
		}

		rec := logout(method, body)
		if rec.Code != status {
			t.Fatalf("%s %q: status %d, want %d\n%s", method, body, rec.Code, status, rec.Body)
		}
		if status == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != http.MethodPost {
			t.Fatalf("Allow %q, want POST", rec.Header().Get("Allow"))
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Fatalf("Cache-Control %q, want no-store", got)
		}
		if got := rec.Header().Get("Content-Type"); got != "application/json" {
			t.Fatalf("Content-Type %q, want application/json", got)
		}
		var answer map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("body %q: %v", rec.Body, err)
		}
		if len(answer) != 2 || answer["error"] != "invalid_request" || answer["error_description"] != description {
			t.Fatalf("%s %q: answered %q, want invalid_request, %q", method, body, rec.Body, description)
		}
	})
}
