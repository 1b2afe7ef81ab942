package testop

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// LogoutClient is the relying party's registration for logout, as the
// conformance suite's client configuration gives it.
type LogoutClient struct {
	// PostLogoutRedirectURIs are the registered post_logout_redirect_uris;
	// an end-session request naming another is refused.
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI is where the end-session endpoint POSTs a
	// logout token (OpenID Connect Back-Channel Logout 1.0), if not empty.
	BackchannelLogoutURI string
	// FrontchannelLogoutURI is what the end-session endpoint's page loads
	// in an iframe (OpenID Connect Front-Channel Logout 1.0), if not empty.
	FrontchannelLogoutURI string
	// FrontchannelLogoutSessionRequired adds iss and sid to the
	// FrontchannelLogoutURI's query.
	FrontchannelLogoutSessionRequired bool
}

// ReturnedState says which state the end-session endpoint sends the
// browser back with.
type ReturnedState int

const (
	// EchoState returns the state of the request, if it had one.
	EchoState ReturnedState = iota
	// OtherState returns the request's state with "_INVALID" appended
	// ("INVALID" if it had none), as the suite's rp-init-logout-other-state.
	OtherState
	// NoState returns no state, as the suite's rp-init-logout-no-state.
	NoState
)

// LogoutTokenChange changes the logout token the end-session endpoint
// sends to the BackchannelLogoutURI, as the suite's back-channel modules
// do.
type LogoutTokenChange struct {
	// Claims are merged over the token's claims; a claim mapped to nil is
	// removed.
	Claims map[string]any
	// Alg signs the token with another algorithm than the ID tokens':
	// "none" (unsigned), "RS256" or "ES256" (with the published key of its
	// type; see SignLogoutTokenWith).
	Alg string
}

// BackchannelLogout is one logout token the end-session endpoint sent to
// the relying party, and its answer.
type BackchannelLogout struct {
	LogoutToken string
	Status      int         // 0 if no answer came
	Header      http.Header // of the answer
	Body        string
	Err         error // why no answer came
}

// endSessionState is the provider's state for this file, guarded by
// Provider.mu.
type endSessionState struct {
	client      *LogoutClient
	returned    ReturnedState
	change      LogoutTokenChange
	backchannel []BackchannelLogout
	problems    []string
}

// RegisterLogoutClient makes the end-session endpoint play the conformance
// suite's. A request (GET or POST) must carry an id_token_hint that is an
// ID token this provider issued and a registered post_logout_redirect_uri;
// otherwise it is answered 400 and the problem recorded (see
// EndSessionProblems). Then, while the browser waits: with a
// BackchannelLogoutURI, a logout token for the hint's sub and sid is
// POSTed there (form logout_token and an ignored_parameter; the token has
// no typ header, a UUID jti, an ignored_claim, and is signed like ID
// tokens unless ChangeEndSessionLogoutToken says otherwise) and the answer
// recorded (see BackchannelLogouts). Then, with a FrontchannelLogoutURI,
// the browser gets a page that loads it in an iframe and, after five
// seconds, goes on (a meta refresh) to the post_logout_redirect_uri;
// without, it is redirected there at once. The state goes back as
// SetEndSessionState says.
func (p *Provider) RegisterLogoutClient(c LogoutClient) {
	c.PostLogoutRedirectURIs = slices.Clone(c.PostLogoutRedirectURIs)
	p.mu.Lock()
	p.x.logout.client = &c
	p.mu.Unlock()
}

// SetEndSessionState chooses the state the end-session endpoint sends the
// browser back with, registered logout client or not.
func (p *Provider) SetEndSessionState(s ReturnedState) {
	p.mu.Lock()
	p.x.logout.returned = s
	p.mu.Unlock()
}

// ChangeEndSessionLogoutToken changes the logout tokens the end-session
// endpoint sends from now on; the zero LogoutTokenChange sends valid ones.
func (p *Provider) ChangeEndSessionLogoutToken(c LogoutTokenChange) {
	cp, err := copyClaims(c.Claims)
	if err == nil {
		c.Claims = cp
	}
	p.mu.Lock()
	p.x.logout.change = c
	p.mu.Unlock()
}

// BackchannelLogouts returns the logout tokens the end-session endpoint
// sent, with the answers, oldest first.
func (p *Provider) BackchannelLogouts() []BackchannelLogout {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]BackchannelLogout, len(p.x.logout.backchannel))
	for i, b := range p.x.logout.backchannel {
		b.Header = b.Header.Clone()
		out[i] = b
	}
	return out
}

// EndSessionProblems returns why end-session requests were refused (what
// the suite would fail the module for), oldest first; none if every
// request was good.
func (p *Provider) EndSessionProblems() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.x.logout.problems)
}

