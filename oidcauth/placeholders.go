package oidcauth

import (
	"context"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidcgate/caddy-oidc/internal/claims"
)

// Variable names set for later handlers.
const (
	varIDToken    = "oidc_id_token"
	varRawIDToken = "oidc_raw_id_token"
	varUserinfo   = "oidc_userinfo"
)

const (
	userPlaceholderPrefix = "http.auth.user."
	placeholderPrefix     = "oidc.user."
	placeholderIDToken    = "oidc.user.id_token"
	placeholderRawIDToken = "oidc.user.raw_id_token"
	placeholderUserinfo   = "oidc.user.userinfo"
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
	// bearer is who the request's bearer token says the caller is, when
	// the request was authenticated by one instead of a session.
	bearer *bearerIdentity
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
		if st.bearer != nil {
			return st.bearer.placeholder(key)
		}
	}
	if name, ok := strings.CutPrefix(key, userPlaceholderPrefix); ok && s != nil {
		return s.userPlaceholder(name)
	}
	rest, ok := strings.CutPrefix(key, placeholderPrefix)
	if !ok {
		return nil, false
	}
	var set, path string
	switch {
	case rest == "raw_id_token":
		if s == nil {
			return "", true
		}
		return s.RawIDToken(), true
	case rest == "id_token" || rest == "userinfo":
		set = rest
	case strings.HasPrefix(rest, "id_token."):
		set, path = "id_token", rest[len("id_token."):]
	case strings.HasPrefix(rest, "userinfo."):
		set, path = "userinfo", rest[len("userinfo."):]
	default:
		return nil, false
	}
	if s == nil {
		return "", true
	}
	m, raw := s.Claims(), s.ClaimsJSON()
	if set == "userinfo" {
		m, raw = s.Userinfo(), s.UserinfoJSON()
	}
	if path == "" {
		return string(raw), true
	}
	c, ok := claims.At(m, path)
	if !ok {
		return "", true
	}
	return claims.Format(c), true
}

// placeholder answers a bearer request's placeholders:
// {http.auth.user.id} and the token's top-level scalar claims; the
// {oidc.user.*} ones, which are about a signed-in session's ID token and
// userinfo, are empty. No placeholder holds the token.
func (id *bearerIdentity) placeholder(key string) (any, bool) {
	if name, ok := strings.CutPrefix(key, userPlaceholderPrefix); ok {
		if name == "id" {
			return id.subject, true
		}
		if name == "provider" && id.provider != nil && id.provider.name != "" {
			return id.provider.name, true
		}
		return claims.Scalar(id.claims, name)
	}
	if strings.HasPrefix(key, placeholderPrefix) {
		switch rest := key[len(placeholderPrefix):]; {
		case rest == "raw_id_token", rest == "id_token", rest == "userinfo",
			strings.HasPrefix(rest, "id_token."), strings.HasPrefix(rest, "userinfo."):
			return "", true
		}
	}
	return nil, false
}

// userPlaceholder answers {http.auth.user.<name>}: the subject for "id",
// the provider's name for "provider" when the site has several,
// else the top-level claim if it is a string, number or boolean, from the
// ID token or, when it has none of that name, from userinfo.
func (s *Session) userPlaceholder(name string) (any, bool) {
	if name == "id" {
		return s.subject, true
	}
	if name == "provider" && s.provider != nil && s.provider.name != "" {
		return s.provider.name, true
	}
	if _, inIDToken := s.claims[name]; inIDToken {
		return claims.Scalar(s.claims, name)
	}
	return claims.Scalar(s.userinfo, name)
}

// setVars sets the ID token and userinfo variables for s.
func setVars(r *http.Request, s *Session) {
	if vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok {
		vars[varIDToken] = s.Claims()
		vars[varRawIDToken] = s.rawIDTokenVar
		vars[varUserinfo] = s.userinfo
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
