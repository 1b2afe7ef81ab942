package oidcauth

import (
	"context"
	"encoding/json"
	"html"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// FuzzCallback: anyone can make a link to the callback, with any query and,
// through a sibling site or a script, any cookies. Without a login-state
// cookie that the handler sealed, no such request signs anyone in or shows
// the provider's error text (which would put the link maker's words on the
// site's own origin), and none fails with a server error.
func FuzzCallback(f *testing.F) {
	h := newTestHandler(f, &Handler{})
	if _, err := h.defaultProvider().op.Get(context.Background()); err != nil {
		f.Fatal(err)
	}
	callback := func(tb testing.TB, query, cookie string, asJSON bool) (*httptest.ResponseRecorder, error) {
		r := caddyRequest(httptest.NewRequest(http.MethodGet, "http://example.com/oauth2/callback", nil))
		r.URL.RawQuery = query
		if cookie != "" {
			r.Header.Set("Cookie", cookie)
		}
		if asJSON {
			r.Header.Set("Accept", "application/json")
		}
		rec := httptest.NewRecorder()
		next := &recordingNext{}
		err := h.ServeHTTP(rec, r, next)
		if next.r != nil {
			tb.Fatal("the callback passed the request on")
		}
		return rec, err
	}
	// The refusal pages with nothing of the request in them: a fuzzed
	// text that they contain anyway is not an echo.
	plain := map[bool]string{}
	for _, asJSON := range []bool{false, true} {
		rec, err := callback(f, "", "", asJSON)
		if err != nil || rec.Code != http.StatusBadRequest {
			f.Fatalf("a bare callback: %d, %v", rec.Code, err)
		}
		plain[asJSON] = rec.Body.String()
	}
	// For a sign-in this browser started, the provider's error is shown:
	// the check below would see it.
	login := caddyRequest(httptest.NewRequest(http.MethodGet, "http://example.com/oauth2/login", nil))
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, login, &recordingNext{}); err != nil || rec.Code != http.StatusFound {
		f.Fatalf("login: %d, %v", rec.Code, err)
	}
	authorize, _ := url.Parse(rec.Header().Get("Location"))
	var cookies []string
	for _, c := range rec.Result().Cookies() {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	const refusal = `<b>"Access" & denied</b>`
	query := url.Values{"state": {authorize.Query().Get("state")}, "error": {refusal}}.Encode()
	if rec, _ := callback(f, query, strings.Join(cookies, "; "), false); rec.Code != http.StatusForbidden || !echoes(rec.Body.String(), plain[false], refusal) {
		f.Fatalf("a pending sign-in's error: %d\n%s", rec.Code, rec.Body)
	}

	f.Fuzz(func(t *testing.T, query, cookie string, asJSON bool) {
		rec, err := callback(t, query, cookie, asJSON)
		if err != nil {
			t.Fatalf("ServeHTTP returned %v, which Caddy answers with a 500", err)
		}
		switch status := rec.Code; {
		case status == http.StatusOK, status == http.StatusSeeOther:
			t.Fatalf("status %d: a sign-in completed without a login state\n%s", status, rec.Body)
		case status >= 500 && status != http.StatusBadGateway && status != http.StatusServiceUnavailable:
			t.Fatalf("status %d\n%s", status, rec.Body)
		}

		// The only cookies a refused callback sets are deletions of
		// login-state cookies; a session cookie with a value would be a
		// sign-in.
		for _, line := range rec.Header().Values("Set-Cookie") {
			c, err := http.ParseSetCookie(line)
			if err != nil {
				t.Fatalf("Set-Cookie %q does not parse: %v", line, err)
			}
			name := strings.TrimPrefix(strings.TrimPrefix(c.Name, "__Host-"), "__Secure-")
			if (name == h.CookieName || isChunkName(name, h.CookieName)) && c.Value != "" {
				t.Fatalf("a session cookie was set: %q", line)
			}
			if !strings.HasPrefix(name, h.CookieName+loginCookieInfix) || c.Value != "" || c.MaxAge >= 0 {
				t.Fatalf("Set-Cookie %q is not the deletion of a login-state cookie", line)
			}
		}

		q, _ := url.ParseQuery(query)
		for _, text := range append(q["error"], q["error_description"]...) {
			if echoes(rec.Body.String(), plain[asJSON], text) {
				t.Fatalf("the response shows the query's error text %q:\n%s", text, rec.Body)
			}
		}
	})
}

// echoes reports whether body shows text, as it is or escaped for HTML or
// JSON, where the page without any text of the request, plain, does not.
// Only the first 100 bytes are looked for, as the handler shortens an
// error to 100 and a description to 300, and only texts of at least 6, as
// shorter ones are found in any page.
func echoes(body, plain, text string) bool {
	text = text[:min(len(text), 100)]
	if len(text) < 6 {
		return false
	}
	for _, echo := range []string{text, html.EscapeString(text), template.HTMLEscapeString(text), jsonString(text)} {
		if strings.Contains(body, echo) && !strings.Contains(plain, echo) {
			return true
		}
	}
	return false
}

// jsonString is s as encoding/json writes it in a string, without quotes.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}
