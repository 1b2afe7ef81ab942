package integration

import (
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/redistest"
	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// cookieHeader is the Cookie header the browser sends to the site: a copy
// someone could take (malware, a shared machine, a proxy log) and replay.
func (b *browser) cookieHeader(s *site) string {
	var parts []string
	for _, c := range b.cookies(s) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// replay sends a request with a copied Cookie header from a client of its
// own.
func replay(t *testing.T, base, cookie string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/api", nil)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Cookie", cookie)
	resp, _ := newBrowser(t).do(req)
	return resp.StatusCode
}

// TestLogoutEndsACookieSessionForGood: with the default cookie store a
// logout used to ask the browser to forget the cookie and nothing else; a
// copy taken earlier kept working. The sign-in is now revoked: the copy is
// refused, after a restart too.
func TestLogoutEndsACookieSessionForGood(t *testing.T) {
	p := newProvider(t, testop.Config{IDTokenPadding: 5000}) // a chunked session
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	copied := b.cookieHeader(s)
	if st := replay(t, s.url, copied); st != http.StatusOK {
		t.Fatalf("the copied cookie before logout: %d", st)
	}
	// Another sign-in of the same user, in another browser, is not affected.
	other := newBrowser(t)
	other.signIn(s, "/")

	if resp, _ := b.signOut(s, ""); resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	if st := replay(t, s.url, copied); st != http.StatusUnauthorized {
		t.Fatalf("the copied cookie after logout: %d, want 401", st)
	}
	if resp, _ := other.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the user's other session after this one's logout: %d, want 200", resp.StatusCode)
	}
	stopCaddy(t)
	s.load()
	s.waitUp()
	if st := replay(t, s.url, copied); st != http.StatusUnauthorized {
		t.Fatalf("the copied cookie after logout and a restart: %d, want 401", st)
	}
}

// TestLogoutEndsACopiedSessionOnEveryInstance: instances sharing Redis
// share the revocation, for the cookie store as for the Redis store.
func TestLogoutEndsACopiedSessionOnEveryInstance(t *testing.T) {
	rs := redistest.Start(t)
	for _, store := range []string{"cookie", "redis"} {
		t.Run(store, func(t *testing.T) {
			p := newProvider(t, testop.Config{})
			up := newUpstream(t)
			block := fmt.Sprintf("session_store %s {\n\t\t\taddress %s\n\t\t\tkey_prefix %s:\n\t\t}", store, rs.Addr(), store)
			c := startCluster(t, p, up, 2, block)
			b := newBrowser(t)
			if resp, body := b.navigate(c.urls[0] + "/"); resp.StatusCode != http.StatusOK {
				t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
			}
			s := &site{t: t, url: c.urls[0]}
			copied := b.cookieHeader(s)
			if st := replay(t, c.urls[1], copied); st != http.StatusOK {
				t.Fatalf("the copy at B before logout: %d", st)
			}
			b.signOut(s, "")
			for deadline := time.Now().Add(500 * time.Millisecond); ; time.Sleep(5 * time.Millisecond) {
				st := replay(t, c.urls[1], copied)
				if st == http.StatusUnauthorized {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the copy at B half a second after logout at A: %d, want 401", st)
				}
			}
		})
	}
}

// TestBackchannelRevocationsOfCookieSessionsSurviveARestart: without
// Redis, the revocation list of cookie sessions lives in Caddy's storage,
// not in one process's memory.
func TestBackchannelRevocationsOfCookieSessionsSurviveARestart(t *testing.T) {
	p := newProvider(t, testop.Config{})
	s, _ := testopSite(t, p, siteOptions{})
	b := newBrowser(t)
	b.signIn(s, "/")
	copied := b.cookieHeader(s)
	sid := sidOf(t, p)
	sendLogoutToken(t, p, s.url, "", sid, http.StatusOK)
	if st := replay(t, s.url, copied); st != http.StatusUnauthorized {
		t.Fatalf("after back-channel logout: %d, want 401", st)
	}
	// The list in storage names sessions by hashes: reading it reveals no
	// user or provider session.
	files := 0
	_ = filepath.WalkDir(filepath.Join(s.storage, "oidc_auth", "revocations"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		files++
		b, _ := os.ReadFile(path)
		assertNoSecrets(t, "the revocation list in storage", string(b), "user-1", sid)
		return nil
	})
	if files == 0 {
		t.Fatal("no revocation list in Caddy's storage")
	}
	stopCaddy(t)
	s.load()
	s.waitUp()
	if st := replay(t, s.url, copied); st != http.StatusUnauthorized {
		t.Fatalf("after back-channel logout and a restart: %d, want 401", st)
	}
	// A site with the same storage but a fresh process state is what a
	// second instance sharing the storage sees.
	other, _ := testopSite(t, p, siteOptions{storage: s.storage})
	if st := replay(t, other.url, copied); st != http.StatusUnauthorized {
		t.Fatalf("on an instance sharing the storage: %d, want 401", st)
	}
}

