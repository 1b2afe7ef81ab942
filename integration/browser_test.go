package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

// TestBrowserSignInAndSignOut walks sign-in and sign-out in a real headless
// Chromium against the zitadel provider. The other tests drive Go's HTTP
// client, which follows redirects and posts forms the way the test tells it
// to; only a real browser shows that what oidc_auth sends works in one: that
// the cookie attributes hold (HttpOnly, SameSite=Lax), that page JavaScript can
// read the user's identity but not the session, and that the logout page's
// inline auto-post script runs under its own Content-Security-Policy and the
// provider's redirect back is not blocked.
func TestBrowserSignInAndSignOut(t *testing.T) {
	chromium := chromiumPath(t)
	op := newZitadelProvider(t)
	endSession := endSessionEndpoint(t, op.Issuer())

	// The app is a page that prints who Caddy says is signed in and links to
	// logout. `route` keeps the Content-Type header to this page: a bare
	// `header` would run before oidc_auth and touch its responses too.
	s := startSite(t, nil, siteOptions{
		issuer:   op.Issuer(),
		clientID: "caddy-test",
		secret:   "test-secret",
		routes: `route {
		header Content-Type "text/html; charset=utf-8"
		respond "<!doctype html><html><body><p id='who'>{http.auth.user.email}</p><form method='post' action='/oauth2/logout?rd=/bye'><button id='out'>Sign out</button></form></body></html>" 200
	}`,
	})
	ctx := newChromium(t, chromium)
	rec := recordBrowser(t, ctx)

	// An unauthenticated navigation ends at the provider's login form.
	do(t, ctx, rec, "opening the app", chromedp.Navigate(s.url+"/app"), chromedp.WaitVisible(chromedp.ID("username")))
	if loc := run(t, ctx, rec, "reading the location", chromedp.Location()); !strings.HasPrefix(loc, op.Issuer()+"/") {
		t.Fatalf("unauthenticated navigation ended at %s, want the provider's login page", loc)
	}

	// Typing into the real form and submitting it brings the browser back to
	// the page it asked for, which now knows the user.
	do(t, ctx, rec, "signing in",
		chromedp.SendKeys(chromedp.ID("username"), devop.DemoUsername),
		chromedp.SendKeys(chromedp.ID("password"), devop.DemoPassword),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("who")),
	)
	if loc := run(t, ctx, rec, "reading the location", chromedp.Location()); loc != s.url+"/app" {
		t.Fatalf("after the login form the browser is at %s, want %s/app", loc, s.url)
	}
	if who := run(t, ctx, rec, "reading the page", chromedp.Text(chromedp.ID("who"))); who != devop.DemoEmail {
		t.Fatalf("the app shows user %q, want %q", who, devop.DemoEmail)
	}

	// The session cookie is as the browser stored it: out of reach of
	// scripts, and not sent on cross-site subrequests.
	session := sessionCookies(t, ctx, s)
	if len(session) == 0 {
		t.Fatal("no session cookie after sign-in")
	}
	for _, c := range session {
		if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax {
			t.Errorf("cookie %s: HttpOnly %v, SameSite %q; want HttpOnly, Lax", c.Name, c.HTTPOnly, c.SameSite)
		}
	}
	if jar := run(t, ctx, rec, "reading document.cookie", chromedp.Evaluate[string]("document.cookie")); strings.Contains(jar, "oidc_session") {
		t.Errorf("page JavaScript can read the session cookie: document.cookie = %q", jar)
	}

	// The app's own JavaScript learns who is signed in from /oauth2/userinfo,
	// with the browser's cookies, and never sees an access or refresh token.
	type fetched struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	res := run(t, ctx, rec, "fetching /oauth2/userinfo", chromedp.Evaluate[fetched](
		`fetch('/oauth2/userinfo', {headers: {Accept: 'application/json'}})
			.then(async r => ({status: r.status, body: await r.text()}))`,
		chromedp.EvalAwaitPromise))
	if res.Status != http.StatusOK {
		t.Fatalf("fetch('/oauth2/userinfo') from the page: %d %s", res.Status, res.Body)
	}
	info := jsonBody(t, res.Body)
	claims, _ := info["idToken"].(map[string]any)
	rawIDToken, _ := info["rawIdToken"].(string)
	if claims["email"] != devop.DemoEmail || info["sub"] != devop.DemoSubject || rawIDToken == "" {
		t.Fatalf("userinfo seen by the page = %s", res.Body)
	}
	for _, k := range []string{"accessToken", "access_token", "refreshToken", "refresh_token"} {
		if _, ok := info[k]; ok {
			t.Errorf("userinfo seen by the page exposes %s", k)
		}
	}

	// Opening the logout address directly (as a link from another site
	// would) ends nothing: the browser shows a page asking to confirm, and
	// the app still knows the user afterwards.
	do(t, ctx, rec, "opening the logout address", chromedp.Navigate(s.url+"/oauth2/logout?rd=/bye"),
		chromedp.WaitVisible(chromedp.CSS(`form[method=post] button`)))
	do(t, ctx, rec, "returning to the app", chromedp.Navigate(s.url+"/app"), chromedp.WaitVisible(chromedp.ID("who")))
	if who := run(t, ctx, rec, "reading the page", chromedp.Text(chromedp.ID("who"))); who != devop.DemoEmail {
		t.Fatalf("after opening the logout address the app shows %q, want the signed-in %q", who, devop.DemoEmail)
	}

	// Signing out with the app's button, a POST from the site: the logout
	// page's inline script must post the form to the
	// provider's end_session endpoint by itself (nobody clicks its button),
	// which is only possible if the page's CSP hash allows the script and its
	// form-action allows the provider. The provider then redirects to the
	// post-logout URI, /bye; that page is protected too, so a working logout
	// ends at the provider's login form once more.
	rec.reset()
	do(t, ctx, rec, "clicking sign out", chromedp.Click(chromedp.ID("out")))
	// A blocked navigation leaves the tab on an error page, so wait less
	// than the whole test's budget and then say what happened.
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := chromedp.Do(waitCtx, chromedp.WaitVisible(chromedp.ID("username")))
	cancel()
	if loc := run(t, ctx, rec, "reading the location", chromedp.Location()); err != nil || !strings.HasPrefix(loc, op.Issuer()+"/") {
		t.Errorf("after logout the browser is at %s (waiting for the login form: %v), want the provider's login page", loc, err)
	}
	steps := []struct{ method, url string }{
		{http.MethodPost, s.url + "/oauth2/logout?rd=/bye"},
		{http.MethodPost, endSession},
		{http.MethodGet, s.url + "/oauth2/logout?state="},
		{http.MethodGet, s.url + "/bye"},
	}
	docs := rec.documents()
	i := 0
	for _, d := range docs {
		if i < len(steps) && d.method == steps[i].method && (d.url == steps[i].url || strings.HasSuffix(steps[i].url, "=") && strings.HasPrefix(d.url, steps[i].url)) {
			i++
		}
	}
	if i < len(steps) {
		t.Errorf("logout navigations did not include %s %s (in order); the browser loaded:\n%s\nbrowser log:\n%s",
			steps[i].method, steps[i].url, formatRequests(docs), rec.logText())
	}
	for _, d := range docs {
		if strings.Contains(d.url, rawIDToken) || strings.Contains(d.url, "id_token_hint") {
			t.Errorf("the ID token went into a URL: %s %.80s...", d.method, d.url)
		}
	}
	if msgs := rec.cspViolations(); msgs != "" {
		t.Errorf("Content-Security-Policy violations during logout:\n%s", msgs)
	}
	if left := sessionCookies(t, ctx, s); len(left) != 0 {
		t.Errorf("session cookie still in the browser after logout: %s", left[0].Name)
	}
}

