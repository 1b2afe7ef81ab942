// Package conformance plays the OpenID Foundation conformance suite's
// relying-party test modules against caddy-oidc: for each module of the
// Basic, Config, refresh, RP-Initiated, Back-Channel and Front-Channel
// logout plans, a test named after the module id starts a real Caddy with
// oidc_auth against a fresh internal/testop provider that does what the
// suite's provider does in that module, drives a browser-like client
// through it, and asserts what the suite asserts. docs/CONFORMANCE.md has
// the table of modules and tests.
package conformance

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/oidcgate/caddy-oidc"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

func TestMain(m *testing.M) {
	// Caddy keeps its data and autosaved config under these; keep them out
	// of the real home directory.
	dir, err := os.MkdirTemp("", "caddy-oidc-conformance")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	code := m.Run()
	_ = caddy.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// plan is one of the suite's relying-party test plans; each gives its
// modules' provider a baseline.
type plan int

const (
	basicPlan        plan = iota // oidcc-client-basic-certification-test-plan
	configPlan                   // oidcc-client-config-certification-test-plan
	refreshPlan                  // oidcc-client-refreshtoken-test-plan
	backchannelPlan              // oidcc-client-back-channel-logout-rp-basic
	rpInitiatedPlan              // oidcc-client-rp-initiated-logout-rp-basic
	frontchannelPlan             // oidcc-client-front-channel-logout-rp-basic
)

func (pl plan) logout() bool { return pl >= backchannelPlan }

// The suite's test configuration, as docs/CONFORMANCE.md gives it.
const (
	issuerPath   = "/test/a/caddy-oidc/"
	clientID     = "caddy-oidc-conformance"
	clientSecret = "a-secret-of-at-least-32-bytes-for-client_secret_jwt"
	subject      = "user-subject-1234531"
	placeholder  = "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"
)

// suiteUser is the user the suite's userinfo endpoint describes, released
// by scope.
var suiteUser = map[string]any{
	"name":                  "Demo T. User",
	"given_name":            "Demo",
	"family_name":           "User",
	"preferred_username":    "d.tu",
	"email":                 "user@example.com",
	"email_verified":        false,
	"phone_number":          "+49 000 000000",
	"phone_number_verified": false,
	"address":               map[string]any{"street_address": "100 Universal City Plaza", "locality": "Hollywood", "country": "USA"},
}

// module is one module being played: its provider and the Caddy site
// signing in with it.
type module struct {
	t    *testing.T
	plan plan
	op   *testop.Provider
	site *site
	up   *upstream
}

// moduleOptions are what a module changes of its plan's baseline.
type moduleOptions struct {
	// editIDTokens changes the claims of the ID tokens the provider
	// issues, after the baseline's changes.
	editIDTokens func(c map[string]any, refresh bool)
	// beforeSite changes the provider before Caddy starts and discovers
	// it.
	beforeSite func(op *testop.Provider)
	// oidcAuth adds oidc_auth subdirectives.
	oidcAuth string
	// clientSecret replaces the configured secret.
	clientSecret string
}

// startModule starts a fresh provider playing the suite's for plan (every
// module is a new provider: new keys, codes and tokens), changed by opts,
// and a Caddy site with oidc_auth against it.
func startModule(t *testing.T, pl plan, opts moduleOptions) *module {
	t.Helper()
	secret := clientSecret
	if opts.clientSecret != "" {
		secret = opts.clientSecret
	}
	algs := []string{"none", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	op, err := testop.New(testop.Config{
		IssuerPath:       issuerPath,
		ClientID:         clientID,
		ClientSecret:     secret,
		Subject:          subject,
		TokenAuthMethods: []string{testop.ClientSecretBasic},
		SigningAlgs:      algs,
		// The suite's ID tokens carry the protocol's claims only; the
		// user's come from userinfo.
		Claims:         map[string]any{"email": nil, "name": nil, "email_verified": nil},
		UserinfoClaims: suiteUser,
		AccessTokenTTL: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	if err := op.PublishKeySet(testop.SuiteKeySet); err != nil {
		t.Fatal(err)
	}
	op.ShapeTokenResponses(testop.TokenResponseShape{
		NoExpiresIn:    true,
		NoRefreshToken: pl != refreshPlan,
		RepeatNonce:    pl == refreshPlan,
	})
	op.ReleaseUserinfoByScope(true)
	grants := []string{"authorization_code", "implicit"}
	if pl == refreshPlan {
		grants = append(grants, "refresh_token")
	}
	discovery := map[string]any{
		"grant_types_supported":            grants,
		"code_challenge_methods_supported": nil,
		"scopes_supported":                 []string{"openid", "phone", "profile", "email", "address", "offline_access"},
		"response_types_supported":         []string{"code", "id_token code", "token code id_token", "id_token", "token id_token", "token code", "token"},
	}
	if !pl.logout() {
		for _, k := range []string{"end_session_endpoint", "backchannel_logout_supported", "backchannel_logout_session_supported"} {
			discovery[k] = nil
		}
	}
	if err := op.ChangeDiscovery(discovery); err != nil {
		t.Fatal(err)
	}
	op.SetSessionManagement(pl.logout())
	op.EditIDTokens(func(c map[string]any, refresh bool) {
		// auth_time only with max_age, sid only in the logout plans; exp
		// five minutes after iat.
		delete(c, "auth_time")
		if !pl.logout() || refresh {
			delete(c, "sid")
		}
		if iat, ok := c["iat"].(int64); ok {
			c["exp"] = iat + 300
		}
		if opts.editIDTokens != nil {
			opts.editIDTokens(c, refresh)
		}
	})
	if opts.beforeSite != nil {
		opts.beforeSite(op)
	}
	m := &module{t: t, plan: pl, op: op}
	m.up = newUpstream(t)
	extra := opts.oidcAuth
	if pl == refreshPlan {
		// The suite never says when its access tokens expire: take them
		// to live ten seconds, less than token_inject's refresh_skew, so
		// the first request that needs the token refreshes it; and ask
		// userinfo again after each refresh.
		extra += "\n\t\taccess_token_lifetime 10s\n\t\tuserinfo refresh"
	}
	m.site = startSite(t, m.up, op.Issuer(), secret, extra)
	if pl.logout() {
		op.RegisterLogoutClient(m.logoutClient())
	}
	return m
}

// logoutClient is the plan's logout registration of the site.
func (m *module) logoutClient() testop.LogoutClient {
	c := testop.LogoutClient{PostLogoutRedirectURIs: []string{m.site.url + "/oauth2/logout"}}
	switch m.plan {
	case backchannelPlan, rpInitiatedPlan:
		c.BackchannelLogoutURI = m.site.url + "/oauth2/backchannel-logout"
	case frontchannelPlan:
		c.FrontchannelLogoutURI = m.site.url + "/oauth2/frontchannel-logout"
		c.FrontchannelLogoutSessionRequired = true
	}
	return c
}

// upstream is the app behind Caddy: it records what reached it.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	last http.Header
	reqs []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.reqs = append(u.reqs, r.URL.Path)
		u.mu.Unlock()
		fmt.Fprintf(w, "upstream saw user %q (%s) at %s", r.Header.Get("X-User-Id"), r.Header.Get("X-Given-Name"), r.URL.Path)
	}))
	t.Cleanup(u.Close)
	return u
}

