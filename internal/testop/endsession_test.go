package testop

import (
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// logoutReceiver is a relying party's back-channel logout endpoint: it
// records the forms it gets and answers with status.
type logoutReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	forms []url.Values
}

func newLogoutReceiver(t *testing.T, status int) *logoutReceiver {
	lr := &logoutReceiver{}
	lr.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		lr.mu.Lock()
		lr.forms = append(lr.forms, r.PostForm)
		lr.mu.Unlock()
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
	}))
	t.Cleanup(lr.Close)
	return lr
}

func (lr *logoutReceiver) received() []url.Values {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return append([]url.Values(nil), lr.forms...)
}

// endSession sends the end-session request with form and returns the
// answer, without following a redirect.
func endSession(t *testing.T, r *rp, form url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := r.noFollow.PostForm(r.op.Issuer()+"/end_session", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestLogoutClientGetsABackchannelLogout: the suite's end-session flow,
// with a valid logout token for the ID token's session.
func TestLogoutClientGetsABackchannelLogout(t *testing.T) {
	p := newOP(t, Config{})
	rp := newRP(t, p)
	bc := newLogoutReceiver(t, http.StatusOK)
	p.RegisterLogoutClient(LogoutClient{PostLogoutRedirectURIs: []string{"http://127.0.0.1:1/bye"}, BackchannelLogoutURI: bc.URL})
	l := rp.mustLogin(t)
	idc := jwtClaims(t, l.rawIDToken)
	resp, _ := endSession(t, rp, url.Values{"id_token_hint": {l.rawIDToken}, "post_logout_redirect_uri": {"http://127.0.0.1:1/bye"}, "state": {"s1"}})
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://127.0.0.1:1/bye?state=s1" {
		t.Fatalf("end session: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := p.EndSessionProblems(); len(got) != 0 {
		t.Errorf("problems %v", got)
	}
	sent := p.BackchannelLogouts()
	if len(sent) != 1 || sent[0].Status != http.StatusOK || sent[0].Header.Get("Cache-Control") != "no-store" || sent[0].Err != nil {
		t.Fatalf("back-channel logouts %+v", sent)
	}
	if got := bc.received(); len(got) != 1 || got[0].Get("logout_token") != sent[0].LogoutToken || got[0].Get("ignored_parameter") == "" {
		t.Fatalf("the relying party got %v", got)
	}
	h, c := jwtHeader(t, sent[0].LogoutToken), jwtClaims(t, sent[0].LogoutToken)
	if h["alg"] != "RS256" || h["typ"] != nil || h["kid"] == nil {
		t.Errorf("logout token header %v", h)
	}
	if c["sub"] != idc["sub"] || c["sid"] != idc["sid"] || c["aud"] != p.ClientID() || c["iss"] != p.Issuer() ||
		c["ignored_claim"] == nil || c["events"] == nil || c["nonce"] != nil || len(c["jti"].(string)) != 36 {
		t.Errorf("logout token claims %v", c)
	}
	if _, err := verifyJWT(t, p, sent[0].LogoutToken); err != nil {
		t.Errorf("logout token signature: %v", err)
	}
}

// TestLogoutClientRefusesBadEndSessionRequests: an unknown id_token_hint,
// or a post_logout_redirect_uri not registered, is refused and recorded;
// no logout token goes out.
func TestLogoutClientRefusesBadEndSessionRequests(t *testing.T) {
	p := newOP(t, Config{})
	rp := newRP(t, p)
	bc := newLogoutReceiver(t, http.StatusOK)
	p.RegisterLogoutClient(LogoutClient{PostLogoutRedirectURIs: []string{"http://127.0.0.1:1/bye"}, BackchannelLogoutURI: bc.URL})
	l := rp.mustLogin(t)
	for _, form := range []url.Values{
		{"id_token_hint": {"not-a-token"}, "post_logout_redirect_uri": {"http://127.0.0.1:1/bye"}},
		{"id_token_hint": {l.token.AccessToken}, "post_logout_redirect_uri": {"http://127.0.0.1:1/bye"}},
		{"id_token_hint": {l.rawIDToken}},
		{"id_token_hint": {l.rawIDToken}, "post_logout_redirect_uri": {"http://127.0.0.1:1/elsewhere"}},
	} {
		if resp, _ := endSession(t, rp, form); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%v: %d, want 400", form, resp.StatusCode)
		}
	}
	if got := p.EndSessionProblems(); len(got) != 4 || !strings.Contains(got[3], "not registered") {
		t.Errorf("problems %q", got)
	}
	if len(p.BackchannelLogouts()) != 0 || len(bc.received()) != 0 {
		t.Error("a logout token was sent for a refused request")
	}
}

// TestChangeEndSessionLogoutToken: the back-channel modules' tokens.
func TestChangeEndSessionLogoutToken(t *testing.T) {
	p := newOP(t, Config{})
	rp := newRP(t, p)
	bc := newLogoutReceiver(t, http.StatusBadRequest)
	p.RegisterLogoutClient(LogoutClient{PostLogoutRedirectURIs: []string{"http://127.0.0.1:1/bye"}, BackchannelLogoutURI: bc.URL})
	form := func() url.Values {
		return url.Values{"id_token_hint": {rp.mustLogin(t).rawIDToken}, "post_logout_redirect_uri": {"http://127.0.0.1:1/bye"}}
	}
	p.ChangeEndSessionLogoutToken(LogoutTokenChange{Claims: map[string]any{"events": nil, "aud": "other"}})
	endSession(t, rp, form())
	p.ChangeEndSessionLogoutToken(LogoutTokenChange{Alg: "ES256"})
	endSession(t, rp, form())
	p.ChangeEndSessionLogoutToken(LogoutTokenChange{Alg: "none"})
	endSession(t, rp, form())
	sent := p.BackchannelLogouts()
	if len(sent) != 3 {
		t.Fatalf("%d logout tokens sent", len(sent))
	}
	if c := jwtClaims(t, sent[0].LogoutToken); c["events"] != nil || c["aud"] != "other" || c["sid"] == nil {
		t.Errorf("changed claims %v", c)
	}
	if h := jwtHeader(t, sent[1].LogoutToken); h["alg"] != "ES256" {
		t.Errorf("ES256 token header %v", h)
	}
	if h := jwtHeader(t, sent[2].LogoutToken); h["alg"] != "none" {
		t.Errorf("unsigned token header %v", h)
	}
	if sent[0].Status != http.StatusBadRequest {
		t.Errorf("recorded status %d", sent[0].Status)
	}
}

// TestSetEndSessionState: the state the browser is sent back with.
func TestSetEndSessionState(t *testing.T) {
	p := newOP(t, Config{})
	rp := newRP(t, p)
	for _, c := range []struct {
		mode      ReturnedState
		sent      string
		wantState []string
	}{
		{EchoState, "s1", []string{"s1"}},
		{OtherState, "s1", []string{"s1_INVALID"}},
		{OtherState, "", []string{"INVALID"}},
		{NoState, "s1", nil},
	} {
		p.SetEndSessionState(c.mode)
		form := url.Values{"post_logout_redirect_uri": {"http://127.0.0.1:1/bye"}}
		if c.sent != "" {
			form.Set("state", c.sent)
		}
		resp, _ := endSession(t, rp, form)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if got := loc.Query()["state"]; strings.Join(got, ",") != strings.Join(c.wantState, ",") {
			t.Errorf("mode %d, state %q: returned %q, want %q", c.mode, c.sent, got, c.wantState)
		}
	}
}

// TestLogoutClientFrontchannelPage: the page frames the front-channel
// logout URI with iss and sid, then goes on to the post-logout redirect.
func TestLogoutClientFrontchannelPage(t *testing.T) {
	p := newOP(t, Config{})
	rp := newRP(t, p)
	p.RegisterLogoutClient(LogoutClient{
		PostLogoutRedirectURIs:            []string{"http://127.0.0.1:1/bye"},
		FrontchannelLogoutURI:             "http://127.0.0.1:1/fc?x=1",
		FrontchannelLogoutSessionRequired: true,
	})
	l := rp.mustLogin(t)
	resp, page := endSession(t, rp, url.Values{"id_token_hint": {l.rawIDToken}, "post_logout_redirect_uri": {"http://127.0.0.1:1/bye"}, "state": {"s1"}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("end session: %d", resp.StatusCode)
	}
	_, src, _ := strings.Cut(page, `<iframe src="`)
	src, _, _ = strings.Cut(src, `"`)
	frame, err := url.Parse(html.UnescapeString(src))
	if err != nil || frame.Path != "/fc" {
		t.Fatalf("iframe %q in %s", src, page)
	}
	q := frame.Query()
	if q.Get("iss") != p.Issuer() || q.Get("sid") != jwtClaims(t, l.rawIDToken)["sid"] || q.Get("x") != "1" {
		t.Errorf("front-channel logout URL %v", frame)
	}
	if !strings.Contains(page, `content="5; url=http://127.0.0.1:1/bye?state=s1"`) {
		t.Errorf("no refresh to the post-logout redirect in %s", page)
	}
	if len(p.BackchannelLogouts()) != 0 {
		t.Error("a logout token went out without a back-channel URI")
	}
}
