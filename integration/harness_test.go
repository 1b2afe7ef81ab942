// Package integration drives a real Caddy, with the caddy-oidc modules,
// through sign-in flows against real OpenID providers running in-process.
package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
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
	"github.com/oidcgate/caddy-oidc/internal/devop"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

func TestMain(m *testing.M) {
	// Caddy keeps its data and autosaved config under these; keep them out
	// of the real home directory.
	dir, err := os.MkdirTemp("", "caddy-oidc-integration")
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

// upstream is the app behind Caddy: it records what reached it.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	last     http.Header
	lastReq  receivedRequest
	requests int
}

// receivedRequest is what the upstream received.
type receivedRequest struct {
	header        http.Header
	query         string
	body          string
	contentLength int64
}

func newUpstream(t *testing.T) *upstream {
	return startUpstream(t, false)
}

// newEchoUpstream starts an upstream that answers with everything it
// received, as a debugging endpoint or a careless API might.
func newEchoUpstream(t *testing.T) *upstream {
	return startUpstream(t, true)
}

func startUpstream(t *testing.T, echo bool) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.lastReq = receivedRequest{r.Header.Clone(), r.URL.RawQuery, string(body), r.ContentLength}
		u.requests++
		u.mu.Unlock()
		if echo {
			w.Header().Set("X-Echo-Authorization", r.Header.Get("Authorization"))
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "headers: %v\nquery: %s\nbody: %s\n", r.Header, r.URL.RawQuery, body)
			return
		}
		fmt.Fprintf(w, "upstream saw user %q at %s", r.Header.Get("X-User-Email"), r.URL.Path)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *upstream) lastRequest() receivedRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastReq
}

// hostPort is the upstream's dial address for reverse_proxy.
func (u *upstream) hostPort() string { return strings.TrimPrefix(u.URL, "http://") }

// site is a running Caddy with one oidc_auth-protected site.
type site struct {
	t       *testing.T
	url     string // http(s)://127.0.0.1:port
	logFile string
	storage string
	config  []byte
}

