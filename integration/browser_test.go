package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

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
