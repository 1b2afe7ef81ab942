package conformance

// The Basic plan, oidcc-client-basic-certification-test-plan:
// response_type=code, client_secret_basic. Each module accepted is PASSED
// by the suite at the userinfo call; each refused, by no userinfo call
// within waitTimeoutSeconds of the token response.

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// TestOIDCCClientTest: oidcc-client-test (rp-response_type-code). The
// provider is as always; the relying party signs in with the code flow,
// client_secret_basic, and calls userinfo. The suite also warns about a
// nonce longer than 43 characters or with characters outside A-Z a-z 0-9
// - _ . ~.
func TestOIDCCClientTest(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{})
	b := newBrowser(t)
	m.signIn(b)

	authz := m.op.LastAuthorizeRequest()
	if authz.Get("response_type") != "code" || !slices.Contains(strings.Fields(authz.Get("scope")), "openid") ||
		authz.Get("client_id") != clientID || authz.Get("redirect_uri") != m.site.url+"/oauth2/callback" {
		t.Errorf("authorization request %v", authz)
	}
	if n := authz.Get("nonce"); !regexp.MustCompile(`^[A-Za-z0-9._~-]{1,43}$`).MatchString(n) {
		t.Errorf("nonce %q: the suite warns about more than 43 characters or others than A-Z a-z 0-9 - _ . ~", n)
	}
	if authz.Get("code_challenge_method") != "S256" || authz.Get("code_challenge") == "" || authz.Get("state") == "" {
		t.Errorf("authorization request without PKCE S256 or state: %v", authz)
	}
	form, hdr := m.op.LastTokenRequest()
	wantBasic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(clientSecret)))
	if hdr.Get("Authorization") != wantBasic || form.Has("client_secret") || form.Has("client_assertion") {
		t.Errorf("token request: Authorization %q, form %v; want client_secret_basic", hdr.Get("Authorization"), form)
	}
	if form.Get("redirect_uri") != authz.Get("redirect_uri") || form.Get("grant_type") != "authorization_code" {
		t.Errorf("token request form %v", form)
	}
	m.assertAccepted(b, 1)
}