// TestRefreshCannotBringAnEndedSessionBack: a logout, or a back-channel
// logout, that lands while a refresh is at the provider's token endpoint
// stays a logout: the refreshed tokens are not written back over it, in
// every store.
func TestRefreshCannotBringAnEndedSessionBack(t *testing.T) {
	rs := redistest.Start(t)
	stores := map[string]string{
		"cookie": "",
		"memory": "session_store memory",
		"redis":  "session_store redis {\n\t\t\taddress " + rs.Addr() + "\n\t\t\tkey_prefix %s:\n\t\t}",
	}
	for name, block := range stores {
		for _, how := range []string{"logout", "back-channel logout"} {
			t.Run(name+"/"+how, func(t *testing.T) {
				p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second}) // inside the refresh window
				up := newUpstream(t)
				if strings.Contains(block, "%s") {
					block = fmt.Sprintf(block, strings.ReplaceAll(t.Name(), "/", "-"))
				}
				c := startCluster(t, p, up, 1, block)
				s := &site{t: t, url: c.urls[0]}
				b := newBrowser(t)
				if resp, body := b.navigate(s.url + "/"); resp.StatusCode != http.StatusOK {
					t.Fatalf("sign-in: %d %s", resp.StatusCode, body)
				}
				copied := b.cookieHeader(s)
				arrived, resume := p.PauseTokenEndpoint()
				defer resume()
				done := make(chan int)
				go func() {
					req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
					req.Header.Set("Authorization", "Bearer "+placeholder)
					req.Header.Set("Cookie", copied)
					resp, _ := newBrowser(t).do(req)
					done <- resp.StatusCode
				}()
				select {
				case <-arrived:
				case <-time.After(10 * time.Second):
					t.Fatal("no refresh reached the token endpoint")
				}
				if how == "logout" {
					req, _ := http.NewRequest(http.MethodPost, s.url+"/oauth2/logout", nil)
					req.Header.Set("Cookie", copied)
					req.Header.Set("Origin", s.url)
					if resp, _ := newBrowser(t).noFollow().do(req); resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusSeeOther {
						t.Fatalf("logout: %d", resp.StatusCode)
					}
				} else {
					sendLogoutToken(t, p, s.url, "user-1", "", http.StatusOK)
				}
				resume()
				if st := <-done; st != http.StatusUnauthorized {
					t.Errorf("the request whose refresh the logout overtook: %d, want 401", st)
				}
				time.Sleep(50 * time.Millisecond) // past any local cache's announcement
				if st := replay(t, s.url, copied); st != http.StatusUnauthorized {
					t.Fatalf("the session after the refresh completed: %d, want 401 (it came back)", st)
				}
			})
		}
	}
}

// TestFrontchannelLogoutEndsTheProviderSession: OpenID Connect
// Front-Channel Logout 1.0. The provider loads the path in an iframe with
// its issuer and the provider session; browsers send no SameSite=Lax
// cookie there, so the sid says which sessions end, in every store. The
// answer may be framed and is never cached; another issuer, or an iss
// without a sid, ends nothing.
func TestFrontchannelLogoutEndsTheProviderSession(t *testing.T) {
	for _, store := range []string{"", "session_store memory"} {
		t.Run("store "+store, func(t *testing.T) {
			p := newProvider(t, testop.Config{})
			s, _ := testopSite(t, p, siteOptions{extra: store})
			b := newBrowser(t)
			b.signIn(s, "/")
			sid := sidOf(t, p)
			other := newBrowser(t)
			other.signIn(s, "/")
			frontchannel := func(query string) (*http.Response, string) {
				req, _ := http.NewRequest(http.MethodGet, s.url+"/oauth2/frontchannel-logout"+query, nil)
				req.Header.Set("Sec-Fetch-Site", "cross-site")
				req.Header.Set("Sec-Fetch-Dest", "iframe")
				return newBrowser(t).do(req) // no cookies, as in a cross-site iframe
			}
			for _, q := range []string{
				"?iss=" + url.QueryEscape("https://evil.example") + "&sid=" + url.QueryEscape(sid),
				"?iss=" + url.QueryEscape(p.Issuer()),
			} {
				if resp, _ := frontchannel(q); resp.StatusCode != http.StatusBadRequest {
					t.Errorf("front-channel logout %s: %d, want 400", q, resp.StatusCode)
				}
			}
			if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
				t.Fatalf("a refused front-channel logout ended the session: %d", resp.StatusCode)
			}
			resp, _ := frontchannel("?iss=" + url.QueryEscape(p.Issuer()) + "&sid=" + url.QueryEscape(sid))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("front-channel logout: %d", resp.StatusCode)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Frame-Options") != "" ||
				strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors") {
				t.Errorf("front-channel answer: Cache-Control %q, X-Frame-Options %q, CSP %q; want no-store and embeddable",
					resp.Header.Get("Cache-Control"), resp.Header.Get("X-Frame-Options"), resp.Header.Get("Content-Security-Policy"))
			}
			if resp, _ := b.fetch(s.url + "/api"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("the session of that sid after front-channel logout: %d, want 401", resp.StatusCode)
			}
			if resp, _ := other.fetch(s.url + "/api"); resp.StatusCode != http.StatusOK {
				t.Fatalf("another provider session after front-channel logout: %d, want 200", resp.StatusCode)
			}
		})
	}
}