// withReturnedState is target with the state that goes back to the
// relying party after an end-session request with form.
func (p *Provider) withReturnedState(target *url.URL, form url.Values) string {
	p.mu.Lock()
	mode := p.x.logout.returned
	p.mu.Unlock()
	q := target.Query()
	state, had := form["state"]
	switch {
	case mode == OtherState && had:
		q.Set("state", state[0]+"_INVALID")
	case mode == OtherState:
		q.Set("state", "INVALID")
	case mode == NoState:
		q.Del("state")
	case had:
		q.Set("state", state[0])
	}
	target.RawQuery = q.Encode()
	return target.String()
}

// endSessionForLogoutClient answers an end-session request as the suite
// does, if a logout client is registered; it reports whether it did.
func (p *Provider) endSessionForLogoutClient(w http.ResponseWriter, r *http.Request) bool {
	p.mu.Lock()
	c := p.x.logout.client
	issued := slices.Contains(p.issued, r.Form.Get("id_token_hint"))
	p.mu.Unlock()
	if c == nil {
		return false
	}
	hint, back := r.Form.Get("id_token_hint"), r.Form.Get("post_logout_redirect_uri")
	claims, err := unverifiedClaims(hint)
	problem := ""
	switch {
	case hint == "" || !issued || err != nil:
		problem = "id_token_hint is not an ID token this provider issued"
	case back == "":
		problem = "no post_logout_redirect_uri"
	case !slices.Contains(c.PostLogoutRedirectURIs, back):
		problem = fmt.Sprintf("post_logout_redirect_uri %q is not registered", back)
	}
	if problem != "" {
		p.mu.Lock()
		p.x.logout.problems = append(p.x.logout.problems, problem)
		p.mu.Unlock()
		http.Error(w, problem, http.StatusBadRequest)
		return true
	}
	sub, _ := claims["sub"].(string)
	sid, _ := claims["sid"].(string)
	if c.BackchannelLogoutURI != "" {
		p.sendBackchannelLogout(c.BackchannelLogoutURI, sub, sid)
	}
	target, _ := url.Parse(back)
	next := p.withReturnedState(target, r.Form)
	if c.FrontchannelLogoutURI == "" {
		http.Redirect(w, r, next, http.StatusFound)
		return true
	}
	frame, err := url.Parse(c.FrontchannelLogoutURI)
	if err != nil {
		http.Error(w, "unusable frontchannel_logout_uri", http.StatusInternalServerError)
		return true
	}
	if c.FrontchannelLogoutSessionRequired {
		q := frame.Query()
		q.Set("iss", p.issuer)
		q.Set("sid", sid)
		frame.RawQuery = q.Encode()
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = frontchannelPage.Execute(w, map[string]string{"Frame": frame.String(), "Next": next})
	return true
}

var frontchannelPage = template.Must(template.New("frontchannel").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Logging out</title>
<meta http-equiv="refresh" content="5; url={{.Next}}"></head>
<body><p>Logging out of the relying party...</p>
<iframe src="{{.Frame}}" width="300" height="100"></iframe>
<p><a href="{{.Next}}">Continue</a></p></body></html>
`))

// sendBackchannelLogout POSTs the logout token for sub and sid to uri, as
// the suite does, and records the answer.
func (p *Provider) sendBackchannelLogout(uri, sub, sid string) {
	p.mu.Lock()
	change := p.x.logout.change
	alg := "RS256"
	if p.x.keys.alg != "" {
		alg = p.x.keys.alg
	}
	p.mu.Unlock()
	if change.Alg != "" {
		alg = change.Alg
	}
	claims := map[string]any{
		"sub":           sub,
		"jti":           newUUID(),
		"ignored_claim": "Logout Tokens MAY contain other Claims. Any Claims used that are not understood MUST be ignored.",
	}
	if sid != "" {
		claims["sid"] = sid
	}
	for k, v := range change.Claims {
		claims[k] = v // nil removes: see mergeLogoutClaims
	}
	rec := BackchannelLogout{}
	rec.LogoutToken, rec.Err = p.SignLogoutTokenWith(alg, claims, "")
	if rec.Err == nil {
		form := url.Values{
			"logout_token":      {rec.LogoutToken},
			"ignored_parameter": {"The POST body MAY contain other values in addition to logout_token."},
		}
		client := &http.Client{
			Timeout:       10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		resp, err := client.PostForm(uri, form)
		if err != nil {
			rec.Err = err
		} else {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			rec.Status, rec.Header, rec.Body = resp.StatusCode, resp.Header, string(body)
		}
	}
	p.mu.Lock()
	p.x.logout.backchannel = append(p.x.logout.backchannel, rec)
	p.mu.Unlock()
}

// unverifiedClaims decodes a JWT's claims without verifying it.
func unverifiedClaims(raw string) (map[string]any, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c map[string]any
	return c, json.Unmarshal(b, &c)
}