// paths are the paths of the requests that reached the upstream.
func (u *upstream) paths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.reqs...)
}

func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last.Clone()
}

// site is a running Caddy with the site a deployment would run the suite
// against (docs/CONFORMANCE.md): oidc_auth protects everything but the
// signed-out page, /api gets the user's access token from token_inject.
type site struct {
	t       *testing.T
	url     string
	logFile string
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSite adapts the site's Caddyfile and loads it into the process's
// Caddy, replacing any previous config: a new oidc_auth that discovers
// the provider afresh.
func startSite(t *testing.T, up *upstream, issuer, secret, extra string) *site {
	t.Helper()
	dir := t.TempDir()
	s := &site{t: t, logFile: filepath.Join(dir, "caddy.log")}
	s.url = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %[1]s
	log {
		output file %[2]s
		format json
		level DEBUG
	}
}
%[3]s {
	log {
		output file %[2]s
		format json
	}
	@protected not path /signed-out
	oidc_auth @protected {
		issuer %[4]s
		client_id %[5]s
		client_secret %[6]q
		%[7]s
	}
	request_header /api* Authorization "Bearer %[8]s"
	token_inject
	respond /signed-out "Signed out." 200
	reverse_proxy %[9]s {
		header_up X-User-Id {http.auth.user.id}
		header_up X-Given-Name {http.auth.user.given_name}
	}
}
`, filepath.Join(dir, "storage"), s.logFile, s.url, issuer, clientID, secret, extra, placeholder, strings.TrimPrefix(up.URL, "http://"))
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading Caddy config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return s
}

// logs returns everything Caddy has logged so far.
func (s *site) logs() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// browser is an HTTP client with a cookie jar that sends fetch metadata
// as a browser does.
type browser struct {
	t      *testing.T
	client *http.Client
	jar    *cookiejar.Jar
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, jar: jar, client: &http.Client{
		Jar:     jar,
		Timeout: 20 * time.Second,
		// No keep-alive: every test loads Caddy anew.
		Transport: fetchMetadata{&http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
	}}
}

// fetchMetadata sets Sec-Fetch-Site as a browser does, unless the test set
// it: a request the page sends, or a navigation the user starts on it, is
// "same-origin"; a redirect that passed through another origin (the
// provider sending the browser back) is "cross-site".
type fetchMetadata struct{ base http.RoundTripper }

func (fm fetchMetadata) RoundTrip(req *http.Request) (*http.Response, error) {
	if _, set := req.Header["Sec-Fetch-Site"]; !set {
		site := "same-origin"
		for r := req; r.Response != nil && r.Response.Request != nil; r = r.Response.Request {
			if origin(r.Response.Request.URL) != origin(req.URL) {
				site = "cross-site"
			}
		}
		req = req.Clone(req.Context())
		req.Header.Set("Sec-Fetch-Site", site)
	}
	return fm.base.RoundTrip(req)
}

func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

// noFollow makes the browser stop at the first redirect.
func (b *browser) noFollow() *browser {
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{t: b.t, jar: b.jar, client: &c}
}

// navigate loads a page as a browser would (Accept: text/html).
func (b *browser) navigate(u string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	return b.do(req)
}

// fetch calls an API as a browser app's fetch() would.
func (b *browser) fetch(u string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Sec-Fetch-Mode", "cors")
	return b.do(req)
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	var resp *http.Response
	var err error
	for attempt := 0; ; attempt++ {
		resp, err = b.client.Do(req)
		// Right after a config load on a new port, the listener may not
		// take connections yet: retry bodiless requests that failed
		// before any response.
		if err == nil || req.Body != nil || attempt == 20 || !isConnectionError(err) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func isConnectionError(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, io.EOF)
}

// hasSession reports whether the browser holds a session cookie of the
// site.
func (b *browser) hasSession(s *site) bool {
	u, _ := url.Parse(s.url)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == "oidc_session" {
			return true
		}
	}
	return false
}

// signIn opens the site's home page without a session, which sends the
// browser through the provider and back, and requires that it lands there
// signed in.
func (m *module) signIn(b *browser) string {
	m.t.Helper()
	resp, body := b.navigate(m.site.url + "/")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != m.site.url+"/" || !strings.Contains(body, subject) {
		m.t.Fatalf("sign-in ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	return body
}

// assertAccepted checks what the suite waits for after an accepted
// sign-in: a userinfo call (the calls-th), with the latest access token as
// a Bearer token in the Authorization header, none in the query; and that
// the site serves the signed-in user.
func (m *module) assertAccepted(b *browser, calls int) {
	m.t.Helper()
	if got := m.op.UserinfoCalls(); got != calls {
		m.t.Fatalf("%d userinfo calls, want %d", got, calls)
	}
	hdr, query := m.op.LastUserinfoRequest()
	if want := "Bearer " + m.latestAccessToken(); hdr.Get("Authorization") != want {
		m.t.Errorf("userinfo called with Authorization %.20q..., want the latest access token", hdr.Get("Authorization"))
	}
	if query.Has("access_token") {
		m.t.Error("the access token went in the userinfo request's query")
	}
	// oidc_auth's own endpoint: /api would go through token_inject, which
	// in the refresh plan refreshes the tokens.
	if resp, body := b.fetch(m.site.url + "/oauth2/userinfo"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"sub":"`+subject+`"`) {
		m.t.Errorf("the signed-in site: %d %s", resp.StatusCode, body)
	}
	assertNoSecrets(m.t, "Caddy's log", m.site.logs(), m.op.IssuedTokens()...)
}

