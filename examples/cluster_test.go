package examples_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

const clusterPlaceholder = "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"

// TestTwoCaddyProcessesShareRedisSessions runs two separate Caddy
// processes (the binary built with the plugin) against one redis-server:
// a user signed in through A is signed in on B with the same token; 50
// concurrent requests split over both, with an access token about to
// expire, make one refresh; back-channel logout sent to A ends the
// session on B.
func TestTwoCaddyProcessesShareRedisSessions(t *testing.T) {
	caddyBin := os.Getenv("DEMO_CADDY_BIN")
	if caddyBin == "" {
		t.Skip("DEMO_CADDY_BIN is not set; run `make test` or set it to a Caddy binary built with this plugin")
	}
	rs := redistest.Start(t)
	p, err := testop.New(testop.Config{AccessTokenTTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)

	var mu sync.Mutex
	var lastAuth string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastAuth = r.Header.Get("Authorization")
		mu.Unlock()
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-User-Email"))
	}))
	t.Cleanup(up.Close)

	key := "q7KX0f1w8kS3mQ5nZ2pY4rT6vU8xA0cE2gI4kM6oQ8s="
	store := "session_store redis {\n\t\t\taddress " + rs.Addr() + "\n\t\t}"
	a := startClusterCaddy(t, caddyBin, p, store, t.TempDir(), key, strings.TrimPrefix(up.URL, "http://"))
	b := startClusterCaddy(t, caddyBin, p, store, t.TempDir(), key, strings.TrimPrefix(up.URL, "http://"))

	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, a+"/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "hello alice@example.com" {
		t.Fatalf("sign-in through A: %d %q", resp.StatusCode, body)
	}
	p.SetAccessTokenTTL(time.Hour)

	call := func(base string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/api", nil)
		req.Header.Set("Authorization", "Bearer "+clusterPlaceholder)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	var wg sync.WaitGroup
	statuses := make([]int, 50)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = call([]string{a, b}[i%2])
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Fatalf("request %d: %d", i, st)
		}
	}
	if n := p.RefreshCalls(); n != 1 {
		t.Fatalf("%d refresh calls for 50 requests over two Caddy processes, want 1", n)
	}
	mu.Lock()
	tok := strings.TrimPrefix(lastAuth, "Bearer ")
	mu.Unlock()
	if !p.ValidAccessToken(tok) {
		t.Fatal("the upstream did not get a valid access token")
	}

	logout, err := p.LogoutToken("user-1", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.PostForm(a+"/oauth2/backchannel-logout", url.Values{"logout_token": {logout}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout at A: %d", resp.StatusCode)
	}
	// B had the session in its local cache; A's announcement of the
	// deletion reaches it within milliseconds.
	for deadline := time.Now().Add(500 * time.Millisecond); ; time.Sleep(5 * time.Millisecond) {
		st := call(b)
		if st == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B half a second after back-channel logout at A: %d, want 401", st)
		}
	}
}

// startClusterCaddy runs one Caddy process with the given session_store
// line (or block) and Caddy storage directory, and returns its base URL.
func startClusterCaddy(t *testing.T, bin string, p *testop.Provider, store, storage, key, upstream string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	dir := t.TempDir()
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %s
}
%s {
	oidc_auth {
		issuer %s
		client_id %s
		client_secret %s
		session_keys %s
		%s
	}
	token_inject
	reverse_proxy %s {
		header_up X-User-Email {http.auth.user.email}
	}
}
`, storage, base, p.Issuer(), p.ClientID(), p.ClientSecret(), key, store, upstream)
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	logs, _ := runProcess(t, "caddy at "+base, cmd, 10*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/oauth2/userinfo")
		if err == nil {
			resp.Body.Close()
			return base
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy at %s did not start: %v\n%s", base, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTwoCaddyProcessesShareCookieRevocationsThroughStorage: without Redis,
// two Caddy processes that share Caddy's storage share the revocation
// list of cookie sessions: a copy of the cookie taken before a logout (or
// a back-channel logout) at A is refused at B within about a second, and
// at a process started afterwards at once.
func TestTwoCaddyProcessesShareCookieRevocationsThroughStorage(t *testing.T) {
	caddyBin := os.Getenv("DEMO_CADDY_BIN")
	if caddyBin == "" {
		t.Skip("DEMO_CADDY_BIN is not set; run `make test` or set it to a Caddy binary built with this plugin")
	}
	p, err := testop.New(testop.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.Header.Get("X-User-Email"))
	}))
	t.Cleanup(up.Close)
	storage := t.TempDir()
	key := "q7KX0f1w8kS3mQ5nZ2pY4rT6vU8xA0cE2gI4kM6oQ8s="
	upstream := strings.TrimPrefix(up.URL, "http://")
	a := startClusterCaddy(t, caddyBin, p, "", storage, key, upstream)
	b := startClusterCaddy(t, caddyBin, p, "", storage, key, upstream)

	signIn := func() (*http.Client, string) {
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar, Timeout: 20 * time.Second}
		req, _ := http.NewRequest(http.MethodGet, a+"/", nil)
		req.Header.Set("Accept", "text/html")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("sign-in through A: %d", resp.StatusCode)
		}
		u, _ := url.Parse(a)
		var parts []string
		for _, c := range jar.Cookies(u) {
			parts = append(parts, c.Name+"="+c.Value)
		}
		return client, strings.Join(parts, "; ")
	}
	replay := func(base, cookie string) int {
		req, _ := http.NewRequest(http.MethodGet, base+"/api", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	refusedAtB := func(what, cookie string) {
		t.Helper()
		start := time.Now()
		for {
			st := replay(b, cookie)
			if st == http.StatusUnauthorized {
				t.Logf("%s: the copy was refused at B after %s", what, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > 3*time.Second {
				t.Fatalf("%s: the copy at B after 3s: %d, want 401", what, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	client, copied := signIn()
	if st := replay(b, copied); st != http.StatusOK {
		t.Fatalf("the copy at B before logout: %d", st)
	}
	req, _ := http.NewRequest(http.MethodPost, a+"/oauth2/logout", nil)
	req.Header.Set("Origin", a)
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	refusedAtB("logout at A", copied)

	_, copied2 := signIn()
	logout, err := p.LogoutToken("user-1", "")
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.PostForm(a+"/oauth2/backchannel-logout", url.Values{"logout_token": {logout}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout at A: %d", resp.StatusCode)
	}
	refusedAtB("back-channel logout at A", copied2)

	c := startClusterCaddy(t, caddyBin, p, "", storage, key, upstream)
	for _, cookie := range []string{copied, copied2} {
		if st := replay(c, cookie); st != http.StatusUnauthorized {
			t.Fatalf("a process started after the logouts accepts a copy: %d", st)
		}
	}
}
