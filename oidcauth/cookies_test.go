package oidcauth

import (
	"net/http/httptest"
	"testing"
)

func TestRequestCookieFindsExactName(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", `a=1; oidc_session_1=two; oidc_session="one"`)
	r.Header.Add("Cookie", "other=x;oidc=y")
	for name, want := range map[string]string{"oidc_session": "one", "oidc_session_1": "two", "oidc": "y", "a": "1"} {
		if got, ok := requestCookie(r, name); !ok || got != want {
			t.Errorf("%s = %q, %v; want %q", name, got, ok, want)
		}
	}
	if _, ok := requestCookie(r, "missing"); ok {
		t.Error("found a missing cookie")
	}
}

func TestChunkHeaderParsing(t *testing.T) {
	for v, want := range map[string]int{"2.abc": 2, "8.x": 8, "9.x": 0, "1.x": 0, "abc": 0, ".x": 0, "100.x": 0} {
		n, _, ok := parseChunkHeader(v)
		if (want == 0) == ok || (ok && n != want) {
			t.Errorf("parseChunkHeader(%q) = %d, %v", v, n, ok)
		}
	}
	if !isChunkName("s_2", "s") || isChunkName("s_login_x", "s") || isChunkName("s_", "s") {
		t.Error("isChunkName")
	}
}

// TestScanCookiesSeparatesOwnCookiesFromOthers: one pass finds the session
// chunks (the first of a repeated name wins) and keeps every other cookie,
// in order, for the upstream; the login-state cookies are oidc_auth's too.
func TestScanCookiesSeparatesOwnCookiesFromOthers(t *testing.T) {
	h := &Handler{CookieName: "oidc_session"}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", `a=1; oidc_session_1=two; oidc_session="one"; oidc_session_login_abc=state`)
	r.Header.Add("Cookie", "other=x;oidc=y; oidc_session=dup;;oidc_session_9=no; oidc_session_x=z")
	var rc requestCookies
	h.scanCookies(r, "oidc_session", &rc)
	for i, want := range map[int]string{0: "one", 1: "two"} {
		if got, ok := rc.session.chunk(i); !ok || got != want {
			t.Errorf("chunk %d = %q, %v; want %q", i, got, ok, want)
		}
	}
	if _, ok := rc.session.chunk(2); ok {
		t.Error("found a missing chunk")
	}
	lines := r.Header["Cookie"]
	if got := h.stripOwnCookies(r, &rc); len(got) != 2 || got[0] != lines[0] {
		t.Errorf("stripOwnCookies returned %q, want the lines as sent", got)
	}
	want := "a=1; other=x; oidc=y; oidc_session_x=z" // oidc_session_9 is named like a chunk
	if got := r.Header["Cookie"]; len(got) != 1 || got[0] != want {
		t.Errorf("Cookie passed on = %q, want %q", got, want)
	}
}

// TestStripOwnCookiesLeavesRequestsWithoutThem: a request without any of
// oidc_auth's cookies is passed on untouched.
func TestStripOwnCookiesLeavesRequestsWithoutThem(t *testing.T) {
	h := &Handler{CookieName: "oidc_session"}
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Add("Cookie", "a=1;  b=2")
	var rc requestCookies
	h.scanCookies(r, "oidc_session", &rc)
	if got := h.stripOwnCookies(r, &rc); got != nil || r.Header.Get("Cookie") != "a=1;  b=2" {
		t.Errorf("stripOwnCookies = %q, Cookie now %q", got, r.Header.Get("Cookie"))
	}
}
