package testop

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
)

// This file, keysets.go and endsession.go let the provider play the OpenID
// Foundation conformance suite's provider for its relying-party test
// modules: ID tokens, token responses, userinfo answers, key sets and
// logout shaped like the suite's, and a record of what the relying party
// asked for, in which order.

// suiteState is the provider's state for this file, guarded by
// Provider.mu.
type suiteState struct {
	editIDToken       func(claims map[string]any, refresh bool)
	tokenShape        TokenResponseShape
	tokenResponses    []map[string]any
	requests          []string
	userinfoByScope   bool
	sessionManagement bool
}

// EditIDTokens makes the provider pass the claims of every ID token it
// issues from now on to edit, just before signing them (after the
// misbehaviours); refresh tells an ID token of a refresh_token grant. The
// conformance suite's modules change a claim or two of an otherwise
// correct token: edit can delete sub or iat, append to iss, aud or nonce,
// and so on. nil ends the editing.
func (p *Provider) EditIDTokens(edit func(claims map[string]any, refresh bool)) {
	p.mu.Lock()
	p.x.suite.editIDToken = edit
	p.mu.Unlock()
}

func (p *Provider) editIDToken(c map[string]any, refresh bool) {
	p.mu.Lock()
	edit := p.x.suite.editIDToken
	p.mu.Unlock()
	if edit != nil {
		edit(c, refresh)
	}
}

// TokenResponseShape changes what the token endpoint's successful answers
// carry, to look like the conformance suite's.
type TokenResponseShape struct {
	// NoExpiresIn leaves out expires_in: the suite never says when its
	// access tokens expire (they still do, after Config.AccessTokenTTL).
	NoExpiresIn bool
	// NoRefreshToken issues no refresh token, as the suite outside its
	// refresh plan.
	NoRefreshToken bool
	// RepeatNonce puts the sign-in's nonce into refreshed ID tokens too,
	// as the suite's refresh plan does (OpenID Connect Core 12.2 leaves it
	// out; a relying party must accept either).
	RepeatNonce bool
}

// ShapeTokenResponses shapes the token endpoint's answers from now on.
func (p *Provider) ShapeTokenResponses(s TokenResponseShape) {
	p.mu.Lock()
	p.x.suite.tokenShape = s
	p.mu.Unlock()
}

// shapeTokenResponse applies the TokenResponseShape to a response being
// built.
func (p *Provider) shapeTokenResponse(resp map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.x.suite.tokenShape
	if s.NoExpiresIn {
		delete(resp, "expires_in")
	}
	if s.NoRefreshToken {
		if rt, ok := resp["refresh_token"].(string); ok {
			delete(p.refreshTokens, rt)
		}
		delete(resp, "refresh_token")
	}
}

// refreshNonce is the nonce of a refreshed ID token of grant g.
func (p *Provider) refreshNonce(g grant) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.x.suite.tokenShape.RepeatNonce {
		return g.nonce
	}
	return ""
}

func (p *Provider) recordTokenResponse(resp map[string]any) {
	p.mu.Lock()
	p.x.suite.tokenResponses = append(p.x.suite.tokenResponses, maps.Clone(resp))
	p.mu.Unlock()
}

// TokenResponses returns the token endpoint's successful answers so far,
// oldest first, as sent (access_token, id_token, refresh_token,
// expires_in, ...): a test can tell which access token is the latest, and
// what the answers carried.
func (p *Provider) TokenResponses() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]map[string]any, len(p.x.suite.tokenResponses))
	for i, r := range p.x.suite.tokenResponses {
		out[i] = maps.Clone(r)
	}
	return out
}

// Requests returns the endpoints the provider was asked for, in the order
// the requests arrived (as the suite's log shows them, which some modules
// judge): "discovery", "authorize", "token", "jwks", "userinfo",
// "end_session", "check_session", or the path of any other request.
// Requests answered 503 while down count too.
func (p *Provider) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.x.suite.requests...)
}

func (p *Provider) logRequest(r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := r.URL.Path
	switch {
	case r.URL.Path == p.keysPathLocked():
		name = "jwks"
	case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
		name = "discovery"
	case r.URL.Path == "/authorize", r.URL.Path == "/token", r.URL.Path == "/userinfo",
		r.URL.Path == "/end_session", r.URL.Path == "/check_session":
		name = r.URL.Path[1:]
	}
	p.x.suite.requests = append(p.x.suite.requests, name)
}

// scopeClaims are the claims each standard scope releases (OpenID Connect
// Core 5.4).
var scopeClaims = map[string][]string{
	"openid": {"sub"},
	"profile": {"name", "family_name", "given_name", "middle_name", "nickname", "preferred_username",
		"profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	"email":   {"email", "email_verified"},
	"address": {"address"},
	"phone":   {"phone_number", "phone_number_verified"},
}

// ReleaseUserinfoByScope makes the userinfo endpoint answer only the claims
// of the scopes the access token was granted (OpenID Connect Core 5.4: sub
// for openid; name, given_name, ... for profile; email and email_verified
// for email; address; phone_number and phone_number_verified for phone),
// as the suite's does; other claims are left out. Off by default.
func (p *Provider) ReleaseUserinfoByScope(on bool) {
	p.mu.Lock()
	p.x.suite.userinfoByScope = on
	p.mu.Unlock()
}

// releaseByScope drops the claims that scope does not release, when
// ReleaseUserinfoByScope is on.
func (p *Provider) releaseByScope(claims map[string]any, scope string) {
	p.mu.Lock()
	on := p.x.suite.userinfoByScope
	p.mu.Unlock()
	if !on {
		return
	}
	released := map[string]bool{}
	for _, s := range strings.Fields(scope) {
		for _, c := range scopeClaims[s] {
			released[c] = true
		}
	}
	maps.DeleteFunc(claims, func(k string, _ any) bool { return !released[k] })
}

// SetSessionManagement makes the provider announce what the suite's logout
// plans announce: discovery names a check_session_iframe (served at
// /check_session) and front-channel logout support with sessions, and
// every authorization response carries a session_state (OpenID Connect
// Session Management 1.0, 3), which a relying party that does not
// implement session management must ignore.
func (p *Provider) SetSessionManagement(on bool) {
	p.mu.Lock()
	p.x.suite.sessionManagement = on
	p.mu.Unlock()
}

// sessionManagementDiscoveryLocked adds session management's fields to
// the discovery document. p.mu must be held.
func (p *Provider) sessionManagementDiscoveryLocked(doc map[string]any) {
	if !p.x.suite.sessionManagement {
		return
	}
	doc["check_session_iframe"] = p.endpoint("/check_session")
	doc["frontchannel_logout_supported"] = true
	doc["frontchannel_logout_session_supported"] = true
}

// addSessionState gives an authorization response its session_state.
func (p *Provider) addSessionState(reply url.Values) {
	p.mu.Lock()
	on := p.x.suite.sessionManagement
	p.mu.Unlock()
	if on {
		reply.Set("session_state", randomString(43)+"."+randomString(22))
	}
}

// handleCheckSession serves the check_session_iframe: a page that never
// says the session changed. No relying party here reads it.
func (p *Provider) handleCheckSession(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	on := p.x.suite.sessionManagement
	p.mu.Unlock()
	if !on {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, `<!doctype html><title>check session</title><script>
window.addEventListener("message", function (e) { e.source.postMessage("unchanged", e.origin); });
</script>`)
}
