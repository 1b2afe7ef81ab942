package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// identityRoutes forward what the site knows of the user to up, in
// headers: from the identity ({http.auth.user.*}), from userinfo alone
// ({oidc.user.userinfo.*}) and from the ID token alone
// ({oidc.user.id_token.*}). Brackets show an empty value. A claim the user
// does not have leaves {http.auth.user.<claim>} unknown, which Caddy
// leaves as it is written (as with caddyauth's); {oidc.user.*} are empty.
func identityRoutes(up *upstream, before string) string {
	return fmt.Sprintf(`%s
	reverse_proxy %s {
		header_up X-User-Id          {http.auth.user.id}
		header_up X-User-Email       "[{http.auth.user.email}]"
		header_up X-User-Name        {http.auth.user.name}
		header_up X-User-Department  "[{http.auth.user.department}]"
		header_up X-User-Cost-Center "[{http.auth.user.cost_center}]"
		header_up X-User-Tid         "[{http.auth.user.tid}]"
		header_up X-Userinfo         {oidc.user.userinfo}
		header_up X-Userinfo-Name    {oidc.user.userinfo.name}
		header_up X-Userinfo-Country "[{oidc.user.userinfo.address.country}]"
		header_up X-Userinfo-Groups  "[{oidc.user.userinfo.groups}]"
		header_up X-Userinfo-Roles   "[{oidc.user.userinfo.roles}]"
		header_up X-ID-Token         {oidc.user.id_token}
		header_up X-ID-Token-Email   "[{oidc.user.id_token.email}]"
		header_up X-ID-Token-Dept    "[{oidc.user.id_token.department}]"
	}`, before, up.hostPort())
}

// identitySite protects a fresh upstream with oidc_auth against p, with
// extra oidc_auth lines and identityRoutes after the given ones.
func identitySite(t *testing.T, p *testop.Provider, extra, before string) (*site, *upstream) {
	t.Helper()
	up := newUpstream(t)
	s := startSite(t, up, siteOptions{issuer: p.Issuer(), clientID: p.ClientID(), secret: p.ClientSecret(),
		extra: extra, routes: identityRoutes(up, before)})
	return s, up
}

// wantHeaders fails for each header of h that is not as wanted.
func wantHeaders(t *testing.T, h http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("upstream %s = %q, want %q", k, got, v)
		}
	}
}

// opaqueTokens are the access, refresh and claim-source tokens p issued:
// those a browser must never see (ID tokens it may).
func opaqueTokens(p *testop.Provider) []string {
	var out []string
	for _, tok := range p.IssuedTokens() {
		if !strings.Contains(tok, ".") {
			out = append(out, tok)
		}
	}
	return out
}

