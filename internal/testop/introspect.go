package testop

// The introspection endpoint (RFC 7662): a resource server that holds an
// access token asks whether it is active and what it stands for. The
// client authenticates as at the token endpoint. Tests can make the
// endpoint slow, failing or down, and count its calls.

import (
	"maps"
	"net/http"
	"net/url"
	"time"
)

// introspectPath is where the introspection endpoint is served.
const introspectPath = "/introspect"

// introspectionState is the introspection endpoint's behaviour and what it
// saw. It is guarded by Provider.mu.
type introspectionState struct {
	calls      int
	status     int           // answer with this status instead; 0: answer
	delay      time.Duration // before answering
	lastForm   url.Values
	lastHeader http.Header
	lastMethod string
}

// SetIntrospectionStatus makes the introspection endpoint answer every
// request with status (503 for a provider that is down, 500, 401 ...)
// and an OAuth error; 0 makes it answer again.
func (p *Provider) SetIntrospectionStatus(status int) {
	p.mu.Lock()
	p.at.introspection.status = status
	p.mu.Unlock()
}

// SetIntrospectionDelay makes the introspection endpoint wait this long
// before it answers (a hanging provider); 0 ends the delay. A request
// whose client gives up, or a Close, ends the wait.
func (p *Provider) SetIntrospectionDelay(d time.Duration) {
	p.mu.Lock()
	p.at.introspection.delay = d
	p.mu.Unlock()
}

// IntrospectionCalls returns the number of requests that reached the
// introspection endpoint, whatever their answer (but 503 while SetDown).
func (p *Provider) IntrospectionCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.at.introspection.calls
}

// LastIntrospectionRequest returns copies of the form and the headers of
// the most recent introspection request, and the client authentication
// method it used; nils and "" if there was none.
func (p *Provider) LastIntrospectionRequest() (form url.Values, header http.Header, method string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := p.at.introspection
	return cloneValues(in.lastForm), in.lastHeader.Clone(), in.lastMethod
}

// announceIntrospection adds the introspection endpoint to the discovery
// document (RFC 8414 2), with the token endpoint's client authentication.
func (p *Provider) announceIntrospection(doc map[string]any) {
	doc["introspection_endpoint"] = p.endpoint(introspectPath)
	doc["introspection_endpoint_auth_methods_supported"] = p.cfg.TokenAuthMethods
}

// handleIntrospect answers RFC 7662 2.1 requests: the client authenticated
// as at the token endpoint, the token in the form.
func (p *Provider) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	parseErr := r.ParseForm()
	method, authErr := "", error(nil)
	if parseErr == nil {
		method, authErr = p.checkClientAuth(r)
	}
	p.mu.Lock()
	in := &p.at.introspection
	in.calls++
	in.lastForm = cloneValues(r.PostForm)
	in.lastHeader = r.Header.Clone()
	in.lastMethod = method
	status, delay := in.status, in.delay
	p.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-p.closed:
			t.Stop()
			return
		}
	}
	switch {
	case status != 0:
		oauthError(w, status, "temporarily_unavailable", "induced failure")
		return
	case parseErr != nil:
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	case authErr != nil:
		w.Header().Set("WWW-Authenticate", `Basic realm="testop"`)
		oauthError(w, http.StatusUnauthorized, "invalid_client", authErr.Error())
		return
	case r.PostForm.Get("token") == "":
		oauthError(w, http.StatusBadRequest, "invalid_request", "no token")
		return
	}
	writeJSON(w, http.StatusOK, p.introspection(r.PostForm.Get("token"), time.Now()))
}

// introspection is the answer about tok (RFC 7662 2.2): active with what
// the token stands for, or only "active": false for a token that is
// unknown, revoked, expired or not yet valid.
func (p *Provider) introspection(tok string, now time.Time) map[string]any {
	p.mu.Lock()
	rec, ok := p.at.known[tok]
	var r tokenRecord
	if ok {
		r = *rec
		r.claims = maps.Clone(rec.claims)
	}
	p.mu.Unlock()
	if !ok || r.revoked || !now.Before(r.expires) || (!r.notBefore.IsZero() && now.Before(r.notBefore)) {
		return map[string]any{"active": false}
	}
	// A JWT's claims, or a minted token's, are what the token stands for;
	// an issued opaque token stands for what it was issued for.
	out := r.claims
	if out == nil {
		out = r.protocolClaims(p.issuer)
	}
	out["active"] = true
	out["token_type"] = "Bearer"
	if _, ok := out["username"]; !ok {
		out["username"] = r.username()
	}
	return out
}

// username is the introspection answer's username: the token's
// preferred_username or email claim, else its subject.
func (r *tokenRecord) username() string {
	for _, k := range []string{"preferred_username", "email"} {
		if s, ok := r.claims[k].(string); ok && s != "" {
			return s
		}
	}
	return r.subject
}
