package testop

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
)

// UserinfoMisbehavior selects a deliberate fault of the userinfo endpoint,
// for the answers after [Provider.SetUserinfoMisbehavior].
type UserinfoMisbehavior int

// The userinfo misbehaviours.
const (
	// UserinfoBehaves makes the endpoint answer correctly.
	UserinfoBehaves UserinfoMisbehavior = iota
	// UserinfoOtherSubject answers about another sub than the access
	// token's user (OpenID Connect Core 5.3.2 tells the relying party to
	// refuse it): the user's with "invalid" appended, as the conformance
	// suite's, so that a relying party comparing prefixes is caught too.
	UserinfoOtherSubject
	// UserinfoServerError answers 500.
	UserinfoServerError
	// UserinfoUnauthorized answers 401 invalid_token, whatever the token.
	UserinfoUnauthorized
	// UserinfoNotJSON answers 200 with an HTML page.
	UserinfoNotJSON
	// UserinfoBadSignature answers with a signed JWT whose signature is
	// corrupted, signed answers on or not.
	UserinfoBadSignature
	// UserinfoWrongAudience answers with a signed JWT for another client,
	// signed answers on or not.
	UserinfoWrongAudience
)

var userinfoMisbehaviorNames = [...]string{
	UserinfoBehaves:       "UserinfoBehaves",
	UserinfoOtherSubject:  "UserinfoOtherSubject",
	UserinfoServerError:   "UserinfoServerError",
	UserinfoUnauthorized:  "UserinfoUnauthorized",
	UserinfoNotJSON:       "UserinfoNotJSON",
	UserinfoBadSignature:  "UserinfoBadSignature",
	UserinfoWrongAudience: "UserinfoWrongAudience",
}

// String returns the constant's name.
func (m UserinfoMisbehavior) String() string {
	if m >= 0 && int(m) < len(userinfoMisbehaviorNames) {
		return userinfoMisbehaviorNames[m]
	}
	return fmt.Sprintf("UserinfoMisbehavior(%d)", int(m))
}

// SetUserinfoClaims replaces Config.UserinfoClaims, with the same rules.
// It affects answers from now on.
func (p *Provider) SetUserinfoClaims(claims map[string]any) error {
	c, err := copyClaims(claims)
	if err != nil {
		return fmt.Errorf("testop: userinfo claims: %w", err)
	}
	p.mu.Lock()
	p.x.userinfoClaims = c
	p.mu.Unlock()
	return nil
}

// SetUserinfoSigned makes the userinfo endpoint answer with a JWT
// (Content-Type application/jwt, OpenID Connect Core 5.3.2): the claims
// with iss and aud, signed RS256 with the current key and its kid.
func (p *Provider) SetUserinfoSigned(signed bool) {
	p.mu.Lock()
	p.x.userinfoSigned = signed
	p.mu.Unlock()
}

// SetUserinfoMisbehavior selects a fault of the userinfo endpoint;
// UserinfoBehaves ends it.
func (p *Provider) SetUserinfoMisbehavior(m UserinfoMisbehavior) {
	p.mu.Lock()
	p.x.userinfoMode = m
	p.mu.Unlock()
}

// RemoveUserinfoEndpoint makes the provider one without a userinfo
// endpoint: discovery names none and /userinfo answers 404.
func (p *Provider) RemoveUserinfoEndpoint() {
	p.mu.Lock()
	p.x.noUserinfo = true
	p.mu.Unlock()
}

// UserinfoCalls returns the number of requests that reached the userinfo
// endpoint, whatever their answer (but 503 while down).
func (p *Provider) UserinfoCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.x.userinfoCalls
}

// LastUserinfoRequest returns copies of the headers (Authorization among
// them) and the query of the most recent userinfo request, or nils if there
// was none.
func (p *Provider) LastUserinfoRequest() (header http.Header, query url.Values) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.x.lastUserinfoHdr.Clone(), cloneValues(p.x.lastUserinfoQuery)
}

// handleUserinfo answers OpenID Connect Core 5.3 requests: the access
// token in the Authorization header (RFC 6750 2.1), the user's claims as
// JSON or, signed, as a JWT.
func (p *Provider) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.x.userinfoCalls++
	p.x.lastUserinfoHdr = r.Header.Clone()
	p.x.lastUserinfoQuery = cloneValues(r.URL.Query())
	removed, m, signed := p.x.noUserinfo, p.x.userinfoMode, p.x.userinfoSigned
	p.mu.Unlock()
	if removed {
		http.NotFound(w, r)
		return
	}
	scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	at, ok := p.lookupAccessToken(tok)
	if !strings.EqualFold(scheme, "Bearer") || !ok || m == UserinfoUnauthorized || !p.profile.userinfoAccepts(at) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		oauthError(w, http.StatusUnauthorized, "invalid_token", "")
		return
	}
	switch m {
	case UserinfoServerError:
		oauthError(w, http.StatusInternalServerError, "server_error", "induced failure")
		return
	case UserinfoNotJSON:
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, "<!doctype html><title>Maintenance</title><p>Back soon.</p>")
		return
	}
	tenant := p.tokenTenant(tok)
	claims, err := p.userinfoClaims(at.subject, tenant)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	p.releaseByScope(claims, at.scope)
	if m == UserinfoOtherSubject {
		claims["sub"] = at.subject + "invalid"
	}
	if !signed && m != UserinfoBadSignature && m != UserinfoWrongAudience {
		writeJSON(w, http.StatusOK, claims)
		return
	}
	claims["iss"] = p.issuer
	p.setTenant(claims, tenant)
	claims["aud"] = p.cfg.ClientID
	if m == UserinfoWrongAudience {
		claims["aud"] = "some-other-client"
	}
	sig := MisbehaveNone
	if m == UserinfoBadSignature {
		sig = BadSignature
	}
	jwt, err := p.sign(claims, sig, "JWT")
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/jwt")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprint(w, jwt)
}

// userinfoClaims are the userinfo claims of subject: the ID token's email
// and name, the userinfo claims over them, the references to claim sources
// placed in userinfo, and sub.
func (p *Provider) userinfoClaims(subject, tenant string) (map[string]any, error) {
	p.mu.Lock()
	out := map[string]any{}
	for _, k := range []string{"email", "name"} {
		if v, ok := p.claims[k]; ok {
			out[k] = v
		}
	}
	maps.Copy(out, p.x.userinfoClaims)
	p.mu.Unlock()
	maps.DeleteFunc(out, func(_ string, v any) bool { return v == nil })
	out["sub"] = subject
	if err := p.addClaimSources(out, inUserinfo, subject, tenant); err != nil {
		return nil, err
	}
	return out, nil
}
