package conformance

// The logout plans, with response_type=code: Back-Channel
// (oidcc-client-back-channel-logout-rp-basic), RP-Initiated
// (oidcc-client-rp-initiated-logout-rp-basic) and Front-Channel
// (oidcc-client-front-channel-logout-rp-basic). In each module the relying
// party signs in (ID tokens carry a sid), then the user presses its
// sign-out button: the relying party ends its session and sends the
// browser to the provider's end_session_endpoint with an id_token_hint, a
// registered post_logout_redirect_uri and a state. The provider, as the
// suite's, checks both; with a backchannel_logout_uri it POSTs a logout
// token there first (the module's variant of one) and expects 200, or 400
// for a token the relying party must refuse, with Cache-Control: no-store
// (a warning without); with a frontchannel_logout_uri it answers with a
// page that loads it in an iframe (iss and sid in the query). Then the
// browser goes back to the post_logout_redirect_uri with the state (or, in
// two RP-Initiated modules, another or none).

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// signedOutPage is where the site's sign-out button sends the browser
// after the provider: the one page oidc_auth does not protect, so landing
// there does not start a new sign-in.
const signedOutPage = "/signed-out"

var (
	autoPostForm  = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	autoPostInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	iframeSrc     = regexp.MustCompile(`<iframe src="([^"]+)"`)
	continueLink  = regexp.MustCompile(`<a href="([^"]+)">Continue</a>`)
)

// logout is what a sign-out went through.
type logout struct {
	endSession url.Values     // what reached the end_session_endpoint
	frame      *http.Response // the front-channel iframe's answer, if any
	frameURL   *url.URL
	final      *http.Response // where the browser ended
	finalBody  string
}