// assertRefused checks a refused sign-in: the browser ends on the
// callback's error page (status, naming the reason), holds no session,
// the site treats it as signed out, and userinfo was never called.
func (m *module) assertRefused(b *browser, resp *http.Response, body string, status int, reason string) {
	m.t.Helper()
	if resp.StatusCode != status || resp.Request.URL.Path != "/oauth2/callback" ||
		!strings.Contains(body, "Sign-in could not be completed") || !strings.Contains(html.UnescapeString(body), reason) {
		m.t.Fatalf("refused sign-in: %d at %s, want %d at the callback naming %q:\n%s", resp.StatusCode, resp.Request.URL.Path, status, reason, body)
	}
	if b.hasSession(m.site) {
		m.t.Error("a session cookie was set")
	}
	if resp, _ := b.fetch(m.site.url + "/api/me"); resp.StatusCode != http.StatusUnauthorized {
		m.t.Errorf("the site after a refused sign-in: %d, want 401", resp.StatusCode)
	}
	if n := m.op.UserinfoCalls(); n != 0 {
		m.t.Errorf("userinfo was called %d times after a refused ID token", n)
	}
	assertNoSecrets(m.t, "the error page", body, m.op.IssuedTokens()...)
	assertNoSecrets(m.t, "Caddy's log", m.site.logs(), m.op.IssuedTokens()...)
}

// latestAccessToken is the access token of the token endpoint's latest
// answer.
func (m *module) latestAccessToken() string {
	all := m.op.TokenResponses()
	if len(all) == 0 {
		m.t.Fatal("no token response")
	}
	tok, _ := all[len(all)-1]["access_token"].(string)
	return tok
}

// idTokens are the ID tokens the token endpoint issued, oldest first.
func (m *module) idTokens() []string {
	var out []string
	for _, r := range m.op.TokenResponses() {
		if idt, ok := r["id_token"].(string); ok {
			out = append(out, idt)
		}
	}
	return out
}

// assertNoSecrets fails if any of secrets appears in text.
func assertNoSecrets(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, sec := range secrets {
		if sec != "" && strings.Contains(text, sec) {
			t.Errorf("%s contains a token value (%.12s...)", where, sec)
		}
	}
}

// jwtPart decodes a JWT's header (0) or claims (1) without verifying it.
func jwtPart(t *testing.T, jwt string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.30q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}
