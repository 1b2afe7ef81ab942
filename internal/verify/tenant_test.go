package verify

import (
	"context"
	"crypto"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

const (
	commonIssuer   = "https://login.example/common/v2.0"
	issuerTemplate = "https://login.example/{tenantid}/v2.0"
	tenantA        = "aaaaaaaa-0000-4000-8000-00000000000a"
	tenantB        = "bbbbbbbb-0000-4000-8000-00000000000b"
)

func tenantIssuer(tid string) string { return strings.ReplaceAll(issuerTemplate, "{tenantid}", tid) }

// multiTenant makes f's verifier one of a multi-tenant provider that
// admits tenants.
func (f *fixture) multiTenant(tenants ...string) {
	f.v = New(Config{
		Issuer:         commonIssuer,
		IssuerTemplate: issuerTemplate,
		Tenants:        tenants,
		ClientID:       client,
		Keys:           &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&f.key.PublicKey}},
		Now:            func() time.Time { return f.now },
	})
}

// TestMultiTenantIssuerIsTheTenantsOwn: a token's iss must be the
// template with its own tid, and the tid admitted.
func TestMultiTenantIssuerIsTheTenantsOwn(t *testing.T) {
	f := newFixture(t)
	f.multiTenant(tenantA)
	ctx := context.Background()
	idt, err := f.v.IDToken(ctx, f.sign(map[string]any{"iss": tenantIssuer(tenantA), "tid": tenantA}, ""), "access", "n")
	if err != nil {
		t.Fatalf("a token of the admitted tenant: %v", err)
	}
	if idt.Issuer != tenantIssuer(tenantA) {
		t.Errorf("issuer %s", idt.Issuer)
	}
	for _, c := range []struct {
		name   string
		claims map[string]any
		reason string
	}{
		{"another tenant", map[string]any{"iss": tenantIssuer(tenantB), "tid": tenantB}, "tenant"},
		{"the issuer of another tenant", map[string]any{"iss": tenantIssuer(tenantB), "tid": tenantA}, "issuer"},
		{"the common issuer", map[string]any{"iss": commonIssuer, "tid": tenantA}, "issuer"},
		{"the template itself", map[string]any{"iss": issuerTemplate, "tid": tenantA}, "issuer"},
		{"another provider's issuer", map[string]any{"iss": "https://evil.example/" + tenantA + "/v2.0", "tid": tenantA}, "issuer"},
		{"no tid", map[string]any{"iss": tenantIssuer(tenantA)}, "issuer"},
		{"a tid with a slash", map[string]any{"iss": tenantIssuer(tenantA + "/x"), "tid": tenantA + "/x"}, "issuer"},
		{"a tid that is the placeholder", map[string]any{"iss": issuerTemplate, "tid": "{tenantid}"}, "issuer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.v.IDToken(ctx, f.sign(c.claims, ""), "access", "n")
			wantReason(t, err, c.reason)
		})
	}
}

func TestMultiTenantStarAdmitsEveryTenant(t *testing.T) {
	f := newFixture(t)
	f.multiTenant("*")
	ctx := context.Background()
	for _, tid := range []string{tenantA, tenantB} {
		if _, err := f.v.IDToken(ctx, f.sign(map[string]any{"iss": tenantIssuer(tid), "tid": tid}, ""), "access", "n"); err != nil {
			t.Errorf("tenant %s: %v", tid, err)
		}
	}
	// Whatever the tenant, iss must still be its own.
	_, err := f.v.IDToken(ctx, f.sign(map[string]any{"iss": tenantIssuer(tenantB), "tid": tenantA}, ""), "access", "n")
	wantReason(t, err, "issuer")
	f.multiTenant() // none: nobody
	_, err = f.v.IDToken(ctx, f.sign(map[string]any{"iss": tenantIssuer(tenantA), "tid": tenantA}, ""), "access", "n")
	wantReason(t, err, "tenant")
}

// TestMultiTenantChecksOfRefreshedAndLogoutTokens: the tenant rules hold
// for every kind of token; a refresh keeps the session's tenant.
func TestMultiTenantChecksOfRefreshedAndLogoutTokens(t *testing.T) {
	f := newFixture(t)
	f.multiTenant(tenantA, tenantB)
	ctx := context.Background()
	ofA := map[string]any{"iss": tenantIssuer(tenantA), "tid": tenantA, "nonce": nil}
	ofB := map[string]any{"iss": tenantIssuer(tenantB), "tid": tenantB, "nonce": nil}
	session := Identity{Issuer: tenantIssuer(tenantA), Subject: "user", Audience: []string{client}}
	if _, err := f.v.RefreshedIDToken(ctx, f.sign(ofA, ""), "access", session); err != nil {
		t.Fatalf("refreshed in the same tenant: %v", err)
	}
	_, err := f.v.RefreshedIDToken(ctx, f.sign(ofB, ""), "access", session)
	wantReason(t, err, "issuer")

	logout := map[string]any{"jti": "j", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}}
	if _, err := f.v.LogoutToken(ctx, f.sign(merge(logout, ofB), "logout+jwt")); err != nil {
		t.Fatalf("a logout token of an admitted tenant: %v", err)
	}
	_, err = f.v.LogoutToken(ctx, f.sign(merge(logout, map[string]any{"iss": tenantIssuer(tenantA), "tid": tenantB, "nonce": nil}), "logout+jwt"))
	wantReason(t, err, "issuer")
	f.multiTenant(tenantA)
	_, err = f.v.LogoutToken(ctx, f.sign(merge(logout, ofB), "logout+jwt"))
	wantReason(t, err, "tenant")
}
