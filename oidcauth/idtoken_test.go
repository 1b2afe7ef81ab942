package oidcauth

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func decodeClaims(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestClaimPathsReachNestedAndNamespacedClaims(t *testing.T) {
	claims := decodeClaims(t, `{
		"email": "a@example.com",
		"address": {"country": "CH", "geo": {"lat": 46.9480}},
		"https://example.com/roles": ["r1", "r2"],
		"a.b": {"c": "dotted key"},
		"a": {"b": {"d": "nested"}},
		"n": 12345678901234567890,
		"f": 1e3,
		"ok": true,
		"none": null,
		"mixed": [1, "x", {"k": "v"}]
	}`)
	for path, want := range map[string]string{
		"email":                     "a@example.com",
		"address.country":           "CH",
		"address.geo.lat":           "46.9480",
		"address.geo":               `{"lat":46.9480}`,
		"https://example.com/roles": "r1,r2",
		"a.b.c":                     "dotted key",
		"a.b.d":                     "nested",
		"n":                         "12345678901234567890",
		"f":                         "1e3",
		"ok":                        "true",
		"none":                      "",
		"mixed":                     `1,x,{"k":"v"}`,
	} {
		v, ok := claimAt(claims, path)
		if !ok {
			t.Errorf("%s: not found", path)
			continue
		}
		if got := formatClaim(v); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	for _, missing := range []string{"nope", "address.city", "email.x", ""} {
		if _, ok := claimAt(claims, missing); ok {
			t.Errorf("%q found", missing)
		}
	}
}

// TestFormattedRequestContextShowsNoToken: the request state is the
// request's context, so formatting the context (%v, as a debugging log
// line might) must not print the session's tokens or its sealed cookie.
func TestFormattedRequestContextShowsNoToken(t *testing.T) {
	h := newTestHandler(t, &Handler{})
	s := testSession(time.Now(), 0, 100)
	r := signedInRequest(t, h, s)
	sealed := r.Header.Get("Cookie") // the sealed session: a bearer credential too
	next := &recordingNext{}
	if err := h.ServeHTTP(httptest.NewRecorder(), caddyRequest(r), next); err != nil || next.r == nil {
		t.Fatalf("not authenticated: %v", err)
	}
	text := fmt.Sprintf("%v %+v", next.r.Context(), next.r.Context())
	for _, secret := range []string{s.AccessToken(), s.RefreshToken(), s.RawIDToken(), sealed} {
		if secret != "" && strings.Contains(text, secret) {
			t.Fatalf("formatted context holds a token: %.200s", text)
		}
	}
}
