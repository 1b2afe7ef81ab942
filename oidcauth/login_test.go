package oidcauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

// FuzzSafeRedirect: whatever rd= a link carries, the user lands on this
// site. safeRedirect keeps rd or answers "/"; what it keeps must stay on the
// site when resolved as net/url does, and when sent as http.Redirect sends
// it, and also for browsers, which are more lenient than net/url: they drop
// tabs and newlines, strip control characters and read a backslash as a
// slash, so "/\t/evil" or "/\\evil" would become "//evil", another host.
func FuzzSafeRedirect(f *testing.F) {
	base, _ := url.Parse("https://site.example/base/")
	req := httptest.NewRequest(http.MethodGet, "https://site.example/oauth2/callback", nil)
	onSite := func(t *testing.T, what, ref string) {
		u, err := url.Parse(ref)
		if err != nil {
			t.Fatalf("%s %q does not parse: %v", what, ref, err)
		}
		if u.Scheme != "" || u.Opaque != "" || u.Host != "" || u.User != nil {
			t.Fatalf("%s %q is not a path: %#v", what, ref, u)
		}
		if got := base.ResolveReference(u); got.Scheme != "https" || got.Host != "site.example" || got.User != nil {
			t.Fatalf("%s %q leads to %s", what, ref, got)
		}
	}
	f.Fuzz(func(t *testing.T, rd string) {
		got := safeRedirect(rd)
		if got != "/" && got != rd {
			t.Fatalf("safeRedirect(%q) = %q, neither the input nor /", rd, got)
		}
		if again := safeRedirect(got); again != got {
			t.Fatalf("safeRedirect(%q) = %q, but that gives %q", rd, got, again)
		}
		// A path with one leading slash has no scheme and no host, for
		// net/url and for browsers alike.
		if got[0] != '/' || strings.HasPrefix(got, "//") || strings.HasPrefix(got, "/\\") {
			t.Fatalf("safeRedirect(%q) = %q, not a path with one leading slash", rd, got)
		}
		for i := 0; i < len(got); i++ {
			if c := got[i]; c < 0x20 || c == 0x7f || c == '\\' {
				t.Fatalf("safeRedirect(%q) = %q, which has %q at %d", rd, got, c, i)
			}
		}
		onSite(t, "safeRedirect result", got)

		rec := httptest.NewRecorder()
		http.Redirect(rec, req, got, http.StatusSeeOther)
		loc := rec.Header().Get("Location")
		if loc == "" || loc[0] != '/' || strings.HasPrefix(loc, "//") || strings.ContainsAny(loc, "\\\t\r\n") {
			t.Fatalf("http.Redirect to %q sends Location %q", got, loc)
		}
		onSite(t, "Location", loc)
	})
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
