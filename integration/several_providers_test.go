package integration

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/devop"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// TestTwoProvidersSideBySide: one site signs users in through the zitadel
// OP or our test provider. A sign-in starts at a chooser page; each
// session remembers its provider, which the upstream sees in
// {http.auth.user.provider}; refreshes and logouts go to the session's own
// provider.
func TestTwoProvidersSideBySide(t *testing.T) {
	op := newZitadelProvider(t)
	p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second})
	up := newUpstream(t)
	sites := fmt.Sprintf(`%%[1]s {
	log {
		output file %%[2]s
		format json
	}
	oidc_auth {
		provider zitadel "Staff (Zitadel)" {
			issuer %[1]s
			client_id caddy-test
			client_secret test-secret
			scopes openid profile email offline_access
		}
		provider test "Contractors" {
			issuer %[2]s
			client_id %[3]s
			client_secret %[4]s
		}
		allow {
			provider zitadel
		}
		allow {
			provider test
			email_domain example.com
		}
	}
	@zitadel oidc_claim {
		provider zitadel
	}
	request_header @zitadel X-Signed-In-Through zitadel
	token_inject {
		refresh_skew 10m
	}
	reverse_proxy %[5]s {
		header_up X-User-Provider {http.auth.user.provider}
		header_up X-User-Email {http.auth.user.email}
	}
}
`, op.Issuer(), p.Issuer(), p.ClientID(), p.ClientSecret(), up.hostPort())
	o := startOpsSite(t, sites, nil)

	// Without a session, a navigation lands on the chooser page.
	chooser := func(b *browser, path string) map[string]string {
		t.Helper()
		resp, body := b.navigate(o.url + path)
		if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/oauth2/login" {
			t.Fatalf("navigation to %s without a session: %s %d, want the chooser page", path, resp.Request.URL, resp.StatusCode)
		}
		if resp.Header.Get("Content-Security-Policy") == "" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
			t.Errorf("chooser page CSP %q, want frame-ancestors 'none'", resp.Header.Get("Content-Security-Policy"))
		}
		links := map[string]string{}
		for _, m := range regexp.MustCompile(`<a href="([^"]+)">([^<]+)</a>`).FindAllStringSubmatch(body, -1) {
			links[html.UnescapeString(m[2])] = html.UnescapeString(m[1])
		}
		if len(links) != 2 || links["Staff (Zitadel)"] == "" || links["Contractors"] == "" {
			t.Fatalf("chooser links %v, want one per provider by label: %s", links, body)
		}
		return links
	}

	// Carol, a contractor, signs in through the test provider.
	carol := newBrowser(t)
	links := chooser(carol, "/app")
	if want := "/oauth2/login?provider=test&rd=%2Fapp"; links["Contractors"] != want {
		t.Errorf("contractors' link %q, want %q", links["Contractors"], want)
	}
	resp, body := carol.navigate(o.url + links["Contractors"])
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/app" {
		t.Fatalf("sign-in through the test provider ended at %s %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	if got := up.lastHeader().Get("X-User-Provider"); got != "test" {
		t.Errorf("upstream saw provider %q, want test", got)
	}
	if got := up.lastHeader().Get("X-Signed-In-Through"); got != "" {
		t.Errorf("the zitadel matcher matched a test-provider session: %q", got)
	}

	// Dave, staff, signs in through the zitadel OP and its login form.
	dave := newBrowser(t)
	links = chooser(dave, "/app")
	resp, _ = dave.navigate(o.url + links["Staff (Zitadel)"])
	if !strings.HasPrefix(resp.Request.URL.String(), op.Issuer()) {
		t.Fatalf("the staff link led to %s, want the zitadel OP's login", resp.Request.URL)
	}
	resp, err := devop.SignIn(dave.client, resp.Request.URL.String(), devop.DemoUsername, devop.DemoPassword)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/app" {
		t.Fatalf("sign-in through zitadel ended at %s %d: %s", resp.Request.URL, resp.StatusCode, page)
	}
	if got := up.lastHeader().Get("X-User-Provider"); got != "zitadel" {
		t.Errorf("upstream saw provider %q, want zitadel", got)
	}
	if got := up.lastHeader().Get("X-User-Email"); got != devop.DemoEmail {
		t.Errorf("upstream saw email %q, want %q", got, devop.DemoEmail)
	}
	if got := up.lastHeader().Get("X-Signed-In-Through"); got != "zitadel" {
		t.Errorf("the zitadel matcher did not match a zitadel session: %q", got)
	}

	// An unknown provider gets the chooser again, with 400.
	if resp, _ := newBrowser(t).navigate(o.url + "/oauth2/login?provider=nope"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("login at an unknown provider: %d, want 400", resp.StatusCode)
	}

	// Each refresh goes to the session's provider.
	refreshes := func(provider string) float64 {
		return sum(o.metrics(), "caddy_oidc_refreshes_total", "provider="+provider, "result=ok")
	}
	zBefore, tBefore, testopBefore := refreshes("zitadel"), refreshes("test"), p.RefreshCalls()
	if resp := apiCall(t, dave, o.url); resp.StatusCode != http.StatusOK {
		t.Fatalf("dave's API call: %d", resp.StatusCode)
	}
	if refreshes("zitadel")-zBefore != 1 || p.RefreshCalls() != testopBefore {
		t.Errorf("dave's refresh: zitadel +%v, test provider +%d; want 1 and 0", refreshes("zitadel")-zBefore, p.RefreshCalls()-testopBefore)
	}
	p.SetAccessTokenTTL(time.Hour)
	if resp := apiCall(t, carol, o.url); resp.StatusCode != http.StatusOK {
		t.Fatalf("carol's API call: %d", resp.StatusCode)
	}
	if refreshes("test")-tBefore != 1 || p.RefreshCalls() != testopBefore+1 {
		t.Errorf("carol's refresh: test +%v, test provider +%d; want 1 and 1", refreshes("test")-tBefore, p.RefreshCalls()-testopBefore)
	}
	if got := up.lastHeader().Get("Authorization"); !strings.HasPrefix(got, "Bearer ") || !p.ValidAccessToken(strings.TrimPrefix(got, "Bearer ")) {
		t.Errorf("carol's call did not carry a token of the test provider")
	}

	// A front-channel logout naming only a sid (as Entra ID sends it) ends
	// that provider session's sessions, whichever provider it is of, and
	// no other.
	erin := newBrowser(t)
	links = chooser(erin, "/app")
	if resp, _ := erin.navigate(o.url + links["Contractors"]); resp.StatusCode != http.StatusOK {
		t.Fatalf("erin's sign-in: %d", resp.StatusCode)
	}
	if resp, _ := newBrowser(t).navigate(o.url + "/oauth2/frontchannel-logout?sid=" + sidOf(t, p)); resp.StatusCode != http.StatusOK {
		t.Fatalf("front-channel logout by sid: %d", resp.StatusCode)
	}
	for _, c := range []struct {
		who  string
		b    *browser
		want int
	}{{"erin", erin, http.StatusUnauthorized}, {"carol", carol, http.StatusOK}, {"dave", dave, http.StatusOK}} {
		if resp, _ := c.b.fetch(o.url + "/app"); resp.StatusCode != c.want {
			t.Errorf("%s after a front-channel logout of erin's sid: %d, want %d", c.who, resp.StatusCode, c.want)
		}
	}

	// Each sign-out goes on to the session's provider.
	s := &site{t: t, url: o.url}
	for _, c := range []struct {
		who    string
		b      *browser
		issuer string
	}{{"carol", carol, p.Issuer()}, {"dave", dave, op.Issuer()}} {
		resp, body := c.b.signOut(s, "")
		m := regexp.MustCompile(`<form[^>]* action="([^"]+)"`).FindStringSubmatch(body)
		if resp.StatusCode != http.StatusOK || m == nil || !strings.HasPrefix(html.UnescapeString(m[1]), c.issuer+"/") {
			t.Errorf("%s's sign-out: %d %s, want a form posting to %s's end-session endpoint", c.who, resp.StatusCode, body, c.issuer)
		}
	}
}
