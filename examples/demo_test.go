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

	"github.com/oidcgate/caddy-oidc/internal/devop"
)

// The addresses examples/Caddyfile names.
const (
	siteURL      = "http://localhost:8080"
	providerAddr = "localhost:9998"
	adminAddr    = "localhost:2019"
)

// TestDemo runs examples/Caddyfile in a real Caddy against the development
// provider and walks a browser through sign-in, the greeting page, the
// userinfo endpoint and sign-out.
//
// DEMO_CADDY_BIN names a Caddy binary built with this plugin (make test
// builds bin/caddy and sets it).
func TestDemo(t *testing.T) {
	caddyBin := os.Getenv("DEMO_CADDY_BIN")
	if caddyBin == "" {
		t.Skip("DEMO_CADDY_BIN is not set; run `make test` or set it to a Caddy binary built with this plugin")
	}
	for _, addr := range []string{"localhost:8080", adminAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("examples/Caddyfile needs %s, which is busy: %v", addr, err)
		}
		ln.Close()
	}
	provider, err := devop.New(devop.Config{
		Addr:                   providerAddr,
		RedirectURIs:           []string{siteURL + "/oauth2/callback"},
		PostLogoutRedirectURIs: []string{siteURL + "/*"},
	})
	if err != nil {
		t.Fatalf("examples/Caddyfile needs the provider on %s: %v", providerAddr, err)
	}
	t.Cleanup(provider.Close)

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
	for _, want := range []string{"Hello, " + devop.DemoName + "!", devop.DemoEmail, devop.DemoSubject, `href="/oauth2/logout"`} {
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

	// Signing out ends on the public signed-out page, possibly by way of a
	// self-submitting form that posts to the provider's end-session endpoint.
	resp = browser.get(t, siteURL+"/oauth2/logout", "text/html")
	body = readBody(t, resp)
	if resp.Request.URL.String() == siteURL+"/oauth2/logout" && strings.Contains(body, "<form") {
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
}

// startCaddy runs `caddy run` on examples/Caddyfile from the repository root
// and stops it when the test ends.
func startCaddy(t *testing.T, bin string) {
	t.Helper()
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "run", "--config", "examples/Caddyfile", "--adapter", "caddyfile")
	cmd.Dir = ".." // the Caddyfile's paths are relative to the repository root
	cmd.Stdout, cmd.Stderr = logs, logs
	dataDir := t.TempDir() // keeps Caddy's storage and autosave out of $HOME
	cmd.Env = append(os.Environ(),
		"OIDC_CLIENT_SECRET="+devop.DefaultClientSecret,
		"XDG_DATA_HOME="+dataDir,
		"XDG_CONFIG_HOME="+dataDir,
	)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("caddy output:\n%s", logs.String())
		}
	})

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