// chromiumPath returns the Chromium to run: $CHROMIUM_BIN or Debian's
// /usr/bin/chromium. Without one the test is skipped, except in CI, which
// installs it, so a broken CI image cannot silently skip the test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("CHROMIUM_BIN")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no Chromium at %s (CI installs the chromium package): %v", path, err)
		}
		t.Skipf("no Chromium at %s (set CHROMIUM_BIN or install chromium): %v", path, err)
	}
	return path
}

// newChromium starts a headless Chromium with a fresh profile and returns a
// context for one tab. Everything, the browser's start included, must finish
// within a minute, so a hang fails the test rather than blocking CI.
func newChromium(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	ctx, cancelTimeout := context.WithTimeout(t.Context(), 60*time.Second)
	ctx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	ctx, cancelTab := chromedp.NewContext(ctx)
	// Cleanups run last-in first-out: the browser exits (the allocator's
	// cancel waits for it) before t.TempDir removes the profile.
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelTimeout()
	})
	return ctx
}

// endSessionEndpoint reads the provider's end_session_endpoint from discovery.
func endSessionEndpoint(t *testing.T, issuer string) string {
	t.Helper()
	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || d.EndSession == "" {
		t.Fatalf("discovery: end_session_endpoint %q, %v", d.EndSession, err)
	}
	return d.EndSession
}