// siteOptions shape the Caddyfile of a test site.
type siteOptions struct {
	issuer   string
	clientID string
	secret   string
	extra    string // more oidc_auth subdirectives
	tls      bool
	storage  string // reuse another site's storage (its session key)
	routes   string // replaces the default reverse_proxy route
	matcher  string // oidc_auth's matcher, if any
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

// startSite adapts a Caddyfile for opts and loads it into the process's
// Caddy, replacing any previous config.
func startSite(t *testing.T, up *upstream, opts siteOptions) *site {
	t.Helper()
	dir := t.TempDir()
	if opts.storage == "" {
		opts.storage = filepath.Join(dir, "storage")
	}
	s := &site{t: t, logFile: filepath.Join(dir, "caddy.log"), storage: opts.storage}
	scheme, tlsLine := "http", ""
	if opts.tls {
		scheme, tlsLine = "https", "tls internal"
	}
	s.url = fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))
	routes := opts.routes
	if routes == "" {
		routes = fmt.Sprintf(`reverse_proxy %s {
		header_up X-User-Email {http.auth.user.email}
		header_up X-User-Id {http.auth.user.id}
	}`, strings.TrimPrefix(up.URL, "http://"))
	}
	secretLine := ""
	if opts.secret != "" {
		secretLine = "client_secret " + opts.secret
	}
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %[1]s
	skip_install_trust
	local_certs
	log {
		output file %[2]s
		format json
		level DEBUG
	}
}
%[3]s {
	%[4]s
	log {
		output file %[2]s
		format json
	}
	oidc_auth %[10]s {
		issuer %[5]s
		client_id %[6]s
		%[7]s
		%[8]s
	}
	%[9]s
}
`, opts.storage, s.logFile, s.url, tlsLine, opts.issuer, opts.clientID, secretLine, opts.extra, routes, opts.matcher)
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	_ = warnings // only "not formatted"
	s.config = cfg
	s.load()
	t.Cleanup(func() { _ = caddy.Stop() })
	if opts.tls {
		s.waitForTLS()
	}
	return s
}

// load (re)loads the site's config, as `caddy reload` would.
func (s *site) load() {
	s.t.Helper()
	if err := caddy.Load(s.config, true); err != nil {
		s.t.Fatalf("loading Caddy config: %v", err)
	}
}

// waitForTLS waits until Caddy has issued the site's internal certificate.
func (s *site) waitForTLS() {
	s.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.url, "https://"), &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			conn.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no TLS certificate: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitUp waits until the site accepts connections again after a restart
// (the old listener may still be closing).
func (s *site) waitUp() {
	s.t.Helper()
	for i := 0; ; i++ {
		resp, err := http.Get(s.url + "/oauth2/userinfo")
		if err == nil {
			resp.Body.Close()
			return
		}
		if i == 50 {
			s.t.Fatalf("site not up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logs returns everything Caddy has logged so far.
func (s *site) logs() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// browser is an HTTP client with a cookie jar that behaves like a browser
// for top-level navigations.
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
		// No keep-alive: tests reload Caddy on the same port.
		Transport: fetchMetadata{&http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}},
	}}
}

// fetchMetadata says, as a browser does, where a request comes from:
// "Sec-Fetch-Site: same-origin" unless the test set the header itself. A
// test that sets it to "" sends none at all, like a command-line client.
type fetchMetadata struct{ base http.RoundTripper }

func (fm fetchMetadata) RoundTrip(req *http.Request) (*http.Response, error) {
	v, set := req.Header["Sec-Fetch-Site"]
	switch {
	case !set:
		req = req.Clone(req.Context())
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	case len(v) == 1 && v[0] == "":
		req = req.Clone(req.Context())
		req.Header.Del("Sec-Fetch-Site")
	}
	return fm.base.RoundTrip(req)
}

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
		// Right after a config reload on the same port, the old listener
		// may still take a connection and close it: retry bodiless
		// requests that failed before any response.
		if err == nil || req.Body != nil || attempt == 20 || !isConnectionError(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
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

// signOut presses the site's sign-out button: a POST to the logout path
// from the site's own page. It stops at the first response.
func (b *browser) signOut(s *site, query string) (*http.Response, string) {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.url+"/oauth2/logout"+query, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	req.Header.Set("Origin", s.url)
	return b.noFollow().do(req)
}

// cookies returns the jar's cookies for the site.
func (b *browser) cookies(s *site) []*http.Cookie {
	u, _ := http.NewRequest(http.MethodGet, s.url+"/", nil)
	return b.jar.Cookies(u.URL)
}

// newProvider starts a testop provider and stops it when the test ends.
func newProvider(t *testing.T, cfg testop.Config) *testop.Provider {
	t.Helper()
	p, err := testop.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// testopSite protects a fresh upstream with oidc_auth against p.
func testopSite(t *testing.T, p *testop.Provider, opts siteOptions) (*site, *upstream) {
	t.Helper()
	up := newUpstream(t)
	opts.issuer, opts.clientID, opts.secret = p.Issuer(), p.ClientID(), p.ClientSecret()
	return startSite(t, up, opts), up
}

// signIn navigates to path and follows the whole sign-in; it fails the test
// unless the browser lands back on path with the upstream's answer.
func (b *browser) signIn(s *site, path string) string {
	b.t.Helper()
	resp, body := b.navigate(s.url + path)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != path {
		b.t.Fatalf("sign-in ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	return body
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

// jsonBody decodes a JSON response body.
func jsonBody(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(bytes.NewReader([]byte(body))).Decode(&m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, body)
	}
	return m
}

var _ = context.Background

func itoa(n int) string { return fmt.Sprint(n) }

// stopCaddy stops the process's Caddy, as a shutdown would.
func stopCaddy(t *testing.T) {
	t.Helper()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
}

// decodeJWTClaims decodes a JWT's payload without verifying it.
func decodeJWTClaims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return jsonBody(t, string(payload))
}

// newZitadelProvider starts the zitadel-based development provider (with
// its real login form) for client caddy-test on a loopback port.
func newZitadelProvider(t *testing.T) *devop.Server {
	t.Helper()
	op, err := devop.New(devop.Config{
		Addr:                   "127.0.0.1:0",
		ClientID:               "caddy-test",
		ClientSecret:           "test-secret",
		RedirectURIs:           []string{"http://127.0.0.1:*/oauth2/callback"},
		PostLogoutRedirectURIs: []string{"http://127.0.0.1:*/*", "http://127.0.0.1:*/oauth2/logout"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(op.Close)
	return op
}
