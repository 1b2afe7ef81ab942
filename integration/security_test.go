package integration

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// TestCallbackRejectsMisbehavingProvider: every ID token that breaks a rule
// of OpenID Connect Core 3.1.3.7 is refused with a clear page naming the
// problem, no session is created, and no token reaches the page or the log.
func TestCallbackRejectsMisbehavingProvider(t *testing.T) {
	cases := []struct {
		m      testop.Misbehavior
		status int
		reason string
	}{
		{testop.WrongNonce, 401, "nonce"},
		{testop.WrongAudience, 401, "audience"},
		{testop.WrongIssuer, 401, "different provider"},
		{testop.BadSignature, 401, "signature"},
		{testop.AlgNone, 401, "unsigned"},
		{testop.Expired, 401, "expired"},
		{testop.IssuedInFuture, 401, "future"},
		{testop.MissingKid, 401, "kid"},
		{testop.UnknownKid, 401, "signature"},
		{testop.WrongAzp, 401, "azp"},
		{testop.BadAtHash, 401, "at_hash"},
		{testop.HS256Signed, 401, "algorithm"},
		{testop.NoIDToken, 401, "no id_token"},
		{testop.NoIat, 401, "no iat"},
		{testop.SeveralAudiencesNoAzp, 401, "several audiences but no azp"},
		{testop.AzpOfOtherParty, 401, "azp"},
		{testop.TokenEndpointError, 502, "refused to issue tokens"},
	}
	p := newProvider(t, testop.Config{})
	var logs strings.Builder
	for _, c := range cases {
		t.Run(c.m.String(), func(t *testing.T) {
			p.SetMisbehavior(c.m)
			defer p.SetMisbehavior(testop.MisbehaveNone)
			// A site of its own: one that fetched the provider's keys
			// before the misbehaviour began would know a key set the
			// provider no longer publishes (MissingKid's second key).
			s, _ := testopSite(t, p, siteOptions{})
			defer func() { logs.WriteString(s.logs()) }()
			b := newBrowser(t)
			resp, body := b.navigate(s.url + "/")
			if resp.StatusCode != c.status || !strings.Contains(body, c.reason) {
				t.Fatalf("got %d %q, want %d naming %q", resp.StatusCode, body, c.status, c.reason)
			}
			if !strings.Contains(body, `href="/oauth2/login"`) {
				t.Error("error page has no link to sign in again")
			}
			for _, ck := range b.cookies(s) {
				if strings.Contains(ck.Name, "oidc_session") {
					t.Fatalf("a session cookie was set: %s", ck.Name)
				}
			}
			if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("after a refused sign-in the browser is signed in (%d)", resp.StatusCode)
			}
			assertNoSecrets(t, "error page", body, p.IssuedTokens()...)
		})
	}
	assertNoSecrets(t, "Caddy's log", logs.String(), p.IssuedTokens()...)
}

// TestNoTokenInLogsOrPages signs in, uses the session, reads userinfo and
// signs out with debug logging on: no access or refresh token value appears
// in any log line or any page, and the ID token appears only where the
// browser app is meant to read it.
func TestNoTokenInLogsOrPages(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	var pages []string
	pages = append(pages, b.signIn(s, "/a"))
	_, body := b.navigate(s.url + "/b")
	pages = append(pages, body)
	_, userinfo := b.fetch(s.url + "/oauth2/userinfo")
	_, body = b.signOut(s, "")
	pages = append(pages, body)

	var accessAndRefresh, idTokens []string
	for _, tok := range p.IssuedTokens() {
		if strings.Count(tok, ".") == 2 {
			idTokens = append(idTokens, tok)
		} else {
			accessAndRefresh = append(accessAndRefresh, tok)
		}
	}
	if len(accessAndRefresh) == 0 || len(idTokens) == 0 {
		t.Fatal("the provider issued no tokens")
	}
	logs := s.logs()
	if !strings.Contains(logs, `"user_id":"user-1"`) {
		t.Errorf("the access log does not name the user (user_id): %s", logs)
	}
	assertNoSecrets(t, "Caddy's log", logs, p.IssuedTokens()...)
	assertNoSecrets(t, "userinfo", userinfo, accessAndRefresh...)
	for _, page := range pages {
		assertNoSecrets(t, "a page", page, accessAndRefresh...)
	}
}