// sessionCookies returns the browser's oidc_auth session cookies for the
// site (the cookie and its chunks, not the login-state cookies).
func sessionCookies(t *testing.T, ctx context.Context, s *site) []*network.Cookie {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{s.url + "/"}})
	if err != nil {
		t.Fatalf("reading the browser's cookies: %v", err)
	}
	var out []*network.Cookie
	for _, c := range res.Cookies {
		if c.Name == "oidc_session" || (strings.HasPrefix(c.Name, "oidc_session_") && !strings.Contains(c.Name, "_login_") && !strings.HasSuffix(c.Name, "_logout")) {
			out = append(out, c)
		}
	}
	return out
}

// browserRecorder keeps the tab's top-level navigations (redirects
// included) and its log entries, such as CSP violation reports, so that a
// failure can say where the browser went and what it complained about.
type browserRecorder struct {
	mu   sync.Mutex
	reqs []request
	logs []string
}

type request struct{ method, url string }

func recordBrowser(t *testing.T, ctx context.Context) *browserRecorder {
	t.Helper()
	r := &browserRecorder{}
	err := chromedp.Listen(ctx, func(ev any) {
		// Runs on chromedp's read loop: only record, never block.
		r.mu.Lock()
		defer r.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			if ev.Type == network.ResourceTypeDocument {
				r.reqs = append(r.reqs, request{ev.Request.Method, ev.Request.URL})
			}
		case *log.EventEntryAdded:
			r.logs = append(r.logs, string(ev.Entry.Level)+" "+string(ev.Entry.Source)+": "+ev.Entry.Text+" ("+ev.Entry.URL+")")
		}
	})
	if err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return r
}

func (r *browserRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs, r.logs = nil, nil
}

func (r *browserRecorder) documents() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.reqs...)
}

func (r *browserRecorder) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.logs, "\n")
}

func (r *browserRecorder) cspViolations() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var v []string
	for _, l := range r.logs {
		if strings.Contains(l, "Content Security Policy") {
			v = append(v, l)
		}
	}
	return strings.Join(v, "\n")
}

func formatRequests(reqs []request) string {
	var b strings.Builder
	for _, r := range reqs {
		u := r.url
		if p, err := url.Parse(u); err == nil && len(p.RawQuery) > 120 {
			p.RawQuery = p.RawQuery[:120] + "..."
			u = p.String()
		}
		b.WriteString("  " + r.method + " " + u + "\n")
	}
	return b.String()
}

// do runs browser actions and fails the test, with the browser's log, when
// one fails.
func do(t *testing.T, ctx context.Context, rec *browserRecorder, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v\nnavigations:\n%sbrowser log:\n%s", what, err, formatRequests(rec.documents()), rec.logText())
	}
}

// run runs one browser action that returns a value.
func run[T any](t *testing.T, ctx context.Context, rec *browserRecorder, what string, action chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("%s: %v\nnavigations:\n%sbrowser log:\n%s", what, err, formatRequests(rec.documents()), rec.logText())
	}
	return v
}