// signOut presses the site's sign-out button (a POST from the site's own
// page, asking to go to signedOutPage afterwards) and takes the browser
// where a real one goes: the page's auto-submitted form to the provider's
// end_session_endpoint, which notifies the site and answers with a
// redirect back or, for front-channel logout, a page whose iframe the
// browser loads (cross-site, without the site's cookies) before its
// Continue link.
func (m *module) signOut(b *browser) logout {
	m.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, m.site.url+"/oauth2/logout?rd="+url.QueryEscape(signedOutPage), nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Origin", m.site.url)
	resp, body := b.do(req)
	action := autoPostForm.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || action == nil {
		m.t.Fatalf("sign-out: %d without the form to the end_session_endpoint:\n%s", resp.StatusCode, body)
	}
	if b.hasSession(m.site) {
		m.t.Error("the session cookie is still set after the sign-out POST")
	}
	form := url.Values{}
	for _, in := range autoPostInput.FindAllStringSubmatch(body, -1) {
		form.Add(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	end := html.UnescapeString(action[1])
	if !strings.HasPrefix(end, m.op.Issuer()) {
		m.t.Fatalf("the sign-out form goes to %q, not the provider's end_session_endpoint", end)
	}
	req, _ = http.NewRequest(http.MethodPost, end, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	var l logout
	l.final, l.finalBody = b.do(req)
	l.endSession = m.op.LastEndSessionRequest()
	if got := m.op.EndSessionProblems(); len(got) != 0 {
		m.t.Fatalf("the provider refused the end-session request as the suite would: %v", got)
	}
	if src := iframeSrc.FindStringSubmatch(l.finalBody); src != nil && l.final.Request.URL.Host != mustHost(m.t, m.site.url) {
		l.frameURL, _ = url.Parse(html.UnescapeString(src[1]))
		req, _ := http.NewRequest(http.MethodGet, l.frameURL.String(), nil)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		req.Header.Set("Sec-Fetch-Dest", "iframe")
		l.frame, _ = newBrowser(m.t).do(req)
		next := continueLink.FindStringSubmatch(l.finalBody)
		if next == nil {
			m.t.Fatalf("the front-channel logout page has no way on:\n%s", l.finalBody)
		}
		req, _ = http.NewRequest(http.MethodGet, html.UnescapeString(next[1]), nil)
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		l.final, l.finalBody = b.do(req)
	}
	return l
}

func mustHost(t *testing.T, u string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return p.Host
}

// signInAndOut signs in, checks the sign-in as the suite does (userinfo
// called), and signs out; it checks what every logout module expects of
// the end-session request and that the session is over, also for a copy
// of its cookies taken before.
func (m *module) signInAndOut(b *browser) logout {
	m.t.Helper()
	m.signIn(b)
	m.assertAccepted(b, 1)
	idt := m.idTokens()
	if len(idt) != 1 || jwtPart(m.t, idt[0], 1)["sid"] == nil {
		m.t.Fatal("the sign-in's ID token has no sid; the test provider is not the suite's")
	}
	copied := b.cookieHeader(m.site)
	l := m.signOut(b)
	q := l.endSession
	if q.Get("id_token_hint") != idt[0] || q.Get("post_logout_redirect_uri") != m.site.url+"/oauth2/logout" || q.Get("state") == "" {
		m.t.Errorf("end-session request %v: want the sign-in's ID token as id_token_hint, the registered post_logout_redirect_uri and a state", q)
	}
	if b.hasSession(m.site) {
		m.t.Error("a session cookie is set after the logout")
	}
	if resp, _ := b.fetch(m.site.url + "/oauth2/userinfo"); resp.StatusCode != http.StatusUnauthorized {
		m.t.Errorf("the site after the logout: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, m.site.url+"/oauth2/userinfo", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", copied)
	if resp, _ := newBrowser(m.t).do(req); resp.StatusCode != http.StatusUnauthorized {
		m.t.Errorf("a copy of the session's cookies after the logout: %d, want 401", resp.StatusCode)
	}
	assertNoSecrets(m.t, "Caddy's log", m.site.logs(), m.op.IssuedTokens()...)
	return l
}

// cookieHeader is the Cookie header the browser sends to the site.
func (b *browser) cookieHeader(s *site) string {
	u, _ := url.Parse(s.url)
	var parts []string
	for _, c := range b.jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// assertBackToSite checks that the post-logout redirect ended where the
// sign-out asked: the signed-out page.
func (l logout) assertBackToSite(t *testing.T, m *module) {
	t.Helper()
	if l.final.StatusCode != http.StatusOK || l.final.Request.URL.String() != m.site.url+signedOutPage {
		t.Errorf("after the provider: %d at %s, want the signed-out page:\n%s", l.final.StatusCode, l.final.Request.URL, l.finalBody)
	}
}

// assertBackchannel checks the one logout token the provider sent: the
// site's answer has status and Cache-Control: no-store, and the log says
// logLine (for a refused token, the reason).
func (m *module) assertBackchannel(status int, logLine string) {
	m.t.Helper()
	sent := m.op.BackchannelLogouts()
	if len(sent) != 1 || sent[0].Err != nil {
		m.t.Fatalf("back-channel logout requests %+v, want one answered", sent)
	}
	if sent[0].Status != status {
		m.t.Errorf("back-channel logout answered %d %s, want %d", sent[0].Status, sent[0].Body, status)
	}
	if got := sent[0].Header.Get("Cache-Control"); got != "no-store" {
		m.t.Errorf("back-channel logout answered with Cache-Control %q, want no-store", got)
	}
	if !strings.Contains(m.site.logs(), logLine) {
		m.t.Errorf("the log does not say %q", logLine)
	}
}

// backchannelModule plays one module of the Back-Channel plan: the
// provider sends a logout token changed by change, and the site must
// answer status. The site has ended the session of that token before it
// arrives (the sign-out button does so before it goes to the provider),
// which the suite cannot tell from a site that ignores logout tokens; so
// the same kind of token is then sent for the provider session of a
// second browser still signed in: a valid one must end that session, a
// refused one must leave it alone.
func backchannelModule(t *testing.T, change testop.LogoutTokenChange, status int, logLine string) {
	m := startModule(t, backchannelPlan, moduleOptions{})
	m.op.ChangeEndSessionLogoutToken(change)
	b := newBrowser(t)
	l := m.signInAndOut(b)
	m.assertBackchannel(status, logLine)
	l.assertBackToSite(t, m)
	m.assertSecondSession(change, status)
}

// assertSecondSession signs in a second browser, sends a logout token
// changed by change for its provider session straight to the site's
// back-channel logout endpoint, and checks the answer is status and the
// session ended (200) or not (400).
func (m *module) assertSecondSession(change testop.LogoutTokenChange, status int) {
	m.t.Helper()
	other := newBrowser(m.t)
	m.signIn(other)
	ids := m.idTokens()
	sid, _ := jwtPart(m.t, ids[len(ids)-1], 1)["sid"].(string)
	if first, _ := jwtPart(m.t, ids[0], 1)["sid"].(string); sid == "" || sid == first {
		m.t.Fatalf("the second sign-in's sid %q is not a new provider session", sid)
	}
	claims := map[string]any{"sub": subject, "sid": sid}
	for k, v := range change.Claims {
		claims[k] = v
	}
	alg := change.Alg
	if alg == "" {
		alg = "RS256"
	}
	token, err := m.op.SignLogoutTokenWith(alg, claims, "")
	if err != nil {
		m.t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, m.site.url+"/oauth2/backchannel-logout", strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := newBrowser(m.t).do(req)
	if resp.StatusCode != status || resp.Header.Get("Cache-Control") != "no-store" {
		m.t.Errorf("a logout token for a second session: %d %s, Cache-Control %q; want %d, no-store", resp.StatusCode, body, resp.Header.Get("Cache-Control"), status)
	}
	want := http.StatusOK
	if status == http.StatusOK {
		want = http.StatusUnauthorized
	}
	if resp, _ := other.fetch(m.site.url + "/oauth2/userinfo"); resp.StatusCode != want {
		m.t.Errorf("the second session after its logout token was answered %d: %d, want %d", status, resp.StatusCode, want)
	}
}

// refusedToken is the start of the log line of a refused logout token,
// with its reason (up to the first character JSON escapes).
func refusedToken(reason string) string {
	return `"msg":"back-channel logout token refused","reason":"` + reason
}

const missingEvent = "logout token missing required http://schemas.openid.net/event/backchannel-logout event"

// TestOIDCCClientTestRpBackchannelRpinitlogout:
// oidcc-client-test-rp-backchannel-rpinitlogout. A valid logout token
// (sub, sid, a UUID jti, iat, exp, the back-channel event, an ignored
// claim, no typ header; an ignored form parameter beside it): 200.
func TestOIDCCClientTestRpBackchannelRpinitlogout(t *testing.T) {
	backchannelModule(t, testop.LogoutTokenChange{}, http.StatusOK, `"msg":"back-channel logout","sub":"`+subject+`"`)
}

// TestOIDCCClientTestRpBackchannelRpinitlogoutAlgNone:
// oidcc-client-test-rp-backchannel-rpinitlogout-alg-none. The logout token
// is unsigned (alg none): 400.
func TestOIDCCClientTestRpBackchannelRpinitlogoutAlgNone(t *testing.T) {
	backchannelModule(t, testop.LogoutTokenChange{Alg: "none"}, http.StatusBadRequest, refusedToken("the token is unsigned"))
}

// TestOIDCCClientTestRpBackchannelRpinitlogoutNoEvent:
// oidcc-client-test-rp-backchannel-rpinitlogout-no-event. The logout token
// has no events claim: 400.
func TestOIDCCClientTestRpBackchannelRpinitlogoutNoEvent(t *testing.T) {
	backchannelModule(t, testop.LogoutTokenChange{Claims: map[string]any{"events": nil}}, http.StatusBadRequest, refusedToken(missingEvent))
}

// TestOIDCCClientTestRpBackchannelRpinitlogoutWithNonce:
// oidcc-client-test-rp-backchannel-rpinitlogout-with-nonce. The logout
// token has a nonce claim, which logout tokens must not have: 400.
func TestOIDCCClientTestRpBackchannelRpinitlogoutWithNonce(t *testing.T) {
	backchannelModule(t, testop.LogoutTokenChange{Claims: map[string]any{"nonce": "logout_tokens_must_not_contain_a_nonce"}},
		http.StatusBadRequest, refusedToken("logout token must not contain a 'nonce' claim"))
}

// TestOIDCCClientTestRpBackchannelRpinitlogoutWrongAlg:
// oidcc-client-test-rp-backchannel-rpinitlogout-wrong-alg. The logout token
// is signed ES256 with a published EC key while the client's algorithm is
// RS256: 400.
func TestOIDCCClientTestRpBackchannelRpinitlogoutWrongAlg(t *testing.T) {
	backchannelModule(t, testop.LogoutTokenChange{Alg: "ES256"}, http.StatusBadRequest, refusedToken("the token is signed with algorithm ES256, which signing_algs does not allow"))
}

// TestOIDCCClientTestRpBackchannelRpinitlogoutWrongAud:
// oidcc-client-test-rp-backchannel-rpinitlogout-wrong-aud. The logout
// token's aud is the client ID with "INVALID" appended: 400.
func TestOIDCCClientTestRpBackchannelRpinitlogoutWrongAud(t *testing.T) {
	backchannelModule(t, testop.LogoutTokenChange{Claims: map[string]any{"aud": clientID + "INVALID"}}, http.StatusBadRequest, refusedToken("expected logout token audience"))
}

// TestOIDCCClientTestRpBackchannelRpinitlogoutWrongEvent:
// oidcc-client-test-rp-backchannel-rpinitlogout-wrong-event. The events
// claim holds another event than back-channel logout: 400.
func TestOIDCCClientTestRpBackchannelRpinitlogoutWrongEvent(t *testing.T) {
	events := map[string]any{"http://schemas.openid.net/event/foobar": map[string]any{}}
	backchannelModule(t, testop.LogoutTokenChange{Claims: map[string]any{"events": events}}, http.StatusBadRequest, refusedToken(missingEvent))
}

// TestOIDCCClientTestRpBackchannelRpinitlogoutWrongIss:
// oidcc-client-test-rp-backchannel-rpinitlogout-wrong-iss. The logout
// token's iss is the issuer with "INVALID" appended: 400.
func TestOIDCCClientTestRpBackchannelRpinitlogoutWrongIss(t *testing.T) {
	m := startModule(t, backchannelPlan, moduleOptions{})
	m.op.ChangeEndSessionLogoutToken(testop.LogoutTokenChange{Claims: map[string]any{"iss": m.op.Issuer() + "INVALID"}})
	b := newBrowser(t)
	l := m.signInAndOut(b)
	m.assertBackchannel(http.StatusBadRequest, refusedToken("logout token issued by a different provider"))
	l.assertBackToSite(t, m)
	m.assertSecondSession(testop.LogoutTokenChange{Claims: map[string]any{"iss": m.op.Issuer() + "INVALID"}}, http.StatusBadRequest)
}

// TestOIDCCClientTestRpInitLogout: oidcc-client-test-rp-init-logout. The
// relying party is registered with a backchannel_logout_uri only, so the
// suite sends a valid logout token (200 expected) and redirects back with
// the state; the browser goes on to where the sign-out asked.
func TestOIDCCClientTestRpInitLogout(t *testing.T) {
	m := startModule(t, rpInitiatedPlan, moduleOptions{})
	b := newBrowser(t)
	l := m.signInAndOut(b)
	m.assertBackchannel(http.StatusOK, `"msg":"back-channel logout"`)
	l.assertBackToSite(t, m)
}

// assertUnconfirmedReturn checks a return from the provider whose state is
// not the one sent: the site's logout path answers 400 with a page saying
// the provider's answer did not match (the session here is over either
// way), and does not go on to the page the sign-out asked for.
func (l logout) assertUnconfirmedReturn(t *testing.T, m *module) {
	t.Helper()
	if l.final.StatusCode != http.StatusBadRequest || l.final.Request.URL.Path != "/oauth2/logout" ||
		!strings.Contains(l.finalBody, "Sign-out could not be confirmed") {
		t.Errorf("a return with another state: %d at %s, want 400 at the logout path saying so:\n%s", l.final.StatusCode, l.final.Request.URL, l.finalBody)
	}
	if !strings.Contains(m.site.logs(), "the provider returned from logout with another state") {
		t.Error("the log does not say the state did not match")
	}
}

// TestOIDCCClientTestRpInitLogoutOtherState:
// oidcc-client-test-rp-init-logout-other-state. As rp-init-logout (the
// suite skips the module if the relying party sends no state), but the
// provider redirects back with the state with "_INVALID" appended.
func TestOIDCCClientTestRpInitLogoutOtherState(t *testing.T) {
	m := startModule(t, rpInitiatedPlan, moduleOptions{})
	m.op.SetEndSessionState(testop.OtherState)
	b := newBrowser(t)
	l := m.signInAndOut(b)
	m.assertBackchannel(http.StatusOK, `"msg":"back-channel logout"`)
	if got := l.final.Request.URL.Query().Get("state"); got != l.endSession.Get("state")+"_INVALID" {
		t.Fatalf("the provider returned state %q; the test provider is not the suite's", got)
	}
	l.assertUnconfirmedReturn(t, m)
}

// TestOIDCCClientTestRpInitLogoutNoState:
// oidcc-client-test-rp-init-logout-no-state. As rp-init-logout, but the
// provider redirects back without a state.
func TestOIDCCClientTestRpInitLogoutNoState(t *testing.T) {
	m := startModule(t, rpInitiatedPlan, moduleOptions{})
	m.op.SetEndSessionState(testop.NoState)
	b := newBrowser(t)
	l := m.signInAndOut(b)
	m.assertBackchannel(http.StatusOK, `"msg":"back-channel logout"`)
	if l.final.Request.URL.Query().Has("state") {
		t.Fatal("the provider returned a state; the test provider is not the suite's")
	}
	l.assertUnconfirmedReturn(t, m)
}

// TestOIDCCClientTestRpFrontchannelRpinitlogout:
// oidcc-client-test-rp-frontchannel-rpinitlogout. The relying party is
// registered with a frontchannel_logout_uri (session required): the
// end-session endpoint answers with a page that loads it, with iss and the
// sid of the ID token, in an iframe, then goes on to the
// post_logout_redirect_uri. The suite needs the iframe to load (it asks
// for a review of the result, as it cannot see inside); the relying party
// must answer it with a page it lets be framed, not cached.
func TestOIDCCClientTestRpFrontchannelRpinitlogout(t *testing.T) {
	m := startModule(t, frontchannelPlan, moduleOptions{})
	b := newBrowser(t)
	l := m.signInAndOut(b)
	if l.frame == nil {
		t.Fatal("the provider's end-session answer loaded no front-channel logout iframe")
	}
	sid := jwtPart(t, m.idTokens()[0], 1)["sid"]
	if l.frameURL.Path != "/oauth2/frontchannel-logout" || l.frameURL.Query().Get("iss") != m.op.Issuer() || l.frameURL.Query().Get("sid") != sid {
		t.Errorf("front-channel logout URI %s: want the site's, with the issuer and the ID token's sid", l.frameURL)
	}
	if got := m.op.BackchannelLogouts(); len(got) != 0 {
		t.Errorf("%d back-channel logout requests in the front-channel plan", len(got))
	}
	f := l.frame
	if f.StatusCode != http.StatusOK || f.Header.Get("Cache-Control") != "no-store" || f.Header.Get("X-Frame-Options") != "" ||
		strings.Contains(f.Header.Get("Content-Security-Policy"), "frame-ancestors") {
		t.Errorf("front-channel logout answered %d, Cache-Control %q, X-Frame-Options %q, CSP %q; want 200, no-store and framable",
			f.StatusCode, f.Header.Get("Cache-Control"), f.Header.Get("X-Frame-Options"), f.Header.Get("Content-Security-Policy"))
	}
	if !strings.Contains(m.site.logs(), `"msg":"front-channel logout","sid":"`) {
		t.Error("the log does not record the front-channel logout")
	}
	l.assertBackToSite(t, m)

	// The session of that sid had ended at the sign-out already; the
	// same request for a second browser's provider session must end it.
	other := newBrowser(t)
	m.signIn(other)
	ids := m.idTokens()
	q := l.frameURL.Query()
	q.Set("sid", jwtPart(t, ids[len(ids)-1], 1)["sid"].(string))
	req, _ := http.NewRequest(http.MethodGet, m.site.url+l.frameURL.Path+"?"+q.Encode(), nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Sec-Fetch-Dest", "iframe")
	if resp, _ := newBrowser(t).do(req); resp.StatusCode != http.StatusOK {
		t.Fatalf("front-channel logout of a second session: %d", resp.StatusCode)
	}
	if resp, _ := other.fetch(m.site.url + "/oauth2/userinfo"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the second session after its front-channel logout: %d, want 401", resp.StatusCode)
	}
}