// TestSessionCookieIsHttpOnlyLaxAndHostPrefixedOnHTTPS checks the cookie
// attributes on an HTTPS site.
func TestSessionCookieIsHttpOnlyLaxAndHostPrefixedOnHTTPS(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{tls: true})
	b := newBrowser(t)
	nf := b.noFollow()
	resp, _ := nf.navigate(s.url + "/")
	checkCookies(t, "login-state", resp, "__Host-oidc_session_login_")
	resp, _ = nf.navigate(resp.Header.Get("Location"))
	resp, _ = nf.navigate(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("callback: %d", resp.StatusCode)
	}
	checkCookies(t, "session", resp, "__Host-oidc_session")
	if resp, _ := b.navigate(s.url + "/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed-in request: %d", resp.StatusCode)
	}
}

func checkCookies(t *testing.T, what string, resp *http.Response, prefix string) {
	t.Helper()
	found := false
	for _, c := range resp.Cookies() {
		if !strings.HasPrefix(c.Name, prefix) || c.MaxAge < 0 {
			continue
		}
		found = true
		if !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("%s cookie %s: HttpOnly=%v Secure=%v SameSite=%v Path=%q Domain=%q", what, c.Name, c.HttpOnly, c.Secure, c.SameSite, c.Path, c.Domain)
		}
	}
	if !found {
		t.Fatalf("no %s cookie named %s*", what, prefix)
	}
}

// TestTamperedOrForeignCookieIsNoSession: a changed byte, a cookie sealed
// with another key, or garbage all count as no session (401), never as an
// error.
func TestTamperedOrForeignCookieIsNoSession(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	var value string
	for _, c := range b.cookies(s) {
		if c.Name == "oidc_session" {
			value = c.Value
		}
	}
	if value == "" {
		t.Fatal("no session cookie")
	}
	flip := []byte(value)
	flip[len(flip)/2] ^= 0x01
	if flip[len(flip)/2] == '.' || flip[len(flip)/2] > 'z' {
		flip[len(flip)/2] = 'A'
	}
	for name, v := range map[string]string{
		"tampered":  string(flip),
		"truncated": value[:len(value)-10],
		"garbage":   "not-a-session",
		"empty":     "",
		"huge":      strings.Repeat("A", 60000),
		"chunked":   "3." + value,
	} {
		req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", "oidc_session="+v)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusUnauthorized
		if name == "huge" {
			want = http.StatusRequestHeaderFieldsTooLarge // refused by Caddy before oidc_auth
		}
		if resp.StatusCode != want {
			t.Errorf("%s cookie: %d, want %d", name, resp.StatusCode, want)
		}
	}

	// A site with its own key does not accept this site's sessions.
	other, _ := testopSite(t, p, siteOptions{extra: "session_keys " + newKey()})
	req, _ := http.NewRequest(http.MethodGet, other.url+"/api", nil)
	req.Header.Set("Cookie", "oidc_session="+value)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("foreign cookie: %d, want 401", resp.StatusCode)
	}
}

func newKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// TestSessionKeysRotate: with a new key put first, sessions sealed with the
// old one stay valid; once the old key is dropped they end.
func TestSessionKeysRotate(t *testing.T) {
	p := newProvider(t, testop.Config{})
	oldKey, newKey := newKey(), newKey()
	s, _ := testopSite(t, p, siteOptions{extra: "session_keys " + oldKey})
	b := newBrowser(t)
	b.signIn(s, "/")
	// The browser's cookies for 127.0.0.1 reach the reconfigured site on
	// its new port (cookies are per host, not per port).
	rotated, _ := testopSite(t, p, siteOptions{extra: "session_keys " + newKey + " " + oldKey})
	if resp, _ := b.fetch(rotated.url + "/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("old-key session after rotation: %d, want 200", resp.StatusCode)
	}
	dropped, _ := testopSite(t, p, siteOptions{extra: "session_keys " + newKey})
	if resp, _ := b.fetch(dropped.url + "/api"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("old-key session after the old key was dropped: %d, want 401", resp.StatusCode)
	}
}

// TestSessionSurvivesReloadAndRestart: the generated key lives in Caddy's
// storage, so a config reload and a stop/start keep sessions valid.
func TestSessionSurvivesReloadAndRestart(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	s.load() // reload
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after reload: %d", resp.StatusCode)
	}
	stopCaddy(t)
	s.load() // start again from the same storage
	s.waitUp()
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after restart: %d", resp.StatusCode)
	}
}

// TestCaddyStartsWhileProviderIsDown: Caddy loads its config although the
// provider does not answer; sign-in gets a clear 503 until the provider is
// back, then works without a restart.
func TestCaddyStartsWhileProviderIsDown(t *testing.T) {
	addr := "127.0.0.1:" + itoa(freePort(t))
	up := newUpstream(t)
	s := startSite(t, up, siteOptions{issuer: "http://" + addr, clientID: "test-client", secret: "test-secret"})
	resp, body := newBrowser(t).navigate(s.url + "/")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "identity provider cannot be reached") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("provider down: %d %s", resp.StatusCode, body)
	}
	p := newProvider(t, testop.Config{Addr: addr})
	_ = p
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body = newBrowser(t).navigate(s.url + "/")
		if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("provider back: %d %s", resp.StatusCode, body)
	}
}