// TestBrowserDemoPage runs examples/Caddyfile, the site `make demo` serves,
// with the development provider and cmd/demo-api, and walks it in headless
// Chromium as a first-time visitor would: read the demo account off the
// provider's login page and type it in, look at the ID token, call the API
// with the access token, sign out. On the way it takes the screenshots in
// docs/; with UPDATE_SCREENSHOTS=1 it writes them there, so they show the
// demo as it is.
//
// The page must decode the raw ID token (a header with alg, a payload whose
// sub is the verified claims'), show that Caddy substituted a token of the
// right length for the placeholder, and never hold the access token itself:
// a tap between Caddy and the API learns the token, and the test looks for
// it in the page.
func TestBrowserDemoPage(t *testing.T) {
	chromium := chromiumPath(t)
	demo := startDemo(t)
	ctx := newChromium(t, chromium)
	rec := recordBrowser(t, ctx)
	shots := newScreenshots(t)

	// The provider's login page names the demo account; typing what it
	// shows signs in and lands on the demo page.
	do(t, ctx, rec, "opening the demo", chromedp.EmulateViewport(900, 560),
		chromedp.Navigate(demo.url+"/"), chromedp.WaitVisible(chromedp.ID("demo-account")))
	account := run(t, ctx, rec, "reading the demo account", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#demo-account code')].map(c => c.textContent)`))
	if len(account) != 2 || account[0] != devop.DemoUsername || account[1] != devop.DemoPassword {
		t.Fatalf("login page shows the demo account as %q, want %q and %q", account, devop.DemoUsername, devop.DemoPassword)
	}
	shots.take(ctx, rec, "demo-sign-in.png", chromedp.CaptureScreenshot())
	do(t, ctx, rec, "signing in with the account shown", chromedp.EmulateViewport(1100, 900),
		chromedp.SendKeys(chromedp.ID("username"), account[0]),
		chromedp.SendKeys(chromedp.ID("password"), account[1]),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("claims")),
	)
	waitUntil(t, ctx, rec, "the decoded ID token", `document.getElementById('id-token-check').textContent !== ''`)
	if loc := run(t, ctx, rec, "reading the location", chromedp.Location()); loc != demo.url+"/" {
		t.Fatalf("after signing in the browser is at %s, want %s/", loc, demo.url)
	}

	// The ID token: verified claims next to the raw JWT decoded in the page.
	claims := pageJSON(t, ctx, rec, "claims")
	header := pageJSON(t, ctx, rec, "id-token-header")
	payload := pageJSON(t, ctx, rec, "id-token-payload")
	if claims["sub"] != devop.DemoSubject || claims["email"] != devop.DemoEmail {
		t.Errorf("the page shows claims %v, want sub %q and email %q", claims, devop.DemoSubject, devop.DemoEmail)
	}
	if header["alg"] != "RS256" {
		t.Errorf("the decoded ID token header is %v, want alg RS256", header)
	}
	for _, c := range []string{"sub", "email", "iss", "nonce"} {
		if payload[c] == nil || fmt.Sprint(payload[c]) != fmt.Sprint(claims[c]) {
			t.Errorf("decoded payload %s = %v, claims %s = %v", c, payload[c], c, claims[c])
		}
	}
	if check := pageText(t, ctx, rec, "id-token-check"); !strings.Contains(check, "RS256") || !strings.Contains(check, "matches the claims") {
		t.Errorf("the page's ID token check says %q", check)
	}
	shots.take(ctx, rec, "demo-signed-in.png", chromedp.Screenshot(chromedp.CSS("main")))

	// Way 1: the page sends the placeholder; the API receives a real token,
	// valid at the provider, and the page says so with the token's length.
	do(t, ctx, rec, "calling the API as the app", chromedp.Click(chromedp.ID("call-app")))
	waitUntil(t, ctx, rec, "the API's answer", `document.getElementById('api-verdict').textContent !== ''`)
	token := demo.tap.lastToken(t)
	if token == "" || token == "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>" {
		t.Fatalf("the API received bearer token %q, want the user's access token", token)
	}
	wantAPIResult(t, ctx, rec, "/api/whoami", len(token))
	shots.take(ctx, rec, "demo-api-call.png", chromedp.Screenshot(chromedp.ID("api")))

	// Way 2: the Caddyfile adds the header for /admin-api/*.
	do(t, ctx, rec, "calling the admin-configured API", chromedp.Click(chromedp.ID("call-admin")))
	waitUntil(t, ctx, rec, "the admin-configured API's answer", `document.getElementById('api-request').textContent.includes('path /whoami')`)
	wantAPIResult(t, ctx, rec, "/whoami", len(demo.tap.lastToken(t)))

	// The access token is nowhere the page can reach: not in the DOM, not in
	// storage or readable cookies, not in /oauth2/userinfo.
	exposed := run(t, ctx, rec, "collecting what the page holds", chromedp.Evaluate[string](
		`fetch('/oauth2/userinfo', {headers: {Accept: 'application/json'}}).then(r => r.text()).then(userinfo =>
			[document.documentElement.outerHTML, document.cookie, JSON.stringify({...localStorage}), JSON.stringify({...sessionStorage}), userinfo].join('\n'))`,
		chromedp.EvalAwaitPromise))
	for _, tok := range demo.tap.tokens() {
		if strings.Contains(exposed, tok) {
			t.Errorf("the access token the API received is in the page (DOM, storage, cookies or userinfo)")
		}
	}
	if !strings.Contains(exposed, "&lt;&lt;APPSMITH_USER_OAUTH2_ACCESS_TOKEN&gt;&gt;") {
		t.Errorf("the page does not show the placeholder it sends; is this the demo page?")
	}
	if msgs := rec.cspViolations(); msgs != "" {
		t.Errorf("Content-Security-Policy violations on the demo page:\n%s", msgs)
	}

	// Signing out passes through the provider's end-session endpoint and
	// ends on the public signed-out page.
	endSession := endSessionEndpoint(t, demo.issuer)
	rec.reset()
	do(t, ctx, rec, "signing out", chromedp.Click(chromedp.ID("sign-out")))
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := chromedp.Do(waitCtx, chromedp.WaitVisible(chromedp.ID("signed-out")))
	cancel()
	if loc := run(t, ctx, rec, "reading the location", chromedp.Location()); err != nil || loc != demo.url+"/signed-out.html" {
		t.Fatalf("after signing out the browser is at %s (%v), want %s/signed-out.html\nnavigations:\n%s", loc, err, demo.url, formatRequests(rec.documents()))
	}
	viaProvider := false
	for _, d := range rec.documents() {
		viaProvider = viaProvider || d.url == endSession || strings.HasPrefix(d.url, endSession+"?")
	}
	if !viaProvider {
		t.Errorf("sign-out did not pass through the provider's end-session endpoint %s; the browser loaded:\n%s", endSession, formatRequests(rec.documents()))
	}
	if left := sessionCookies(t, ctx, &site{url: demo.url}); len(left) != 0 {
		t.Errorf("session cookie still in the browser after signing out: %s", left[0].Name)
	}
	shots.save()
}

