package oidcauth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Variable names set for later handlers.
const (
	varIDToken    = "oidc_id_token"
	varRawIDToken = "oidc_raw_id_token"
)

const (
	userPlaceholderPrefix = "http.auth.user."
	placeholderPrefix     = "oidc.user."
	placeholderIDToken    = "oidc.user.id_token"
	placeholderRawIDToken = "oidc.user.raw_id_token"
)

// requestState is what oidc_auth attaches to a signed-in request: the
// session, which a refresh may replace while the request is handled. It
// also answers the {http.auth.user.*} and {oidc.user.*} placeholders, only
// when one is read: a request pays for one placeholder function, not for
// formatting every claim. The {oidc.user.*} ones are registered here, before
// request_header and the other handlers that run ahead of token_inject, so
// those can use them too.
type requestState struct {
	// Context is the request's context; the state is its child context
	// itself (see Value), which spares a context.WithValue per request.
	context.Context

	session *Session
	// cookies are the request's Cookie header lines as the client sent
	// them, when oidc_auth removed its own cookies before passing the
	// request on; saving a refreshed session needs to see them.
	cookies []string
}

// Value answers sessionCtxKey with the state itself and everything else
// from the request's context.
func (st *requestState) Value(key any) any {
	if _, ok := key.(sessionCtxKey); ok {
		return st
	}
	return st.Context.Value(key)
}

// String names the state without its contents (the session's tokens and
// cookies), should a context chain ever be formatted.
func (st *requestState) String() string { return "oidc_auth request state" }

// storeRequest is r as the session store must see it: with the cookies the
// client sent.
func (st *requestState) storeRequest(r *http.Request) *http.Request {
	if st.cookies == nil {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	r2.Header = http.Header{"Cookie": st.cookies}
	return r2
}

func (st *requestState) placeholder(key string) (any, bool) {
	var s *Session
	if st != nil {
		s = st.session
	}
	if name, ok := strings.CutPrefix(key, userPlaceholderPrefix); ok && s != nil {
		return s.userPlaceholder(name)
	}
	if !strings.HasPrefix(key, placeholderPrefix) {
		return nil, false
	}
	switch {
	case key == placeholderIDToken:
		if s == nil {
			return "", true
		}
		return string(s.ClaimsJSON()), true
	case key == placeholderRawIDToken:
		if s == nil {
			return "", true
		}
		return s.RawIDToken(), true
	case strings.HasPrefix(key, placeholderIDToken+"."):
		if s == nil {
			return "", true
		}
		c, ok := claimAt(s.Claims(), key[len(placeholderIDToken)+1:])
		if !ok {
			return "", true
		}
		return formatClaim(c), true
	}
	return nil, false
}

// userPlaceholder answers {http.auth.user.<name>}: the subject for "id",
// else the top-level claim if it is a string, number or boolean.
func (s *Session) userPlaceholder(name string) (any, bool) {
	if name == "id" {
		return s.subject, true
	}
	switch v := s.claims[name].(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	case bool:
		return v, true
	}
	return nil, false
}

// setVars sets the ID token variables for s.
func setVars(r *http.Request, s *Session) {
	if vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		vars[varIDToken] = s.Claims()
		vars[varRawIDToken] = s.rawIDTokenVar
	}
}

// ExposeNoIDToken makes every {oidc.user.*} placeholder of a request
// without a session empty, rather than left as literal text in a header.
// token_inject calls it on routes oidc_auth does not cover.
func ExposeNoIDToken(r *http.Request) {
	if _, ok := r.Context().Value(sessionCtxKey{}).(*requestState); ok {
		return
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map((*requestState)(nil).placeholder)
	}
}

// claimAt finds a claim by dotted path. Claim names may contain dots
// themselves (namespaced claims such as "https://example.com/roles"), so at
// each level the whole remaining path is tried as a name first, then every
// split at a dot from the left.
func claimAt(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		v, ok := m[path[:i]]
		if !ok {
			continue
		}
		if sub, isMap := v.(map[string]any); isMap {
			if c, found := claimAt(sub, path[i+1:]); found {
				return c, true
			}
		}
	}
	return nil, false
}

// formatClaim renders a claim for a placeholder: strings as they are,
// numbers exactly as the provider wrote them, arrays joined with ",",
// objects as JSON.
func formatClaim(v any) string {
	switch c := v.(type) {
	case nil:
		return ""
	case string:
		return c
	case json.Number:
		return c.String()
	case bool:
		if c {
			return "true"
		}
		return "false"
	case []any:
		parts := make([]string, len(c))
		for i, e := range c {
			parts[i] = formatClaim(e)
		}
		return strings.Join(parts, ",")
	default:
		b, err := json.Marshal(c)
		if err != nil {
			return ""
		}
		return string(b)
	}
}
