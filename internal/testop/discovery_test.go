package testop

import (
	"net/http"
	"strings"
	"testing"
)

func TestChangeDiscovery(t *testing.T) {
	p := newOP(t, Config{})
	if err := p.ChangeDiscovery(map[string]any{"issuer": "https://elsewhere.example", "end_session_endpoint": nil}); err != nil {
		t.Fatal(err)
	}
	if err := p.ChangeDiscovery(map[string]any{"x_extra": []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	doc := discovery(t, p.Issuer())
	if doc["issuer"] != "https://elsewhere.example" || doc["x_extra"].([]any)[0] != "a" || doc["token_endpoint"] != p.Issuer()+"/token" {
		t.Errorf("changed document: %v", doc)
	}
	if _, ok := doc["end_session_endpoint"]; ok {
		t.Error("a field mapped to nil is still there")
	}
	// Only the document changed.
	if resp, _ := getWithToken(t, p.Issuer()+"/end_session", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("end_session: %d", resp.StatusCode)
	}
	p.RestoreDiscovery()
	if doc := discovery(t, p.Issuer()); doc["issuer"] != p.Issuer() || doc["x_extra"] != nil || doc["end_session_endpoint"] == nil {
		t.Errorf("restored document: %v", doc)
	}
	if err := p.ChangeDiscovery(map[string]any{"bad": make(chan int)}); err == nil {
		t.Error("a field that is not JSON was accepted")
	}
}

// TestMoveKeys: the JWKS moves, discovery follows, the old path answers
// 404, fetches at the new path count.
func TestMoveKeys(t *testing.T) {
	p := newOP(t, Config{})
	l := newRP(t, p).mustLogin(t)
	moved := p.MoveKeys("second")
	if moved != p.Issuer()+"/jwks/second" || discovery(t, p.Issuer())["jwks_uri"] != moved {
		t.Fatalf("MoveKeys returned %s, discovery says %v", moved, discovery(t, p.Issuer())["jwks_uri"])
	}
	before := p.KeyFetches()
	if _, err := verifyJWT(t, p, l.rawIDToken); err != nil {
		t.Fatalf("with the keys at the new path: %v", err)
	}
	for path, want := range map[string]int{"/keys": 404, "/jwks/other": 404, "/jwks/second": 200} {
		if resp, _ := getWithToken(t, p.Issuer()+path, ""); resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	if n := p.KeyFetches() - before; n != 2 {
		t.Errorf("KeyFetches counted %d fetches at the new path, want 2", n)
	}
	if p.MoveKeys("") != p.Issuer()+"/keys" {
		t.Error("MoveKeys(\"\") does not move the keys back")
	}
	if resp, _ := getWithToken(t, p.Issuer()+"/keys", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("/keys after moving back: %d", resp.StatusCode)
	}
}

// TestIssuerPath: an issuer like the conformance suite's, with a path and
// a trailing slash; endpoints below it without a double slash; nothing
// outside it.
func TestIssuerPath(t *testing.T) {
	p := newOP(t, Config{IssuerPath: "/test/a/alias/"})
	if !strings.HasSuffix(p.Issuer(), "/test/a/alias/") {
		t.Fatalf("issuer %s", p.Issuer())
	}
	doc := discovery(t, strings.TrimSuffix(p.Issuer(), "/"))
	if doc["issuer"] != p.Issuer() || doc["token_endpoint"] != p.Issuer()+"token" || doc["jwks_uri"] != p.Issuer()+"keys" {
		t.Errorf("discovery %v", doc)
	}
	r := newRP(t, p) // go-oidc checks the document's issuer
	l := r.mustLogin(t)
	if c := jwtClaims(t, l.rawIDToken); c["iss"] != p.Issuer() {
		t.Errorf("iss %v", c["iss"])
	}
	if _, err := r.verifier.Verify(t.Context(), l.rawIDToken); err != nil {
		t.Errorf("verifying with the keys at the issuer's path: %v", err)
	}
	origin := strings.TrimSuffix(p.Issuer(), "/test/a/alias/")
	if resp, _ := getWithToken(t, origin+"/.well-known/openid-configuration", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("discovery outside the issuer's path: %d", resp.StatusCode)
	}
}