// wantAPIResult checks the page's account of the API's last answer: a
// substituted token of tokenLength characters, valid for the demo user,
// and the identity headers the Caddyfile forwards.
func wantAPIResult(t *testing.T, ctx context.Context, rec *browserRecorder, apiPath string, tokenLength int) {
	t.Helper()
	if req := pageText(t, ctx, rec, "api-request"); !strings.Contains(req, "-> 200") || !strings.HasSuffix(req, "path "+apiPath) {
		t.Errorf("request row: %q, want a 200 at API path %s", req, apiPath)
	}
	auth := pageText(t, ctx, rec, "api-authorization")
	if !strings.Contains(auth, "substituted") || !strings.Contains(auth, fmt.Sprintf("a %d-character", tokenLength)) {
		t.Errorf("Authorization row: %q, want a substituted %d-character token", auth, tokenLength)
	}
	if v := pageText(t, ctx, rec, "api-verdict"); !strings.HasPrefix(v, "valid") || !strings.Contains(v, devop.DemoSubject) {
		t.Errorf("token check row: %q, want valid for %s", v, devop.DemoSubject)
	}
	if e := pageText(t, ctx, rec, "api-email"); e != devop.DemoEmail {
		t.Errorf("X-User-Email row: %q, want %q", e, devop.DemoEmail)
	}
	if id := pageText(t, ctx, rec, "api-id-token"); !strings.Contains(id, devop.DemoSubject) {
		t.Errorf("X-ID-Token row: %q, want a JWT for %s", id, devop.DemoSubject)
	}
}

// waitUntil waits until the JavaScript expression cond holds in the page.
func waitUntil(t *testing.T, ctx context.Context, rec *browserRecorder, what, cond string) {
	t.Helper()
	run(t, ctx, rec, "waiting for "+what, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(10*time.Second)))
}

func pageText(t *testing.T, ctx context.Context, rec *browserRecorder, id string) string {
	t.Helper()
	return run(t, ctx, rec, "reading #"+id, chromedp.Evaluate[string](fmt.Sprintf(`document.getElementById(%q).textContent`, id)))
}

func pageJSON(t *testing.T, ctx context.Context, rec *browserRecorder, id string) map[string]any {
	t.Helper()
	text := pageText(t, ctx, rec, id)
	var v map[string]any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		t.Fatalf("#%s does not hold a JSON object: %v\n%s", id, err, text)
	}
	return v
}

// screenshots collects PNGs for docs/ and writes them there, at the end of a
// passing test, when UPDATE_SCREENSHOTS is set. Without it they are still
// taken and checked, so the test fails where they could not be refreshed.
type screenshots struct {
	t     *testing.T
	taken map[string][]byte
}

