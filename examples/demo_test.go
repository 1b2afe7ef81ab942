package examples_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

// The addresses examples/Caddyfile names.
const (
	siteURL      = "http://localhost:8080"
	providerAddr = "localhost:9998"
	apiAddr      = "localhost:9999"
	adminAddr    = "localhost:2019"
)

// The access-token placeholder the demo page and the Caddyfile use.
const tokenPlaceholder = "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"

// TestDemo runs examples/Caddyfile in a real Caddy against the development
// provider and the demo API (cmd/demo-api) and walks a browser through
// sign-in, the greeting page, the userinfo endpoint, both ways of calling the
// API with the user's access token, and sign-out.
//
// DEMO_CADDY_BIN names a Caddy binary built with this plugin (make test
// builds bin/caddy and sets it).
func TestDemo(t *testing.T) {
	caddyBin := os.Getenv("DEMO_CADDY_BIN")
	if caddyBin == "" {
		t.Skip("DEMO_CADDY_BIN is not set; run `make test` or set it to a Caddy binary built with this plugin")
	}
	for _, addr := range []string{"localhost:8080", apiAddr, adminAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("examples/Caddyfile needs %s, which is busy: %v", addr, err)
		}
		ln.Close()
	}
	provider, err := devop.New(devop.Config{
		Addr:                   providerAddr,
		RedirectURIs:           []string{siteURL + "/oauth2/callback"},
		PostLogoutRedirectURIs: []string{siteURL + "/oauth2/logout"},
	})
	if err != nil {
		t.Fatalf("examples/Caddyfile needs the provider on %s: %v", providerAddr, err)
	}
	t.Cleanup(provider.Close)

	api := startDemoAPI(t, provider.Issuer())
	startCaddy(t, caddyBin)
	browser := newBrowser(t)

	// An anonymous visit ends at the provider's login form.
	resp := browser.get(t, siteURL+"/", "text/html")
	if resp.Request.URL.Host != providerAddr {
		t.Fatalf("anonymous visit to / ended at %s (%s), want the provider's login page", resp.Request.URL.Redacted(), resp.Status)
	}

	// Signing in leads back to the page, which greets the demo user.
	landed, err := devop.SignIn(browser.Client, resp.Request.URL.String(), devop.DemoUsername, devop.DemoPassword)
	if err != nil {
		t.Fatalf("signing in: %v", err)
	}
	page := readBody(t, landed)
	if got := landed.Request.URL.String(); got != siteURL+"/" || landed.StatusCode != http.StatusOK {
		t.Fatalf("after sign-in: %s at %s, want 200 at %s/\n%s", landed.Status, got, siteURL, page)
	}
	for _, want := range []string{"Hello, " + devop.DemoName + "!", devop.DemoEmail, devop.DemoSubject, `<form method="post" action="/oauth2/logout?rd=/signed-out.html">`,
		`id="call-app"`, `id="call-admin"`} {
		if !strings.Contains(page, want) {
			t.Errorf("demo page lacks %q:\n%s", want, page)
		}
	}

	// The browser app's view of the session: claims, never tokens.
	resp = browser.get(t, siteURL+"/oauth2/userinfo", "application/json")
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: %s\n%s", resp.Status, body)
	}
	var info map[string]any
	if err := json.Unmarshal([]byte(body), &info); err != nil {
		t.Fatalf("userinfo is not JSON: %v\n%s", err, body)
	}
	if info["sub"] != devop.DemoSubject {
		t.Errorf("userinfo sub = %v, want %q", info["sub"], devop.DemoSubject)
	}
	if claims, _ := info["idToken"].(map[string]any); claims["email"] != devop.DemoEmail {
		t.Errorf("userinfo idToken = %v, want email %q", info["idToken"], devop.DemoEmail)
	}
	for _, secret := range []string{"access_token", "accessToken", "refresh_token", "refreshToken"} {
		if _, ok := info[secret]; ok {
			t.Errorf("userinfo exposes %s", secret)
		}
	}

	// Way 1: the app sends the placeholder itself; token_inject swaps in the
	// access token, which the API finds valid at the provider's userinfo.
	got := callAPI(t, browser, "/api/whoami", "Bearer "+tokenPlaceholder)
	wantAnswer(t, "/api/whoami with the placeholder", got, map[string]any{
		"valid": true, "sub": devop.DemoSubject, "email": devop.DemoEmail, "path": "/api/whoami",
		"bearer":          map[string]any{"placeholder": false, "format": "opaque"},
		"forwarded_email": devop.DemoEmail, "id_token_forwarded": true, "id_token_sub": devop.DemoSubject,
	})

	// Way 2: no header from the app; the Caddyfile's request_header adds
	// the placeholder for /admin-api/*, and handle_path strips the prefix.
	got = callAPI(t, browser, "/admin-api/whoami", "")
	wantAnswer(t, "/admin-api/whoami without a header", got, map[string]any{
		"valid": true, "sub": devop.DemoSubject, "email": devop.DemoEmail, "path": "/whoami",
		"bearer":          map[string]any{"placeholder": false, "format": "opaque"},
		"forwarded_email": devop.DemoEmail, "id_token_forwarded": true, "id_token_sub": devop.DemoSubject,
	})

	// Without the placeholder nothing is injected, and the API says so.
	got = callAPI(t, browser, "/api/whoami", "")
	wantAnswer(t, "/api/whoami without a header", got, map[string]any{
		"valid": false, "error": "no bearer token", "path": "/api/whoami",
		"forwarded_email": devop.DemoEmail, "id_token_forwarded": true, "id_token_sub": devop.DemoSubject,
	})

	// Areas gated on the groups claim: the demo user is in reporting, not
	// in admins.
	resp = browser.get(t, siteURL+"/admin/", "text/html")
	if body := readBody(t, resp); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Admins only") {
		t.Errorf("/admin/ as a user outside admins: %s %q, want 403 Admins only", resp.Status, body)
	}
	got = callAPI(t, browser, "/reports-api/whoami", "")
	wantAnswer(t, "/reports-api/whoami as a member of reporting", got, map[string]any{
		"valid": true, "sub": devop.DemoSubject, "email": devop.DemoEmail, "path": "/whoami",
		"bearer":          map[string]any{"placeholder": false, "format": "opaque"},
		"forwarded_email": devop.DemoEmail, "id_token_forwarded": false,
	})

	// An API client with its own access token from the provider, and no
	// session, calls the same APIs; without a token it is told where to
	// get one.
	apiClient := newBrowser(t)
	token := providerAccessToken(t)
	got = callAPI(t, apiClient, "/api/whoami", "Bearer "+token)
	wantAnswer(t, "/api/whoami with the client's own token", got, map[string]any{
		"valid": true, "sub": devop.DemoSubject, "email": devop.DemoEmail, "path": "/api/whoami",
		"bearer":             map[string]any{"placeholder": false, "format": "opaque"},
		"id_token_forwarded": false,
	})
	got = callAPI(t, apiClient, "/reports-api/whoami", "Bearer "+token)
	wantAnswer(t, "/reports-api/whoami with the client's own token", got, map[string]any{
		"valid": true, "sub": devop.DemoSubject, "email": devop.DemoEmail, "path": "/whoami",
		"bearer":             map[string]any{"placeholder": false, "format": "opaque"},
		"id_token_forwarded": false,
	})
	req, _ := http.NewRequest(http.MethodGet, siteURL+"/api/whoami", nil)
	req.Header.Set("Accept", "application/json")
	resp, err = apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := `resource_metadata="` + siteURL + `/.well-known/oauth-protected-resource"`; resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), want) {
		t.Errorf("API call without a token: %s, WWW-Authenticate %q, want 401 with %s", resp.Status, resp.Header.Get("WWW-Authenticate"), want)
	}
	resp = apiClient.get(t, siteURL+"/.well-known/oauth-protected-resource", "application/json")
	if body := readBody(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"authorization_servers":["http://`+providerAddr+`"]`) {
		t.Errorf("protected resource metadata: %s %s", resp.Status, body)
	}

	// Signing out with the page's button (a form that POSTs from the site)
	// ends on the public signed-out page, possibly by way of a
	// self-submitting form that posts to the provider's end-session endpoint.
	home := browser.get(t, siteURL+"/", "text/html")
	resp, err = devop.SubmitForm(browser.Client, siteURL+"/", readBody(t, home))
	if err != nil {
		t.Fatalf("pressing the sign-out button: %v", err)
	}
	body = readBody(t, resp)
	if strings.HasPrefix(resp.Request.URL.String(), siteURL+"/oauth2/logout") && strings.Contains(body, "<form") {
		resp, err = devop.SubmitForm(browser.Client, resp.Request.URL.String(), body)
		if err != nil {
			t.Fatalf("submitting the logout page's form: %v", err)
		}
		body = readBody(t, resp)
	}
	if got := resp.Request.URL.String(); got != siteURL+"/signed-out.html" || resp.StatusCode != http.StatusOK {
		t.Errorf("logout ended with %s at %s, want 200 at %s/signed-out.html\n%s", resp.Status, got, siteURL, body)
	}

	// ...and the session is gone.
	resp = browser.get(t, siteURL+"/", "text/html")
	if resp.Request.URL.Host != providerAddr {
		t.Errorf("visit to / after logout ended at %s (%s), want the provider's login page", resp.Request.URL.Redacted(), resp.Status)
	}
	resp = browser.get(t, siteURL+"/oauth2/userinfo", "application/json")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("userinfo after logout: %s, want 401", resp.Status)
	}
	for _, path := range []string{"/api/whoami", "/admin-api/whoami"} {
		req, _ := http.NewRequest(http.MethodGet, siteURL+path, nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+tokenPlaceholder)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s after logout: %s, want 401", path, resp.Status)
		}
	}

	// The API logged its verdicts, never a token.
	if logs := api.String(); !strings.Contains(logs, "valid=true") || strings.Contains(logs, "Bearer") {
		t.Errorf("demo API log lacks verdicts or shows an Authorization header:\n%s", logs)
	}
}

// apiAnswer is a demo API response as the browser got it.
type apiAnswer struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

// callAPI GETs path on the site as the signed-in browser, with the given
// Authorization header unless it is empty.
func callAPI(t *testing.T, b browser, path, authorization string) apiAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, siteURL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin") // as the page's fetch() sends it
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	ans := apiAnswer{status: resp.StatusCode, header: resp.Header, body: readBody(t, resp)}
	if ans.status != http.StatusOK {
		t.Fatalf("GET %s: %s, want 200 from the demo API\n%s", path, resp.Status, ans.body)
	}
	if err := json.Unmarshal([]byte(ans.body), &ans.json); err != nil {
		t.Fatalf("GET %s: not JSON: %v\n%s", path, err, ans.body)
	}
	return ans
}

// wantAnswer checks that the API's answer is exactly want: the verdict, the
// user's identity and the shape of the token, nothing else, plus the names
// of the headers it received. Since every field is accounted for, the
// access token (which the test never learns) cannot be in it; the checks
// for token-like text below make the intent explicit. In want, a nested
// object lists the fields to compare; "bearer" also needs a length.
func wantAnswer(t *testing.T, what string, got apiAnswer, want map[string]any) {
	t.Helper()
	if len(got.body) > 1024 {
		t.Errorf("%s: answer is %d bytes, want a small JSON object:\n%s", what, len(got.body), got.body)
	}
	for k, v := range want {
		wantFields, nested := v.(map[string]any)
		if !nested {
			if got.json[k] != v {
				t.Errorf("%s: %s = %v, want %v\n%s", what, k, got.json[k], v, got.body)
			}
			continue
		}
		gotFields, _ := got.json[k].(map[string]any)
		for f, fv := range wantFields {
			if gotFields[f] != fv {
				t.Errorf("%s: %s.%s = %v, want %v\n%s", what, k, f, gotFields[f], fv, got.body)
			}
		}
	}
	if _, ok := want["bearer"]; ok {
		if n, _ := got.json["bearer"].(map[string]any)["length"].(float64); n < 16 {
			t.Errorf("%s: bearer.length = %v, want a token's\n%s", what, n, got.body)
		}
	}
	headers := map[string]bool{}
	list, _ := got.json["headers"].([]any)
	for _, h := range list {
		name, _ := h.(string)
		headers[name] = true
	}
	var wantHeaders []string
	if _, ok := want["forwarded_email"]; ok {
		wantHeaders = append(wantHeaders, "X-User-Email")
	}
	if want["id_token_forwarded"] == true {
		wantHeaders = append(wantHeaders, "X-Id-Token")
	}
	if _, ok := want["bearer"]; ok {
		wantHeaders = append(wantHeaders, "Authorization")
	}
	for _, h := range wantHeaders {
		if !headers[h] {
			t.Errorf("%s: headers lacks %s\n%s", what, h, got.body)
		}
	}
	for k := range got.json {
		if _, ok := want[k]; !ok && k != "headers" {
			t.Errorf("%s: unexpected field %q in the answer:\n%s", what, k, got.body)
		}
	}
	for _, leak := range []string{"access_token", "accessToken", "refresh_token", "Bearer "} {
		if strings.Contains(got.body, leak) {
			t.Errorf("%s: answer contains %q:\n%s", what, leak, got.body)
		}
	}
	for name, values := range got.header {
		for _, v := range values {
			if strings.Contains(v, "Bearer") {
				t.Errorf("%s: response header %s contains a bearer token", what, name)
			}
		}
	}
}

// startDemoAPI builds cmd/demo-api, runs it on apiAddr against the provider
// at issuer, and stops it when the test ends. It returns the API's output.
func startDemoAPI(t *testing.T, issuer string) *lockedBuffer {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "demo-api")
	build := exec.Command("go", "build", "-o", bin, "./cmd/demo-api")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/demo-api: %v\n%s", err, out)
	}

	logs, exited := runProcess(t, "demo-api", exec.Command(bin, "-addr", apiAddr, "-issuer", issuer), 5*time.Second)

	// Without a token it answers at once, once it listens.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + apiAddr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return logs
			}
		}
		select {
		case <-exited:
			t.Fatalf("demo-api exited before serving:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo-api did not serve on %s within 10s:\n%s", apiAddr, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startCaddy runs `caddy run` on examples/Caddyfile from the repository root
// and stops it when the test ends.
func startCaddy(t *testing.T, bin string) {
	t.Helper()
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", "examples/Caddyfile", "--adapter", "caddyfile")
	cmd.Dir = ".."         // the Caddyfile's paths are relative to the repository root
	dataDir := t.TempDir() // keeps Caddy's storage and autosave out of $HOME
	cmd.Env = append(os.Environ(),
		"OIDC_CLIENT_SECRET="+devop.DefaultClientSecret,
		"XDG_DATA_HOME="+dataDir,
		"XDG_CONFIG_HOME="+dataDir,
	)
	logs, exited := runProcess(t, "caddy", cmd, 10*time.Second)

	// The signed-out page is public, so it answers as soon as Caddy serves.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, siteURL+"/signed-out.html", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("caddy exited before serving:\n%s", logs.String())
		case <-ctx.Done():
			t.Fatalf("caddy did not serve %s within 30s:\n%s", siteURL, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// browser is an HTTP client with a cookie jar that follows redirects.
type browser struct{ *http.Client }

func newBrowser(t *testing.T) browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return browser{&http.Client{Jar: jar, Timeout: 15 * time.Second, Transport: acceptHTML{http.DefaultTransport}}}
}

// get fetches url with the given Accept header and returns the final
// response with its body read into memory.
func (b browser) get(t *testing.T, url, accept string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// acceptHTML gives requests without an Accept header a browser's, as a
// browser navigating between pages would send.
type acceptHTML struct{ next http.RoundTripper }

func (a acceptHTML) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Accept") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	}
	return a.next.RoundTrip(req)
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return string(b)
}

// lockedBuffer collects a child process's output written from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// providerAccessToken runs the authorization-code flow for the demo user
// directly with the provider, as an API client's own sign-in would, and
// returns the access token.
func providerAccessToken(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + providerAddr + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Authorization string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	cfg := oauth2.Config{
		ClientID: devop.DefaultClientID, ClientSecret: devop.DefaultClientSecret,
		Endpoint:    oauth2.Endpoint{AuthURL: doc.Authorization, TokenURL: doc.Token},
		RedirectURL: siteURL + "/oauth2/callback",
		Scopes:      []string{"openid", "profile", "email"},
	}
	verifier := oauth2.GenerateVerifier()
	jar, _ := cookiejar.New(nil)
	// The browser stops where the provider sends it back with the code.
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host == strings.TrimPrefix(siteURL, "http://") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err = devop.SignIn(client, cfg.AuthCodeURL("state-of-the-api-client", oauth2.S256ChallengeOption(verifier)), devop.DemoUsername, devop.DemoPassword)
	if err != nil {
		t.Fatalf("signing in at the provider: %v", err)
	}
	resp.Body.Close()
	back, err := resp.Location()
	if err != nil || back.Query().Get("code") == "" {
		t.Fatalf("the provider did not send a code back: %s %v", resp.Status, err)
	}
	tok, err := cfg.Exchange(context.Background(), back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchanging the code: %v", err)
	}
	return tok.AccessToken
}
