package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/redis/go-redis/v9"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// cluster is one Caddy config with several sites on their own ports, each
// with its own oidc_auth and token_inject instances: as far as sessions,
// caches and refreshes go, separate Caddy instances behind a load balancer.
// A browser's cookies for 127.0.0.1 reach all of them, as they would behind
// one host name.
type cluster struct {
	urls    []string
	logFile string
	config  []byte
}

func startCluster(t *testing.T, p *testop.Provider, up *upstream, n int, storeBlock string) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{logFile: filepath.Join(dir, "caddy.log")}
	var sites strings.Builder
	key := newKey()
	for range n {
		u := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		c.urls = append(c.urls, u)
		fmt.Fprintf(&sites, `%s {
	log {
		output file %s
		format json
	}
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
`, u, c.logFile, p.Issuer(), p.ClientID(), p.ClientSecret(), key, storeBlock, up.hostPort())
	}
	caddyfile := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %s
	log {
		output file %s
		format json
		level DEBUG
	}
}
%s`, filepath.Join(dir, "storage"), c.logFile, sites.String())
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting: %v\n%s", err, caddyfile)
	}
	c.config = cfg
	c.load(t)
	t.Cleanup(func() { _ = caddy.Stop() })
	return c
}

func (c *cluster) load(t *testing.T) {
	t.Helper()
	if err := caddy.Load(c.config, true); err != nil {
		t.Fatalf("loading Caddy config: %v", err)
	}
}

func (c *cluster) logs() string {
	b, _ := os.ReadFile(c.logFile)
	return string(b)
}

// apiCall sends a request with the placeholder to one instance.
func apiCall(t *testing.T, b *browser, base string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api", nil)
	req.Header.Set("Authorization", "Bearer "+placeholder)
	req.Header.Set("Accept", "application/json")
	resp, _ := b.do(req)
	return resp
}

// signedInRedisCluster starts Redis, a provider, an upstream and n
// instances sharing Redis, and signs a browser in through the first.
func signedInRedisCluster(t *testing.T, n int, cfg testop.Config) (*redistest.Server, *testop.Provider, *upstream, *cluster, *browser) {
	t.Helper()
	rs := redistest.Start(t)
	p := newProvider(t, cfg)
	up := newUpstream(t)
	c := startCluster(t, p, up, n, redisBlock(rs.Addr()))
	b := newBrowser(t)
	if resp, body := b.navigate(c.urls[0] + "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in through the first instance: %d %s", resp.StatusCode, body)
	}
	return rs, p, up, c, b
}

func redisBlock(addr string) string {
	return fmt.Sprintf("session_store redis {\n\t\t\taddress %s\n\t\t}", addr)
}

// TestRedisSessionsAreSharedByInstances: signed in through instance A, the
// browser's requests through instance B carry the same identity and token.
func TestRedisSessionsAreSharedByInstances(t *testing.T) {
	rs := redistest.Start(t)
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	c := startCluster(t, p, up, 2, redisBlock(rs.Addr()))
	b := newBrowser(t)
	resp, body := b.navigate(c.urls[0] + "/via-a")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in through A: %d %s", resp.StatusCode, body)
	}
	var sessionCookie string
	for _, ck := range b.cookies(&site{url: c.urls[0]}) {
		if ck.Name == "oidc_session" {
			sessionCookie = ck.Value
		}
	}
	if len(sessionCookie) != 43 {
		t.Fatalf("session cookie %q: want an opaque 43-character ID", sessionCookie)
	}
	if resp := apiCall(t, b, c.urls[1]); resp.StatusCode != http.StatusOK {
		t.Fatalf("request through B: %d", resp.StatusCode)
	}
	if up.lastHeader().Get("X-User-Email") != "alice@example.com" {
		t.Errorf("B's request: X-User-Email %q", up.lastHeader().Get("X-User-Email"))
	}
	if tok := strings.TrimPrefix(up.lastHeader().Get("Authorization"), "Bearer "); !p.ValidAccessToken(tok) {
		t.Errorf("B's request did not carry the session's access token")
	}
	assertNoSecrets(t, "Caddy's log", c.logs(), p.IssuedTokens()...)
}

// TestRedisHoldsNoTokenText: what Redis stores for a session is sealed: no
// access, refresh or ID token, and no claim, appears in any key or value;
// nor does the session ID, which would let whoever reads Redis present the
// session cookie.
func TestRedisHoldsNoTokenText(t *testing.T) {
	rs, p, _, c, b := signedInRedisCluster(t, 1, testop.Config{})
	apiCall(t, b, c.urls[0])
	// A logout token for another user leaves its jti remembered.
	tok, err := p.SignLogoutToken(map[string]any{"sub": "user-2", "jti": "jti-in-clear-xyz"}, "logout+jwt")
	if err != nil {
		t.Fatal(err)
	}
	if st, body := postLogoutToken(t, c.urls[0], tok); st != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", st, body)
	}

	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	defer rc.Close()
	ctx := context.Background()
	keys, err := rc.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	var dump strings.Builder
	for _, k := range keys {
		dump.WriteString(k + "\n")
		switch rc.Type(ctx, k).Val() {
		case "string":
			dump.WriteString(rc.Get(ctx, k).Val())
		case "set":
			dump.WriteString(strings.Join(rc.SMembers(ctx, k).Val(), " "))
		}
		dump.WriteString("\n")
	}
	var sessionID string
	for _, ck := range b.cookies(&site{url: c.urls[0]}) {
		if ck.Name == "oidc_session" {
			sessionID = ck.Value
		}
	}
	if sessionID == "" {
		t.Fatal("no session cookie")
	}
	assertNoSecrets(t, "Redis", dump.String(), append(p.IssuedTokens(), sessionID)...)
	if !strings.Contains(dump.String(), "seen:") {
		t.Error("no remembered jti in Redis")
	}
	for _, clear := range []string{"alice@example.com", "user-1", "user-2", "jti-in-clear-xyz"} {
		if strings.Contains(dump.String(), clear) {
			t.Errorf("Redis holds %q in clear", clear)
		}
	}
}

// TestRefreshIsCoordinatedAcrossInstances: 50 concurrent requests split
// over two instances, with an access token about to expire, cause exactly
// one token-endpoint call.
func TestRefreshIsCoordinatedAcrossInstances(t *testing.T) {
	_, p, _, c, b := signedInRedisCluster(t, 2, testop.Config{AccessTokenTTL: 10 * time.Second})
	p.SetAccessTokenTTL(time.Hour)
	var wg sync.WaitGroup
	statuses := make([]int, 50)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = apiCall(t, b, c.urls[i%2]).StatusCode
		}()
	}
	wg.Wait()
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Fatalf("request %d: %d", i, st)
		}
	}
	if n := p.RefreshCalls(); n != 1 {
		t.Fatalf("%d refresh calls for 50 requests over 2 instances, want 1", n)
	}
	assertNoSecrets(t, "Caddy's log", c.logs(), p.IssuedTokens()...)
}

// TestBackchannelLogoutEndsSessionsOnEveryInstance: a logout token sent to
// instance A ends the session on instance B, which had it in its local
// cache: A announces the deletion, and B drops the session within
// milliseconds (allowed here: half a second, a quarter of the cache TTL).
func TestBackchannelLogoutEndsSessionsOnEveryInstance(t *testing.T) {
	_, p, _, c, b := signedInRedisCluster(t, 2, testop.Config{})
	if resp := apiCall(t, b, c.urls[1]); resp.StatusCode != http.StatusOK {
		t.Fatalf("before logout: %d", resp.StatusCode)
	}
	sendLogoutToken(t, p, c.urls[0], "user-1", "", http.StatusOK)
	for deadline := time.Now().Add(500 * time.Millisecond); ; time.Sleep(5 * time.Millisecond) {
		st := apiCall(t, b, c.urls[1]).StatusCode
		if st == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B half a second after back-channel logout at A: %d, want 401", st)
		}
	}
}

func sendLogoutToken(t *testing.T, p *testop.Provider, base, sub, sid string, want int) {
	t.Helper()
	tok, err := p.LogoutToken(sub, sid)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.PostForm(base+"/oauth2/backchannel-logout", url.Values{"logout_token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("back-channel logout: %d, want %d", resp.StatusCode, want)
	}
}

// TestBackchannelLogoutRefusesBadTokens: a logout token must be valid and
// must not carry a nonce; an ID token is not a logout token.
func TestBackchannelLogoutRefusesBadTokens(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	for _, m := range []testop.Misbehavior{testop.WrongNonce, testop.WrongAudience, testop.WrongIssuer, testop.BadSignature, testop.Expired} {
		p.SetMisbehavior(m)
		sendLogoutToken(t, p, s.url, "user-1", "", http.StatusBadRequest)
	}
	p.SetMisbehavior(testop.MisbehaveNone)
	resp, err := http.PostForm(s.url+"/oauth2/backchannel-logout", url.Values{"logout_token": {"not-a-jwt"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("garbage logout token: %d", resp.StatusCode)
	}
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("a refused logout token ended the session: %d", resp.StatusCode)
	}
}

// TestBackchannelLogoutRevokesCookieSessions: a stateless cookie session
// cannot be deleted; it is refused from then on.
func TestBackchannelLogoutRevokesCookieSessions(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	other := newBrowser(t)
	if err := p.SetClaims(map[string]any{"email": "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	other.signIn(s, "/")
	sendLogoutToken(t, p, s.url, "user-1", "", http.StatusOK)
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("revoked cookie session: %d, want 401", resp.StatusCode)
	}
	// Signing in again afterwards works.
	b.signIn(s, "/again")
}

// TestRedisOutageGives503AndRecovers: with Redis down, requests that need
// the session get 503 (not a panic, not a sign-out) within milliseconds,
// the local cache notwithstanding; when Redis is back,
// the same sessions are served again without restarting Caddy.
func TestRedisOutageGives503AndRecovers(t *testing.T) {
	rs, _, _, c, b := signedInRedisCluster(t, 1, testop.Config{})
	rc := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	if err := rc.Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	rs.Stop()
	// The instance's local cache turns off when its subscription breaks,
	// which it notices within milliseconds; until then a request may still
	// be served from memory.
	start := time.Now()
	for {
		st := apiCall(t, b, c.urls[0]).StatusCode
		if st == http.StatusServiceUnavailable {
			break
		}
		if st != http.StatusOK || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("Redis down for %s: %d, want 503", time.Since(start), st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the 503 took %s", d)
	}
	rs.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := apiCall(t, b, c.urls[0])
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %d", resp.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMemorySessionsSurviveReload: the memory store outlives a config
// reload, so users stay signed in.
func TestMemorySessionsSurviveReload(t *testing.T) {
	p := newProvider(t, testop.Config{})
	up := newUpstream(t)
	c := startCluster(t, p, up, 1, "session_store memory")
	b := newBrowser(t)
	b.navigate(c.urls[0] + "/")
	if resp := apiCall(t, b, c.urls[0]); resp.StatusCode != http.StatusOK {
		t.Fatalf("before reload: %d", resp.StatusCode)
	}
	c.load(t)
	if resp := apiCall(t, b, c.urls[0]); resp.StatusCode != http.StatusOK {
		t.Fatalf("after reload: %d", resp.StatusCode)
	}
	// Back-channel logout deletes memory sessions too.
	sendLogoutToken(t, p, c.urls[0], "", sidOf(t, p), http.StatusOK)
	if resp := apiCall(t, b, c.urls[0]); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after back-channel logout by sid: %d", resp.StatusCode)
	}
}

// sidOf returns the sid claim of the last ID token the provider issued.
func sidOf(t *testing.T, p *testop.Provider) string {
	t.Helper()
	toks := p.IssuedTokens()
	for i := len(toks) - 1; i >= 0; i-- {
		if strings.Count(toks[i], ".") == 2 {
			claims := decodeJWTClaims(t, toks[i])
			if sid, _ := claims["sid"].(string); sid != "" {
				return sid
			}
		}
	}
	t.Fatal("no sid issued")
	return ""
}
