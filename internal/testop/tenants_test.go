package testop

import (
	"net/http"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// newMultiTenantRP is newRP for a multi-tenant provider: go-oidc is told to
// accept the template its discovery names, and to leave iss to the test.
func newMultiTenantRP(t *testing.T, p *Provider) *rp {
	t.Helper()
	ctx := oidc.InsecureIssuerURLContext(t.Context(), p.IssuerTemplate())
	prov, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	r := &rp{
		op:       p,
		provider: prov,
		verifier: prov.Verifier(&oidc.Config{ClientID: p.ClientID(), SkipIssuerCheck: true}),
		conf: oauth2.Config{
			ClientID:     p.ClientID(),
			ClientSecret: p.ClientSecret(),
			Endpoint:     prov.Endpoint(),
			RedirectURL:  "http://127.0.0.1:1/callback",
			Scopes:       []string{oidc.ScopeOpenID},
		},
		noFollow: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
	return r
}

func TestMultiTenantDiscoveryLooksLikeEntraCommon(t *testing.T) {
	p := newOP(t, Config{MultiTenant: true})
	if p.Issuer() != p.issuer+"/common/v2.0" || p.IssuerTemplate() != p.issuer+"/{tenantid}/v2.0" || p.TenantIssuer("t1") != p.issuer+"/t1/v2.0" {
		t.Fatalf("issuers %s %s %s", p.Issuer(), p.IssuerTemplate(), p.TenantIssuer("t1"))
	}
	before := p.DiscoveryFetches()
	for issuer, want := range map[string]string{
		p.Issuer():                               p.IssuerTemplate(),
		p.issuer + "/organizations/v2.0":         p.IssuerTemplate(),
		p.issuer:                                 p.IssuerTemplate(),
		p.issuer + "/" + DefaultTenant + "/v2.0": p.TenantIssuer(DefaultTenant),
		p.issuer + "/t2/v2.0":                    p.TenantIssuer("t2"),
	} {
		doc := discovery(t, issuer)
		if doc["issuer"] != want || doc["token_endpoint"] != p.issuer+"/token" || doc["jwks_uri"] != p.issuer+"/keys" {
			t.Errorf("discovery at %s: issuer %v, token_endpoint %v, jwks_uri %v", issuer, doc["issuer"], doc["token_endpoint"], doc["jwks_uri"])
		}
	}
	if n := p.DiscoveryFetches() - before; n != 5 {
		t.Errorf("DiscoveryFetches counted %d of 5", n)
	}
	if resp, _ := getWithToken(t, p.issuer+"/t2/v1.0/.well-known/openid-configuration", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a v1.0 discovery path: %d", resp.StatusCode)
	}
}

// TestMultiTenantTokensCarryTheirTenant: tid and the tenant's issuer in ID
// tokens, refreshed ones, signed userinfo, aggregated claims and logout
// tokens; SetTenant chooses the tenant of the next sign-in, and a sign-in
// keeps its own.
func TestMultiTenantTokensCarryTheirTenant(t *testing.T) {
	p := newOP(t, Config{MultiTenant: true})
	r := newMultiTenantRP(t, p)
	first := r.mustLogin(t)
	idt := jwtClaims(t, first.rawIDToken)
	if idt["tid"] != DefaultTenant || idt["iss"] != p.TenantIssuer(DefaultTenant) {
		t.Fatalf("first sign-in: tid %v, iss %v", idt["tid"], idt["iss"])
	}
	if _, err := r.verifier.Verify(t.Context(), first.rawIDToken); err != nil {
		t.Fatal(err)
	}

	const other = "22222222-2222-4222-8222-222222222222"
	p.SetTenant(other)
	second := r.mustLogin(t)
	if c := jwtClaims(t, second.rawIDToken); c["tid"] != other || c["iss"] != p.TenantIssuer(other) {
		t.Errorf("after SetTenant: tid %v, iss %v", c["tid"], c["iss"])
	}
	_, raw := r.mustRefresh(t, first.token)
	if c := jwtClaims(t, raw); c["tid"] != DefaultTenant || c["iss"] != p.TenantIssuer(DefaultTenant) {
		t.Errorf("the first sign-in's refresh: tid %v, iss %v", c["tid"], c["iss"])
	}

	p.SetUserinfoSigned(true)
	_, body := userinfo(t, p, first.token.AccessToken)
	if c, err := verifyJWT(t, p, body); err != nil || c["tid"] != DefaultTenant || c["iss"] != p.TenantIssuer(DefaultTenant) {
		t.Errorf("signed userinfo of the first sign-in: %v %v", c, err)
	}
	if err := p.SetClaimSources(ClaimSource{Name: "s", Claims: map[string]any{"x": "y"}, InIDToken: true}); err != nil {
		t.Fatal(err)
	}
	_, sources := sourceRefs(jwtClaims(t, r.mustLogin(t).rawIDToken))
	if c := jwtClaims(t, sources["s"].(map[string]any)["JWT"].(string)); c["tid"] != other || c["iss"] != p.TenantIssuer(other) {
		t.Errorf("aggregated claims: tid %v, iss %v", c["tid"], c["iss"])
	}
	lt, err := p.LogoutToken("user-1", "")
	if err != nil {
		t.Fatal(err)
	}
	if c := jwtClaims(t, lt); c["tid"] != other || c["iss"] != p.TenantIssuer(other) {
		t.Errorf("logout token: tid %v, iss %v", c["tid"], c["iss"])
	}
}

func TestSingleTenantTokensHaveNoTid(t *testing.T) {
	p := newOP(t, Config{})
	p.SetTenant("ignored")
	l := newRP(t, p).mustLogin(t)
	if c := jwtClaims(t, l.rawIDToken); c["tid"] != nil || c["iss"] != p.Issuer() {
		t.Errorf("tid %v, iss %v", c["tid"], c["iss"])
	}
	if resp, _ := getWithToken(t, p.Issuer()+"/common/v2.0/.well-known/openid-configuration", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("tenant discovery of a single-tenant provider: %d", resp.StatusCode)
	}
}
