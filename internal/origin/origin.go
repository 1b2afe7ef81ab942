// Package origin tells whether a request was made by the site itself, from
// what browsers say about where a request comes from: the Fetch Metadata
// header Sec-Fetch-Site, or, from browsers that do not send it, the Origin
// and Referer headers.
//
// Session cookies are SameSite=Lax, so they travel with a top-level
// navigation that another site starts. Whatever hands the signed-in user's
// credentials to a request (substituting an access token, ending a session)
// must first ask whether the site itself sent it.
package origin

import (
	"net/http"
	"net/url"
	"strings"
)

// Verdict is what a request's headers say about where it comes from.
type Verdict int

const (
	// Unknown: the request names no origin. Either it is not from a
	// browser (a command-line client, a script), or a browser sent it
	// without Fetch Metadata, Origin or Referer, or the user typed the
	// address or opened a bookmark (Sec-Fetch-Site: none).
	Unknown Verdict = iota
	// SameOrigin: the site's own pages sent it.
	SameOrigin
	// Allowed: an origin named in the configuration sent it (an app on
	// another origin of the same site).
	Allowed
	// CrossSite: another origin sent it, or the browser hid where it came
	// from ("Origin: null").
	CrossSite
)

func (v Verdict) String() string {
	switch v {
	case SameOrigin:
		return "same-origin"
	case Allowed:
		return "allowed-origin"
	case CrossSite:
		return "cross-site"
	}
	return "unknown"
}

// Own reports whether the verdict means the site's own request (the same
// origin, or an origin the configuration names).
func (v Verdict) Own() bool { return v == SameOrigin || v == Allowed }

// Policy classifies requests. The zero value trusts the request's own
// origin only.
type Policy struct {
	// allowed are the configured origins, normalized (see Normalize).
	allowed []string
}

// NewPolicy returns a policy that also lets in requests from the given
// origins ("https://app.example.com"), which must be of the same site as
// the request: a browser that says a request is cross-site is never let
// in. Origins are normalized; an invalid one is an error.
func NewPolicy(origins []string) (Policy, error) {
	var p Policy
	for _, o := range origins {
		n, err := Normalize(o)
		if err != nil {
			return Policy{}, err
		}
		p.allowed = append(p.allowed, n)
	}
	return p, nil
}

// Classify tells where r comes from.
//
// Sec-Fetch-Site decides when present: "same-origin" is the site's own,
// "same-site" only from a configured origin, "cross-site" never, and "none"
// (an address typed or opened from outside the browser's pages) is
// Unknown. Without it, the Origin header decides, and without that the
// Referer's origin: equal to the request's own origin, or configured, or
// else cross-site. A request with none of these headers is Unknown.
func (p Policy) Classify(r *http.Request) Verdict {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return SameOrigin
	case "same-site":
		if o, ok := claimedOrigin(r); ok && p.allowedOrigin(o) {
			return Allowed
		}
		return CrossSite
	case "cross-site":
		return CrossSite
	case "none":
		return Unknown
	case "":
	default:
		return CrossSite // a value no browser sends
	}
	o, ok := claimedOrigin(r)
	if !ok {
		return Unknown
	}
	if o == "" {
		return CrossSite // "Origin: null", or an unparsable origin
	}
	if o == requestOrigin(r) {
		return SameOrigin
	}
	if p.allowedOrigin(o) {
		return Allowed
	}
	return CrossSite
}

func (p Policy) allowedOrigin(o string) bool {
	for _, a := range p.allowed {
		if a == o {
			return true
		}
	}
	return false
}

// claimedOrigin is the normalized origin the request names: its Origin
// header, else its Referer's origin. ok is false when it names none; o is
// "" when what it names is opaque or unparsable.
func claimedOrigin(r *http.Request) (o string, ok bool) {
	if v := r.Header.Get("Origin"); v != "" {
		n, err := Normalize(v)
		if err != nil {
			return "", true
		}
		return n, true
	}
	if v := r.Header.Get("Referer"); v != "" {
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return "", true
		}
		n, err := Normalize(u.Scheme + "://" + u.Host)
		if err != nil {
			return "", true
		}
		return n, true
	}
	return "", false
}

// requestOrigin is the origin the request was sent to, normalized.
func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	n, err := Normalize(scheme + "://" + r.Host)
	if err != nil {
		return ""
	}
	return n
}

// Normalize returns an origin as "scheme://host[:port]": scheme and host
// lower-cased, the scheme's default port left out. It refuses anything
// that is not a plain http(s) origin: a path, a query, user information,
// or "null".
func Normalize(o string) (string, error) {
	u, err := url.Parse(o)
	if err != nil {
		return "", errInvalid(o)
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", errInvalid(o)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		return scheme + "://" + host + ":" + port, nil
	}
	return scheme + "://" + host, nil
}

type errInvalid string

func (e errInvalid) Error() string {
	return "origin " + quote(string(e)) + ": want scheme://host[:port], e.g. https://app.example.com"
}

func quote(s string) string {
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