// TestOIDCCClientTestInvalidIss: oidcc-client-test-invalid-iss
// (rp-id_token-issuer-mismatch). The ID token's iss is the issuer with "1"
// appended, correctly signed.
func TestOIDCCClientTestInvalidIss(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{editIDTokens: func(c map[string]any, _ bool) {
		c["iss"] = c["iss"].(string) + "1"
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	m.assertRefused(b, resp, body, http.StatusUnauthorized, "issued by a different provider")
}

// TestOIDCCClientTestMissingSub: oidcc-client-test-missing-sub
// (rp-id_token-sub). The ID token has no sub.
func TestOIDCCClientTestMissingSub(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{editIDTokens: func(c map[string]any, _ bool) {
		delete(c, "sub")
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	m.assertRefused(b, resp, body, http.StatusUnauthorized, "the token has no sub claim")
}

// TestOIDCCClientTestInvalidAud: oidcc-client-test-invalid-aud
// (rp-id_token-aud). The ID token's aud is the client_id with "1"
// appended, one string.
func TestOIDCCClientTestInvalidAud(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{editIDTokens: func(c map[string]any, _ bool) {
		c["aud"] = clientID + "1"
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	m.assertRefused(b, resp, body, http.StatusUnauthorized, "audience")
}

// TestOIDCCClientTestMissingIat: oidcc-client-test-missing-iat
// (rp-id_token-iat). The ID token has no iat; exp is still there.
func TestOIDCCClientTestMissingIat(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{editIDTokens: func(c map[string]any, _ bool) {
		delete(c, "iat")
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	m.assertRefused(b, resp, body, http.StatusUnauthorized, "the token has no iat claim")
}

// TestOIDCCClientTestKidAbsentSingleJwks:
// oidcc-client-test-kid-absent-single-jwks
// (rp-id_token-kid-absent-single-jwks). The JWKS has one signing key of
// each type (RSA, EC P-256, EC secp256k1, Ed25519) and no kid on any of
// them, plus the encryption keys; the ID token names no kid. The relying
// party must verify with the one RSA key (skipping the secp256k1 key it
// cannot read) and sign the user in. The suite has no timer here: a
// refusal would leave the module waiting, not passed.
func TestOIDCCClientTestKidAbsentSingleJwks(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{beforeSite: func(op *testop.Provider) {
		must(t, op.PublishKeySet(testop.KeySet{RSA: 1, EC: 1, Secp256k1: 1, Ed25519: 1, Encryption: true, NoKeyIDs: true}))
	}})
	b := newBrowser(t)
	m.signIn(b)
	if h := jwtPart(t, m.idTokens()[0], 0); h["kid"] != nil {
		t.Fatalf("the ID token names kid %v", h["kid"])
	}
	m.assertAccepted(b, 1)
	if n := m.op.KeyFetches(); n != 1 {
		t.Errorf("the keys were fetched %d times, want once (the unreadable key must not make the set fail)", n)
	}
}

// TestOIDCCClientTestKidAbsentMultipleJwks:
// oidcc-client-test-kid-absent-multiple-jwks
// (rp-id_token-kid-absent-multiple-jwks). Three signing keys of each type,
// none with a kid; the ID token is signed by one of the three RSA keys and
// names none. The suite passes the module whether the relying party
// refuses the token (it cannot tell which key) or tries the keys until one
// verifies and calls userinfo. caddy-oidc refuses (OpenID Connect Core
// 10.1: a kid is required when several keys fit).
func TestOIDCCClientTestKidAbsentMultipleJwks(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{beforeSite: func(op *testop.Provider) {
		must(t, op.PublishKeySet(testop.KeySet{RSA: 3, EC: 3, Secp256k1: 3, Ed25519: 3, Encryption: true, NoKeyIDs: true}))
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	m.assertRefused(b, resp, body, http.StatusUnauthorized, "names no signing key (kid) and the provider publishes several that fit")
}

// TestOIDCCClientTestIdtokenSigRs256: oidcc-client-test-idtoken-sig-rs256
// (rp-id_token-sig-rs256). Discovery announces RS256 only; the ID token is
// RS256.
func TestOIDCCClientTestIdtokenSigRs256(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{beforeSite: func(op *testop.Provider) {
		must(t, op.ChangeDiscovery(map[string]any{"id_token_signing_alg_values_supported": []string{"RS256"}}))
	}})
	b := newBrowser(t)
	m.signIn(b)
	if h := jwtPart(t, m.idTokens()[0], 0); h["alg"] != "RS256" || h["kid"] == nil {
		t.Errorf("ID token header %v", h)
	}
	m.assertAccepted(b, 1)
}

// TestOIDCCClientTestIdtokenSigNone: oidcc-client-test-idtoken-sig-none
// (rp-id_token-sig-none), in the Basic and the Config plan. The ID token
// from the token endpoint is unsigned ({"alg":"none"}, empty signature)
// and has no at_hash, while discovery announces "none" among the
// algorithms. A code-flow relying party may accept it (the suite then
// passes at the userinfo call) or refuse it (the suite then reports
// SKIPPED, "clients are not required to support unsigned id_tokens",
// which certification accepts). caddy-oidc refuses: "none" is never among
// signing_algs.
func TestOIDCCClientTestIdtokenSigNone(t *testing.T) {
	for _, pl := range []plan{basicPlan, configPlan} {
		t.Run(map[plan]string{basicPlan: "basic", configPlan: "config"}[pl], func(t *testing.T) {
			m := startModule(t, pl, moduleOptions{
				beforeSite: func(op *testop.Provider) { op.SetMisbehavior(testop.AlgNone) },
				editIDTokens: func(c map[string]any, _ bool) {
					delete(c, "at_hash")
				},
			})
			b := newBrowser(t)
			resp, body := b.navigate(m.site.url + "/")
			if h := jwtPart(t, m.idTokens()[0], 0); h["alg"] != "none" {
				t.Fatalf("ID token header %v", h)
			}
			m.assertRefused(b, resp, body, http.StatusUnauthorized, `unsigned (alg "none")`)
		})
	}
}

// TestOIDCCClientTestInvalidSigRs256: oidcc-client-test-invalid-sig-rs256
// (rp-id_token-bad-sig-rs256). Discovery announces RS256 only; the ID
// token's signature is corrupted, its kid names a published key. OpenID
// Connect Core 3.1.3.7 lets a code-flow client skip the signature check
// of an ID token from the token endpoint (the suite then reports SKIPPED);
// caddy-oidc always checks, and refuses.
func TestOIDCCClientTestInvalidSigRs256(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{beforeSite: func(op *testop.Provider) {
		must(t, op.ChangeDiscovery(map[string]any{"id_token_signing_alg_values_supported": []string{"RS256"}}))
		op.SetMisbehavior(testop.BadSignature)
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	m.assertRefused(b, resp, body, http.StatusUnauthorized, "the signature does not verify")
}

// TestOIDCCClientTestUserinfoInvalidSub: oidcc-client-test-userinfo-invalid-sub
// (rp-userinfo-bad-sub-claim). The userinfo answer's sub is the user's
// with "invalid" appended; the ID token is correct. The suite passes the
// module at the userinfo call, since it cannot see what the relying party
// does with the answer: refusing it (OpenID Connect Core 5.3.2) is the
// relying party's to show. caddy-oidc refuses the sign-in.
func TestOIDCCClientTestUserinfoInvalidSub(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{beforeSite: func(op *testop.Provider) {
		op.SetUserinfoMisbehavior(testop.UserinfoOtherSubject)
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	if m.op.UserinfoCalls() != 1 {
		t.Fatalf("%d userinfo calls, want 1 (the suite ends the module there)", m.op.UserinfoCalls())
	}
	if resp.StatusCode != http.StatusUnauthorized || resp.Request.URL.Path != "/oauth2/callback" ||
		!strings.Contains(body, "userinfo answer was refused") || !strings.Contains(body, "another subject") {
		t.Fatalf("sign-in with another subject at userinfo: %d at %s: %s", resp.StatusCode, resp.Request.URL.Path, body)
	}
	if b.hasSession(m.site) {
		t.Error("a session cookie was set")
	}
	if resp, _ := b.fetch(m.site.url + "/api/me"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the site after the refused sign-in: %d, want 401", resp.StatusCode)
	}
}

// TestOIDCCClientTestNonceInvalid: oidcc-client-test-nonce-invalid
// (rp-nonce-invalid). The ID token's nonce is the request's with "1"
// appended.
func TestOIDCCClientTestNonceInvalid(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{editIDTokens: func(c map[string]any, _ bool) {
		n, _ := c["nonce"].(string)
		if n == "" {
			n = "null"
		}
		c["nonce"] = n + "1"
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	m.assertRefused(b, resp, body, http.StatusUnauthorized, "the nonce does not match this sign-in")
}

// TestOIDCCClientTestScopeUserinfoClaims:
// oidcc-client-test-scope-userinfo-claims (rp-scope-userinfo-claims). The
// authorization request must ask for profile, email, phone or address (the
// suite fails the module at once otherwise); userinfo answers the claims
// of the scopes granted. The user's claims reach the site.
func TestOIDCCClientTestScopeUserinfoClaims(t *testing.T) {
	m := startModule(t, basicPlan, moduleOptions{})
	b := newBrowser(t)
	m.signIn(b)
	scopes := strings.Fields(m.op.LastAuthorizeRequest().Get("scope"))
	if !slices.ContainsFunc(scopes, func(s string) bool { return slices.Contains([]string{"profile", "email", "phone", "address"}, s) }) {
		t.Fatalf("scope %v asks for none of profile, email, phone, address", scopes)
	}
	m.assertAccepted(b, 1)
	if got := m.up.lastHeader().Get("X-Given-Name"); got != "Demo" {
		t.Errorf("{http.auth.user.given_name} upstream: %q, want userinfo's", got)
	}
	resp, body := b.fetch(m.site.url + "/oauth2/userinfo")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"given_name":"Demo"`) || !strings.Contains(body, `"email":"user@example.com"`) {
		t.Errorf("/oauth2/userinfo: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, "phone_number") {
		t.Errorf("/oauth2/userinfo has a claim of a scope not asked for: %s", body)
	}
}

// TestOIDCCClientTestClientSecretBasic: oidcc-client-test-client-secret-basic
// (rp-token_endpoint-client_secret_basic). Discovery announces only
// client_secret_basic; the token request must authenticate with it: HTTP
// Basic of the form-encoded client_id and secret (RFC 6749 2.3.1), here a
// secret that form encoding changes.
func TestOIDCCClientTestClientSecretBasic(t *testing.T) {
	const secret = "s3cr3t:with/slash+plus%percent&amp=equals-and-32-bytes"
	m := startModule(t, basicPlan, moduleOptions{clientSecret: secret})
	b := newBrowser(t)
	m.signIn(b)
	form, hdr := m.op.LastTokenRequest()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(secret)))
	if hdr.Get("Authorization") != want || form.Has("client_secret") || m.op.LastTokenAuthMethod() != testop.ClientSecretBasic {
		t.Errorf("token request: Authorization %q, form %v", hdr.Get("Authorization"), form)
	}
	m.assertAccepted(b, 1)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