// TestExistingSessionsAreServedWhileProviderIsDown: a signed-in user keeps
// working when the provider goes away.
func TestExistingSessionsAreServedWhileProviderIsDown(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	p.Close()
	if resp, _ := b.navigate(s.url + "/still-here"); resp.StatusCode != http.StatusOK {
		t.Fatalf("signed-in request while the provider is down: %d", resp.StatusCode)
	}
	// A new sign-in is still sent to the (known) provider.
	if resp, _ := newBrowser(t).noFollow().navigate(s.url + "/"); resp.StatusCode != http.StatusFound {
		t.Fatalf("new sign-in while the provider is down: %d, want 302", resp.StatusCode)
	}
}

// TestProviderKeyRotationIsFollowed: after the provider switches to a new
// signing key (and drops the old one), sign-in still works.
func TestProviderKeyRotationIsFollowed(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	newBrowser(t).signIn(s, "/")
	p.RotateKeys(false)
	newBrowser(t).signIn(s, "/")
}

// TestLargeSessionIsSplitAcrossCookies: a session too large for one cookie
// is split and joined again; a smaller one later removes the extra chunks.
func TestLargeSessionIsSplitAcrossCookies(t *testing.T) {
	p := newProvider(t, testop.Config{IDTokenPadding: 9000})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	n := 0
	for _, c := range b.cookies(s) {
		if strings.HasPrefix(c.Name, "oidc_session") && !strings.Contains(c.Name, "_login_") && !strings.HasSuffix(c.Name, "_logout") {
			n++
			if len(c.Name)+len(c.Value) > 4000 {
				t.Errorf("cookie %s is %d bytes", c.Name, len(c.Value))
			}
		}
	}
	if n < 3 {
		t.Fatalf("%d session cookies, want the session split in 3 or more", n)
	}
	if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("chunked session: %d", resp.StatusCode)
	}
	if err := p.SetClaims(map[string]any{"pad": nil}); err != nil {
		t.Fatal(err)
	}
	small := newProvider(t, testop.Config{})
	s2, _ := testopSite(t, small, siteOptions{storage: s.storage})
	b.signIn(s2, "/again-small")
	n = 0
	for _, c := range b.cookies(s) {
		if strings.HasPrefix(c.Name, "oidc_session") && !strings.Contains(c.Name, "_login_") && !strings.HasSuffix(c.Name, "_logout") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d session cookies after a small session replaced a large one, want 1", n)
	}
}

// TestSigningAlgorithmIsPinned: tokens must be signed with an algorithm the
// configuration allows (RS256 unless signing_algs says otherwise), whatever
// the provider announces; "none" and HMAC can never be allowed. The error
// names the algorithm and the option.
func TestSigningAlgorithmIsPinned(t *testing.T) {
	p := newProvider(t, testop.Config{SigningAlgs: []string{"none", "HS256", "ES256", "RS256"}})
	for _, c := range []struct {
		m    testop.Misbehavior
		want string
	}{
		{testop.HS256Signed, "HS256, which signing_algs does not allow"},
		{testop.AlgNone, "unsigned"},
	} {
		p.SetMisbehavior(c.m)
		s, _ := testopSite(t, p, siteOptions{})
		resp, body := newBrowser(t).navigate(s.url + "/")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d, want 401 naming %q:\n%s", c.m, resp.StatusCode, c.want, body)
		}
	}
	p.SetMisbehavior(testop.MisbehaveNone)
	// RS256 tokens, and a configuration that allows only ES256.
	s, _ := testopSite(t, p, siteOptions{})
	newBrowser(t).signIn(s, "/")
	es, _ := testopSite(t, p, siteOptions{extra: "signing_algs ES256"})
	resp, body := newBrowser(t).navigate(es.url + "/")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "RS256, which signing_algs does not allow (it allows ES256)") {
		t.Errorf("an RS256 token with signing_algs ES256: %d\n%s", resp.StatusCode, body)
	}
	// And so for logout tokens.
	s, _ = testopSite(t, p, siteOptions{})
	p.SetMisbehavior(testop.HS256Signed)
	tok, err := p.LogoutToken("user-1", "")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := postLogoutToken(t, s.url, tok); st != http.StatusBadRequest {
		t.Errorf("an HS256 logout token: %d, want 400", st)
	}
}