// TestUserinfoClaimsJoinTheIdentity: claims only userinfo has reach
// {http.auth.user.<claim>} and the upstream; the ID token wins where both
// have a claim; {oidc.user.userinfo.*} is userinfo alone and
// {oidc.user.id_token} exactly the ID token; the oidc_userinfo variable
// drives matchers; /oauth2/userinfo has the userinfo object and no token.
func TestUserinfoClaimsJoinTheIdentity(t *testing.T) {
	p := newProvider(t, testop.Config{
		// A thin ID token without email, as Okta issues.
		Claims: map[string]any{"email": nil},
		UserinfoClaims: map[string]any{
			"email":      "alice@userinfo.example",
			"department": "R&D",
			"name":       "Alice (userinfo)",
			"address":    map[string]any{"country": "CH"},
		},
	})
	s, up := identitySite(t, p, "", `@rnd vars {oidc.user.userinfo.department} R&D
	@rndvar expression {http.vars.oidc_userinfo}.department == "R&D"
	handle /rnd {
		respond @rnd "R&D by placeholder" 200
		respond 403
	}
	handle /rndvar {
		respond @rndvar "R&D by variable" 200
		respond 403
	}`)
	b := newBrowser(t)
	b.signIn(s, "/")

	if p.UserinfoCalls() != 1 {
		t.Fatalf("%d userinfo calls at sign-in, want 1", p.UserinfoCalls())
	}
	hdr, _ := p.LastUserinfoRequest()
	if tok := strings.TrimPrefix(hdr.Get("Authorization"), "Bearer "); !p.ValidAccessToken(tok) {
		t.Errorf("userinfo was called with Authorization %.20q, not the user's access token", hdr.Get("Authorization"))
	}
	h := up.lastHeader()
	wantHeaders(t, h, map[string]string{
		"X-User-Id":          "user-1",
		"X-User-Email":       "[alice@userinfo.example]", // userinfo only
		"X-User-Department":  "[R&D]",                    // userinfo only
		"X-User-Name":        "Alice Example",            // the ID token wins
		"X-Userinfo-Name":    "Alice (userinfo)",
		"X-Userinfo-Country": "[CH]",
		"X-ID-Token-Email":   "[]",
		"X-ID-Token-Dept":    "[]",
	})
	var userinfo map[string]any
	if err := json.Unmarshal([]byte(h.Get("X-Userinfo")), &userinfo); err != nil || userinfo["department"] != "R&D" || userinfo["sub"] != "user-1" {
		t.Errorf("X-Userinfo = %q (%v)", h.Get("X-Userinfo"), err)
	}

	resp, body := b.fetch(s.url + "/oauth2/userinfo")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/oauth2/userinfo: %d %s", resp.StatusCode, body)
	}
	info := jsonBody(t, body)
	ui, _ := info["userinfo"].(map[string]any)
	idt, _ := info["idToken"].(map[string]any)
	if ui["department"] != "R&D" || ui["email"] != "alice@userinfo.example" || ui["name"] != "Alice (userinfo)" {
		t.Errorf("/oauth2/userinfo's userinfo = %v", ui)
	}
	raw, _ := info["rawIdToken"].(string)
	if want := decodeJWTClaims(t, raw); !reflect.DeepEqual(idt, want) || idt["department"] != nil {
		t.Errorf("/oauth2/userinfo's idToken %v is not the ID token's claims %v", idt, want)
	}
	// {oidc.user.id_token} is the ID token, claim for claim.
	var fromHeader map[string]any
	if err := json.Unmarshal([]byte(h.Get("X-ID-Token")), &fromHeader); err != nil || !reflect.DeepEqual(fromHeader, decodeJWTClaims(t, raw)) {
		t.Errorf("X-ID-Token = %q, not the ID token's claims", h.Get("X-ID-Token"))
	}
	assertNoSecrets(t, "/oauth2/userinfo", body, opaqueTokens(p)...)

	if resp, body := b.fetch(s.url + "/rnd"); resp.StatusCode != 200 {
		t.Errorf("vars matcher on {oidc.user.userinfo.department}: %d %q", resp.StatusCode, body)
	}
	if resp, body := b.fetch(s.url + "/rndvar"); resp.StatusCode != 200 {
		t.Errorf("expression matcher on the oidc_userinfo variable: %d %q", resp.StatusCode, body)
	}
}

// TestUserinfoSubjectMismatchRefusesSignIn: OpenID Connect Core 5.3.2;
// the answer is another user's, so nobody is signed in.
func TestUserinfoSubjectMismatchRefusesSignIn(t *testing.T) {
	p := newProvider(t, testop.Config{})
	p.SetUserinfoMisbehavior(testop.UserinfoOtherSubject)
	s, up := identitySite(t, p, "", "")
	b := newBrowser(t)
	resp, body := b.navigate(s.url + "/app")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "userinfo") || !strings.Contains(body, "another subject") {
		t.Fatalf("sign-in with another user's userinfo: %d %s", resp.StatusCode, body)
	}
	if resp, _ := b.fetch(s.url + "/oauth2/userinfo"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session exists after the refused sign-in: /oauth2/userinfo %d", resp.StatusCode)
	}
	if up.requests != 0 {
		t.Error("the upstream was reached")
	}
	if !strings.Contains(s.logs(), "userinfo refused at sign-in") {
		t.Error("the refusal is not logged")
	}
}

// TestUserinfoFailureFailsSignIn: a user's claims, and so the rules that
// read them, must not depend on whether the provider answered: a sign-in
// whose userinfo call fails gets a clear page and no session.
func TestUserinfoFailureFailsSignIn(t *testing.T) {
	for _, c := range []struct {
		m      testop.UserinfoMisbehavior
		status int
		says   string
	}{
		{testop.UserinfoServerError, http.StatusServiceUnavailable, "cannot be reached right now"},
		{testop.UserinfoUnauthorized, http.StatusUnauthorized, "refused the access token"},
		{testop.UserinfoNotJSON, http.StatusUnauthorized, "neither JSON nor a JWT"},
		{testop.UserinfoBadSignature, http.StatusUnauthorized, "signature does not verify"},
		{testop.UserinfoWrongAudience, http.StatusUnauthorized, "not for this client"},
	} {
		t.Run(c.m.String(), func(t *testing.T) {
			p := newProvider(t, testop.Config{})
			p.SetUserinfoMisbehavior(c.m)
			s, up := identitySite(t, p, "", "")
			b := newBrowser(t)
			resp, body := b.navigate(s.url + "/app")
			if resp.StatusCode != c.status || !strings.Contains(body, c.says) || !strings.Contains(body, "<h1>") {
				t.Fatalf("%d %s; want %d saying %q", resp.StatusCode, body, c.status, c.says)
			}
			if c.status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Error("a 503 without Retry-After")
			}
			if resp, _ := b.fetch(s.url + "/oauth2/userinfo"); resp.StatusCode != http.StatusUnauthorized || up.requests != 0 {
				t.Errorf("signed in after all: /oauth2/userinfo %d, upstream requests %d", resp.StatusCode, up.requests)
			}
			assertNoSecrets(t, "the error page", body, opaqueTokens(p)...)
			assertNoSecrets(t, "Caddy's log", s.logs(), opaqueTokens(p)...)
		})
	}
}

