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
