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
	// hostName and secureName are name with its prefixes, built once
	// rather than on every request.
	hostName, secureName string
}

func newCookieSettings(name, domain, path string, forceSecure bool) cookieSettings {
	return cookieSettings{name: name, domain: domain, path: path, forceSecure: forceSecure,
		hostName: "__Host-" + name, secureName: "__Secure-" + name}
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
	switch {
	case c.domain == "" && c.path == "/" && base == c.name:
		return c.hostName
	case c.domain == "" && c.path == "/":
		return "__Host-" + base
	case base == c.name:
		return c.secureName
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
	rest, ok := strings.CutPrefix(name, base)
	if !ok || len(rest) < 2 || rest[0] != '_' {
		return false
	}
	for _, c := range rest[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// requestCookies is what oidc_auth needs from a request's Cookie header,
// found in one pass: the session cookie's chunks, and the cookies that are
// not oidc_auth's. A sealed session runs to several kilobytes, and finding
// its chunks and removing them from the request in one scan instead of
// one per lookup is a good part of what a signed-in request costs.
type requestCookies struct {
	lines   []string      // the Cookie lines as the client sent them
	session sessionCookie // the session cookie's chunks
	own     bool          // any of oidc_auth's cookies is present
	foreign []string      // the other cookies, "name=value"
}

// sessionCookie is the session cookie's value, chunk by chunk. Stores get
// it by value: through the SessionStore interface, a pointer would make
// every request's cookie scan escape to the heap.
type sessionCookie struct {
	chunks [maxCookieChunks]string // chunk i's value
	found  uint32                  // bit i: chunk i is present
}

// scanCookies reads r's Cookie header into rc; name is the session
// cookie's full name (see cookieSettings.fullName).
func (h *Handler) scanCookies(r *http.Request, name string, rc *requestCookies) {
	rc.lines = r.Header["Cookie"]
	for _, line := range rc.lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			k, v, _ := strings.Cut(part, "=")
			if !h.isOwnCookie(k) {
				rc.foreign = append(rc.foreign, part)
				continue
			}
			rc.own = true
			i, ok := chunkIndex(k, name)
			if !ok || rc.session.found&(1<<i) != 0 {
				continue // a login-state cookie, or a repeated name: the first wins
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			rc.session.chunks[i] = v
			rc.session.found |= 1 << i
		}
	}
}

// chunk returns session cookie chunk i.
func (sc *sessionCookie) chunk(i int) (string, bool) {
	if i < 0 || i >= maxCookieChunks || sc.found&(1<<i) == 0 {
		return "", false
	}
	return sc.chunks[i], true
}

// chunkIndex tells which chunk of the session cookie name k is: 0 for name
// itself, i for name_i.
func chunkIndex(k, name string) (int, bool) {
	rest, ok := strings.CutPrefix(k, name)
	switch {
	case !ok:
		return 0, false
	case rest == "":
		return 0, true
	case len(rest) != 2 || rest[0] != '_' || rest[1] < '1' || rest[1] > '0'+maxCookieChunks-1:
		return 0, false
	}
	return int(rest[1] - '0'), true
}

// stripOwnCookies removes oidc_auth's cookies (session, its chunks and
// login state) from the request passed on: the upstream has no use for the
// sealed session and should not be able to replay it, and a session cookie
// of several kilobytes would be sent upstream on every request. The other
// cookies are passed on in one Cookie line. It returns the Cookie lines as
// the client sent them, or nil if nothing was removed.
func (h *Handler) stripOwnCookies(r *http.Request, rc *requestCookies) []string {
	if !rc.own {
		return nil
	}
	if len(rc.foreign) == 0 {
		delete(r.Header, "Cookie")
	} else {
		r.Header["Cookie"] = []string{strings.Join(rc.foreign, "; ")}
	}
	return rc.lines
}

// isOwnCookie reports whether a cookie name is one oidc_auth sets.
func (h *Handler) isOwnCookie(name string) bool {
	name = strings.TrimPrefix(strings.TrimPrefix(name, "__Host-"), "__Secure-")
	rest, ok := strings.CutPrefix(name, h.CookieName)
	if !ok {
		return false
	}
	return rest == "" || isChunkName(name, h.CookieName) || strings.HasPrefix(rest, loginCookieInfix) || rest == "_logout"
}