// TestSignedUserinfoIsAccepted: an application/jwt answer, verified with
// the provider's keys, gives its claims like a JSON one.
func TestSignedUserinfoIsAccepted(t *testing.T) {
	p := newProvider(t, testop.Config{UserinfoClaims: map[string]any{"department": "R&D"}})
	p.SetUserinfoSigned(true)
	s, up := identitySite(t, p, "", "")
	newBrowser(t).signIn(s, "/")
	wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Department": "[R&D]"})
	// The JWT's own claims are the answer's claims too.
	var ui map[string]any
	if err := json.Unmarshal([]byte(up.lastHeader().Get("X-Userinfo")), &ui); err != nil || ui["aud"] != p.ClientID() || ui["iss"] != p.Issuer() {
		t.Errorf("X-Userinfo = %q", up.lastHeader().Get("X-Userinfo"))
	}
}

// TestUserinfoOffOrAbsentMakesNoCall: `userinfo off`, or a provider
// without the endpoint: the ID token alone, and an empty userinfo.
func TestUserinfoOffOrAbsentMakesNoCall(t *testing.T) {
	for name, c := range map[string]struct {
		extra  string
		remove bool
	}{
		"userinfo off":         {"userinfo off", false},
		"no userinfo endpoint": {"", true},
	} {
		t.Run(name, func(t *testing.T) {
			p := newProvider(t, testop.Config{UserinfoClaims: map[string]any{"department": "R&D"}})
			if c.remove {
				p.RemoveUserinfoEndpoint()
			}
			s, up := identitySite(t, p, c.extra, "")
			b := newBrowser(t)
			b.signIn(s, "/")
			if p.UserinfoCalls() != 0 {
				t.Errorf("%d userinfo calls", p.UserinfoCalls())
			}
			wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Department": "[{http.auth.user.department}]", "X-Userinfo": "{}", "X-User-Email": "[alice@example.com]"})
			_, body := b.fetch(s.url + "/oauth2/userinfo")
			if ui, ok := jsonBody(t, body)["userinfo"].(map[string]any); !ok || len(ui) != 0 {
				t.Errorf("/oauth2/userinfo's userinfo = %v, want {}", jsonBody(t, body)["userinfo"])
			}
		})
	}
}

// TestUserinfoRefreshReadsItAgain: with `userinfo refresh`, a refresh of
// the tokens asks the userinfo endpoint again, and its new claims are the
// user's from that request on; with the default, a refresh does not.
func TestUserinfoRefreshReadsItAgain(t *testing.T) {
	for _, c := range []struct {
		mode      string
		calls     int
		wantDept  string
		wantAfter string
	}{
		{"refresh", 2, "[Sales]", "[Sales]"},
		{"on", 1, "[R&D]", "[R&D]"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			// Signed in with a token inside token_inject's refresh window.
			p := newProvider(t, testop.Config{AccessTokenTTL: 10 * time.Second, UserinfoClaims: map[string]any{"department": "R&D"}})
			s, up := identitySite(t, p, "userinfo "+c.mode, "token_inject")
			b := newBrowser(t)
			b.signIn(s, "/")
			wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Department": "[R&D]"})
			p.SetAccessTokenTTL(time.Hour)
			if err := p.SetUserinfoClaims(map[string]any{"department": "Sales"}); err != nil {
				t.Fatal(err)
			}

			req, _ := http.NewRequest(http.MethodGet, s.url+"/api", nil)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			if resp, body := b.do(req); resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if p.RefreshCalls() != 1 || p.UserinfoCalls() != c.calls {
				t.Fatalf("%d refreshes, %d userinfo calls; want 1, %d", p.RefreshCalls(), p.UserinfoCalls(), c.calls)
			}
			wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Department": c.wantDept})
			// The refreshed session is the browser's: the next request has
			// the same claims, without another refresh.
			b.fetch(s.url + "/later")
			wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Department": c.wantAfter})
			if p.RefreshCalls() != 1 {
				t.Errorf("%d refreshes", p.RefreshCalls())
			}
		})
	}
}

