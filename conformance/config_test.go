package conformance

// The Config plan, oidcc-client-config-certification-test-plan:
// response_type=code. Its idtoken-sig-none module is the Basic plan's
// (TestOIDCCClientTestIdtokenSigNone, in basic_test.go).

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// TestOIDCCClientTestDiscoveryOpenidConfig:
// oidcc-client-test-discovery-openid-config
// (rp-discovery-openid-configuration). The suite passes the module at the
// first discovery request. caddy-oidc discovers when Caddy starts, before
// any browser comes, at <issuer>.well-known/openid-configuration for an
// issuer with a trailing slash; the sign-in then works.
func TestOIDCCClientTestDiscoveryOpenidConfig(t *testing.T) {
	m := startModule(t, configPlan, moduleOptions{})
	for deadline := time.Now().Add(5 * time.Second); m.op.DiscoveryFetches() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("Caddy started without asking for the discovery document")
		}
	}
	if got := m.op.Requests(); got[0] != "discovery" {
		t.Fatalf("requests %v, want discovery first", got)
	}
	b := newBrowser(t)
	m.signIn(b)
	m.assertAccepted(b, 1)
}

// TestOIDCCClientTestDiscoveryJwksUriKeys:
// oidcc-client-test-discovery-jwks-uri-keys (rp-discovery-jwks_uri-keys).
// The discovery document's jwks_uri is a random path, and the usual one is
// not served. The suite fails the module at a request to the
// authorization, token, JWKS or userinfo endpoint before a discovery
// request, and at a userinfo request before a JWKS request; it passes it
// once both the discovery and the JWKS requests have come.
func TestOIDCCClientTestDiscoveryJwksUriKeys(t *testing.T) {
	m := startModule(t, configPlan, moduleOptions{beforeSite: func(op *testop.Provider) {
		op.MoveKeys("jwks" + randomLetters(10))
	}})
	b := newBrowser(t)
	m.signIn(b)
	m.assertAccepted(b, 1)
	got := m.op.Requests()
	first := func(name string) int { return slices.Index(got, name) }
	if first("discovery") != 0 {
		t.Errorf("requests %v, want discovery first", got)
	}
	if first("jwks") < 0 || first("userinfo") < first("jwks") {
		t.Errorf("requests %v, want the keys fetched from jwks_uri before userinfo", got)
	}
	if slices.Contains(got, "/keys") {
		t.Errorf("requests %v: the usual JWKS path was asked for", got)
	}
}

// randomLetters returns n random lowercase letters, as the suite's random
// jwks_uri ends with.
func randomLetters(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + rand.IntN(26))
	}
	return string(b)
}

// TestOIDCCClientTestDiscoveryIssuerMismatch:
// oidcc-client-test-discovery-issuer-mismatch
// (rp-discovery-issuer-not-matching-config). The discovery document's
// issuer is the real one with "INVALID" appended. The relying party must
// stop (OpenID Connect Discovery 4.3): the suite fails the module at an
// authorization request and passes it waitTimeoutSeconds after a discovery
// request with nothing following.
func TestOIDCCClientTestDiscoveryIssuerMismatch(t *testing.T) {
	m := startModule(t, configPlan, moduleOptions{beforeSite: func(op *testop.Provider) {
		must(t, op.ChangeDiscovery(map[string]any{"issuer": op.Issuer() + "INVALID"}))
	}})
	b := newBrowser(t)
	resp, body := b.navigate(m.site.url + "/")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "Sign-in is unavailable") || resp.Request.URL.Host != strings.TrimPrefix(m.site.url, "http://") {
		t.Fatalf("navigation: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	if m.op.LastAuthorizeRequest() != nil {
		t.Error("the browser was sent to the authorization endpoint")
	}
	for _, r := range m.op.Requests() {
		if r != "discovery" {
			t.Errorf("requests %v: only discovery may come", m.op.Requests())
			break
		}
	}
	if !strings.Contains(m.site.logs(), "the discovery document names issuer") {
		t.Error("the log does not say why the provider is refused")
	}
}

// TestOIDCCClientTestSigningKeyRotationJustBeforeSigning:
// oidcc-client-test-signing-key-rotation-just-before-signing
// (rp-key-rotation-op-sign-key-native). The provider makes a new key set
// (new kids) right before it signs the ID token, so keys fetched before
// no longer verify it; the relying party must fetch them again for the
// unknown kid. A freshly started Caddy has no keys until it verifies that
// token, so here it first signs in another browser (as a Caddy that ran
// the previous module would hold that module's keys).
func TestOIDCCClientTestSigningKeyRotationJustBeforeSigning(t *testing.T) {
	m := startModule(t, configPlan, moduleOptions{})
	m.signIn(newBrowser(t))
	if m.op.KeyFetches() != 1 {
		t.Fatalf("%d key fetches after the first sign-in", m.op.KeyFetches())
	}
	arrived, resume := m.op.PauseTokenEndpoint()
	defer resume()
	b := newBrowser(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, body := b.navigate(m.site.url + "/")
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, subject) {
			t.Errorf("sign-in across the rotation: %d %s", resp.StatusCode, body)
		}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no token request")
	}
	m.op.RotateKeys(false)
	resume()
	<-done
	if t.Failed() {
		return
	}
	m.assertAccepted(b, 2)
	if n := m.op.KeyFetches(); n != 2 {
		t.Errorf("%d key fetches, want 2: the new kid must make the keys be fetched again", n)
	}
}

// TestOIDCCClientTestSigningKeyRotation: oidcc-client-test-signing-key-rotation
// (rp-key-rotation-op-sign-key). Two sign-ins in one module; at the second
// authorization request the provider makes a new key set, so the second
// ID token names a kid the relying party has not seen. The suite passes
// the module once a second userinfo call and a second JWKS request have
// come.
func TestOIDCCClientTestSigningKeyRotation(t *testing.T) {
	m := startModule(t, configPlan, moduleOptions{})
	b := newBrowser(t)
	m.signIn(b)
	m.assertAccepted(b, 1)
	m.op.RotateKeys(false)
	resp, body := b.navigate(m.site.url + "/oauth2/login?rd=/")
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != m.site.url+"/" || !strings.Contains(body, subject) {
		t.Fatalf("second sign-in: %d at %s: %s", resp.StatusCode, resp.Request.URL, body)
	}
	m.assertAccepted(b, 2)
	got := m.op.Requests()
	jwks, userinfo := 0, 0
	for _, r := range got {
		switch r {
		case "jwks":
			jwks++
		case "userinfo":
			userinfo++
			if userinfo == 2 && jwks < 2 {
				t.Errorf("requests %v: the second userinfo call came before the second key fetch", got)
			}
		}
	}
	if jwks != 2 || userinfo != 2 {
		t.Errorf("requests %v: want two key fetches and two userinfo calls", got)
	}
}
