package oidcauth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSafeRedirectAllowsOnlySameOriginPaths(t *testing.T) {
	for rd, want := range map[string]string{
		"/":                      "/",
		"/app/page?x=1#frag":     "/app/page?x=1#frag",
		"":                       "/",
		"//evil.example":         "/",
		"///evil.example":        "/",
		"/\\evil.example":        "/",
		"/\t/evil.example":       "/",
		"/%0a/evil":              "/%0a/evil",
		"https://evil.example/":  "/",
		"evil.example":           "/",
		"javascript:alert(1)":    "/",
		"/path\r\nSet-Cookie: x": "/",
	} {
		if got := safeRedirect(rd); got != want {
			t.Errorf("safeRedirect(%q) = %q, want %q", rd, got, want)
		}
	}
}

func TestUnauthenticatedAutoModeRedirectsOnlyNavigations(t *testing.T) {
	h := &Handler{Unauthenticated: "auto"}
	cases := []struct {
		method string
		header map[string]string
		want   bool
	}{
		{"GET", map[string]string{"Accept": "text/html,*/*"}, true},
		{"GET", map[string]string{"Sec-Fetch-Mode": "navigate", "Accept": "*/*"}, true},
		{"GET", map[string]string{"Sec-Fetch-Mode": "cors", "Accept": "text/html"}, false},
		{"GET", map[string]string{"Accept": "application/json"}, false},
		{"GET", map[string]string{"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"}, false},
		{"POST", map[string]string{"Accept": "text/html"}, false},
		{"HEAD", map[string]string{"Accept": "text/html"}, true},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, "/", nil)
		for k, v := range c.header {
			r.Header.Set(k, v)
		}
		if got := h.wantsRedirect(r); got != c.want {
			t.Errorf("%s %v: redirect=%v, want %v", c.method, c.header, got, c.want)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/", nil)
	if !(&Handler{Unauthenticated: "redirect"}).wantsRedirect(r) || (&Handler{Unauthenticated: "status"}).wantsRedirect(httptest.NewRequest("GET", "/", nil)) {
		t.Error("redirect/status modes ignored")
	}
}