// TestClaimSourcesResolveIntoTheIdentity: with claim_sources, aggregated
// and distributed claims (OpenID Connect Core 5.6.2) named by the ID token
// or userinfo are read from their sources and join the userinfo claims;
// the sources' own tokens reach neither the browser nor the upstream.
// Without it, nothing is read.
func TestClaimSourcesResolveIntoTheIdentity(t *testing.T) {
	sources := []testop.ClaimSource{
		{Name: "directory", InIDToken: true, Claims: map[string]any{"groups": []string{"admins", "dev"}}},
		{Name: "graph", Distributed: true, OwnToken: true, InUserinfo: true, Claims: map[string]any{"roles": []string{"approver"}}},
		{Name: "hr", Distributed: true, AnswerJSON: true, InIDToken: true, Claims: map[string]any{"cost_center": "42"}},
	}
	for _, c := range []struct {
		extra                     string
		groups, roles, costCenter string
		calls                     int
	}{
		{"claim_sources", "[admins,dev]", "[approver]", "[42]", 1},
		{"", "[]", "[]", "[{http.auth.user.cost_center}]", 0},
	} {
		t.Run(fmt.Sprintf("%q", c.extra), func(t *testing.T) {
			p := newProvider(t, testop.Config{})
			if err := p.SetClaimSources(sources...); err != nil {
				t.Fatal(err)
			}
			s, up := identitySite(t, p, c.extra, "")
			b := newBrowser(t)
			b.signIn(s, "/")
			h := up.lastHeader()
			wantHeaders(t, h, map[string]string{
				"X-Userinfo-Groups":  c.groups,
				"X-Userinfo-Roles":   c.roles,
				"X-User-Cost-Center": c.costCenter,
			})
			if p.ClaimSourceCalls("graph") != c.calls || p.ClaimSourceCalls("hr") != c.calls {
				t.Errorf("source calls: graph %d, hr %d; want %d", p.ClaimSourceCalls("graph"), p.ClaimSourceCalls("hr"), c.calls)
			}
			_, body := b.fetch(s.url + "/oauth2/userinfo")
			assertNoSecrets(t, "/oauth2/userinfo", body, opaqueTokens(p)...)
			assertNoSecrets(t, "the upstream's X-Userinfo", h.Get("X-Userinfo"), opaqueTokens(p)...)
		})
	}
}

// TestClaimSourceFailureFailsSignIn: claims that cannot be read from their
// source are not left out; the sign-in fails.
func TestClaimSourceFailureFailsSignIn(t *testing.T) {
	p := newProvider(t, testop.Config{})
	if err := p.SetClaimSources(testop.ClaimSource{Name: "directory", InIDToken: true, BadSignature: true,
		Claims: map[string]any{"groups": []string{"admins"}}}); err != nil {
		t.Fatal(err)
	}
	s, _ := identitySite(t, p, "claim_sources", "")
	resp, body := newBrowser(t).navigate(s.url + "/")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "aggregated claims") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

// TestMultiTenantIssuerAdmitsConfiguredTenants: Entra's /common/v2.0
// names the issuer template {tenantid}; `tenants` admits tokens of the
// tenants named, `*` of any, and without it the provider is refused.
func TestMultiTenantIssuerAdmitsConfiguredTenants(t *testing.T) {
	const other = "22222222-2222-4222-8222-222222222222"
	p := newProvider(t, testop.Config{MultiTenant: true})

	t.Run("tenants "+testop.DefaultTenant, func(t *testing.T) {
		p.SetTenant(testop.DefaultTenant)
		s, up := identitySite(t, p, "tenants "+testop.DefaultTenant, "")
		newBrowser(t).signIn(s, "/")
		wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Tid": "[" + testop.DefaultTenant + "]"})

		p.SetTenant(other)
		resp, body := newBrowser(t).navigate(s.url + "/")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "tenant") || !strings.Contains(body, "not admitted") {
			t.Fatalf("a user of another tenant: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("tenants *", func(t *testing.T) {
		p.SetTenant(other)
		s, up := identitySite(t, p, "tenants *", "")
		newBrowser(t).signIn(s, "/")
		wantHeaders(t, up.lastHeader(), map[string]string{"X-User-Tid": "[" + other + "]"})
	})
	t.Run("no tenants", func(t *testing.T) {
		s, _ := identitySite(t, p, "", "")
		resp, body := newBrowser(t).navigate(s.url + "/")
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Sign-in is unavailable") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		logs := s.logs()
		if !strings.Contains(logs, "/{tenantid}/v2.0") || !strings.Contains(logs, "name the tenants") {
			t.Errorf("no log line names the issuer template and the remedy:\n%s", logs)
		}
	})
}
