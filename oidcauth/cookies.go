package oidcauth

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// cookieSettings are the attributes shared by every cookie oidc_auth sets.
type cookieSettings struct {
	name   string // base name, without a __Host- or __Secure- prefix
	domain string
	path   string
	// forceSecure marks cookies Secure even on plain-HTTP requests, for a
	// Caddy that sits behind a TLS-terminating proxy (redirect_url is https).
	forceSecure bool
}

// secure reports whether cookies for r get the Secure attribute.
func (c cookieSettings) secure(r *http.Request) bool {
	return r.TLS != nil || c.forceSecure
}

// fullName returns base with the strongest prefix the attributes allow:
// __Host- (Secure, Path=/, no Domain: the cookie cannot be set or shadowed by
// a sibling subdomain), else __Secure- on HTTPS, else none.
func (c cookieSettings) fullName(r *http.Request, base string) string {
	if !c.secure(r) {
		return base
	}
	if c.domain == "" && c.path == "/" {
		return "__Host-" + base
	}
	return "__Secure-" + base
}

// cookie returns a cookie with the shared attributes. maxAge 0 makes a
// browser-session cookie; a negative maxAge deletes the cookie.
func (c cookieSettings) cookie(r *http.Request, name, value string, maxAge time.Duration) *http.Cookie {
	ck := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     c.path,
		Domain:   c.domain,
		Secure:   c.secure(r),
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
	switch {
	case maxAge < 0:
		ck.MaxAge = -1
		ck.Value = ""
	case maxAge > 0:
		ck.MaxAge = int(maxAge / time.Second)
		if ck.MaxAge == 0 {
			ck.MaxAge = 1
		}
	}
	return ck
}

// expire deletes the named cookie in the browser.
func (c cookieSettings) expire(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, c.cookie(r, name, "", -1))
}

// requestCookie returns the value of the named cookie without parsing every
// cookie of the request into a slice, which net/http's Request.Cookie does
// on each call: the session cookie is read on every request.
func requestCookie(r *http.Request, name string) (string, bool) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// requestCookieNames calls fn for the name of every request cookie that
// starts with prefix.
func requestCookieNames(r *http.Request, prefix string, fn func(name, value string)) {
	for _, line := range r.Header["Cookie"] {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
			if ok && strings.HasPrefix(k, prefix) {
				fn(k, v)
			}
		}
	}
}

// chunkName is the name of the i-th cookie of a value split across several:
// the first keeps the plain name, the others get _1, _2, ...
func chunkName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + "_" + strconv.Itoa(i)
}

// isChunkName reports whether name is a continuation chunk of base.
func isChunkName(name, base string) bool {
	rest, ok := strings.CutPrefix(name, base+"_")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// stripOwnCookies removes oidc_auth's cookies (session, its chunks and
// login state) from the request passed on: the upstream has no use for the
// sealed session and should not be able to replay it, and a session cookie
// of several kilobytes would be sent upstream on every request. It returns
// the Cookie lines as the client sent them, or nil if nothing was removed.
func (h *Handler) stripOwnCookies(r *http.Request) []string {
	lines := r.Header["Cookie"]
	changed := false
	var kept []string
	for _, line := range lines {
		if !strings.Contains(line, h.CookieName) {
			kept = append(kept, line)
			continue
		}
		var b strings.Builder
		for rest := line; rest != ""; {
			var part string
			part, rest, _ = strings.Cut(rest, ";")
			part = strings.TrimSpace(part)
			name, _, _ := strings.Cut(part, "=")
			if h.isOwnCookie(name) {
				changed = true
				continue
			}
			if part == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	if !changed {
		return nil
	}
	if len(kept) == 0 {
		delete(r.Header, "Cookie")
	} else {
		r.Header["Cookie"] = kept
	}
	return lines
}

// isOwnCookie reports whether a cookie name is one oidc_auth sets.
func (h *Handler) isOwnCookie(name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "__Host-"), "__Secure-")
	rest, ok := strings.CutPrefix(name, h.CookieName)
	if !ok {
		return false
	}
	return rest == "" || isChunkName(name, h.CookieName) || strings.HasPrefix(rest, loginCookieInfix)
}