func newScreenshots(t *testing.T) *screenshots {
	return &screenshots{t: t, taken: map[string][]byte{}}
}

func (s *screenshots) take(ctx context.Context, rec *browserRecorder, name string, shot chromedp.Action[[]byte]) {
	s.t.Helper()
	data := run(s.t, ctx, rec, "taking "+name, shot)
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		s.t.Fatalf("%s is not a PNG: %v", name, err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
		s.t.Fatalf("%s is %dx%d, too small to show anything", name, b.Dx(), b.Dy())
	}
	s.taken[name] = data
}

func (s *screenshots) save() {
	s.t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") == "" || s.t.Failed() {
		return
	}
	for name, data := range s.taken {
		path := filepath.Join("..", "docs", name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			s.t.Fatal(err)
		}
		s.t.Logf("wrote %s", path)
	}
}

// demoSite is examples/Caddyfile running in this process's Caddy.
type demoSite struct {
	url    string // the site, http://127.0.0.1:port
	issuer string
	tap    *tokenTap
}

// startDemo runs examples/Caddyfile as `make demo` does, on free ports: the
// development provider, cmd/demo-api built from source, and the Caddyfile
// with its addresses replaced, plus a tap in front of the API. Each
// replaced address must occur in the Caddyfile, so that a changed
// Caddyfile fails here rather than running against something else.
func startDemo(t *testing.T) *demoSite {
	t.Helper()
	op, err := devop.New(devop.Config{
		RedirectURIs:           []string{"http://127.0.0.1:*/oauth2/callback"},
		PostLogoutRedirectURIs: []string{"http://127.0.0.1:*/oauth2/logout"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)

	apiURL := startDemoAPI(t, op.Issuer())
	tap := newTokenTap(t, apiURL)

	caddyfile, err := os.ReadFile(filepath.Join("..", "examples", "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	site, err := filepath.Abs(filepath.Join("..", "examples", "site"))
	if err != nil {
		t.Fatal(err)
	}
	demo := &demoSite{url: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), issuer: op.Issuer(), tap: tap}
	config := string(caddyfile)
	for _, r := range []struct{ old, new string }{
		{"http://localhost:8080", demo.url},
		{"http://localhost:9998", op.Issuer()},
		{"localhost:9999", strings.TrimPrefix(tap.URL, "http://")},
		{"root * examples/site", "root * " + site},
	} {
		if !strings.Contains(config, r.old) {
			t.Fatalf("examples/Caddyfile no longer contains %q", r.old)
		}
		config = strings.ReplaceAll(config, r.old, r.new)
	}
	config = fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tstorage file_system %s\n}\n\n%s", filepath.Join(t.TempDir(), "storage"), config)
	t.Setenv("OIDC_CLIENT_SECRET", devop.DefaultClientSecret)

	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config), nil)
	if err != nil {
		t.Fatalf("adapting examples/Caddyfile: %v\n%s", err, config)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading examples/Caddyfile: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return demo
}

// startDemoAPI builds and runs cmd/demo-api against the provider at issuer
// and returns its URL once it answers.
func startDemoAPI(t *testing.T, issuer string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "demo-api")
	build := exec.Command("go", "build", "-o", bin, "./cmd/demo-api")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/demo-api: %v\n%s", err, out)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var logs bytes.Buffer
	cmd := exec.Command(bin, "-addr", addr, "-issuer", issuer)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("demo-api output:\n%s", logs.String())
		}
	})
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			return "http://" + addr
		}
		select {
		case <-exited:
			t.Fatalf("demo-api exited: %s", logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if i == 100 {
			t.Fatalf("demo-api does not answer on %s: %v", addr, err)
		}
	}
}

// tokenTap forwards to the demo API and keeps the bearer tokens it passes
// on, so the test knows the access token that the page must not.
type tokenTap struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newTokenTap(t *testing.T, target string) *tokenTap {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	tap := &tokenTap{}
	tap.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tap.mu.Lock()
			tap.seen = append(tap.seen, tok)
			tap.mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(tap.Close)
	return tap
}

func (tap *tokenTap) tokens() []string {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	return append([]string(nil), tap.seen...)
}

func (tap *tokenTap) lastToken(t *testing.T) string {
	t.Helper()
	seen := tap.tokens()
	if len(seen) == 0 {
		t.Fatal("no bearer token reached the demo API")
	}
	return seen[len(seen)-1]
}
