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
	a := startClusterCaddy(t, caddyBin, p, rs.Addr(), key, strings.TrimPrefix(up.URL, "http://"))
	b := startClusterCaddy(t, caddyBin, p, rs.Addr(), key, strings.TrimPrefix(up.URL, "http://"))

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

// startClusterCaddy runs one Caddy process with a Redis session store and
// returns its base URL.
func startClusterCaddy(t *testing.T, bin string, p *testop.Provider, redisAddr, key, upstream string) string {
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
		session_store redis {
			address %s
		}
	}
	token_inject
	reverse_proxy %s {
		header_up X-User-Email {http.auth.user.email}
	}
}
`, filepath.Join(dir, "storage"), base, p.Issuer(), p.ClientID(), p.ClientSecret(), key, redisAddr, upstream)
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
