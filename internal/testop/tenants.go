package testop

// Multi-tenant mode (Config.MultiTenant) looks like Microsoft Entra ID's
// /common/v2.0 endpoint: a relying party configures the issuer
// http://127.0.0.1:PORT/common/v2.0, whose discovery document names the
// issuer template http://127.0.0.1:PORT/{tenantid}/v2.0; every token
// carries the tid of the tenant the user signed in with and that tenant's
// issuer, the template with the tid. /<tid>/v2.0 serves a tenant's own
// discovery document, with its issuer.

// DefaultTenant is the tenant of sign-ins until SetTenant names another.
const DefaultTenant = "11111111-1111-4111-8111-111111111111"

// commonTenants are the names of Entra's multi-tenant endpoints, whose
// discovery documents name the template rather than a tenant's issuer.
var commonTenants = map[string]bool{"common": true, "organizations": true, "consumers": true}

// SetTenant makes sign-ins from now on sign in users of tenant tid (in
// multi-tenant mode). A sign-in's tenant is decided when its first ID token
// is issued; its refreshes and its userinfo keep it.
func (p *Provider) SetTenant(tid string) {
	p.mu.Lock()
	p.x.tenant = tid
	p.mu.Unlock()
}

// TenantIssuer is the issuer of tenant tid's tokens in multi-tenant mode.
func (p *Provider) TenantIssuer(tid string) string { return p.endpoint("/" + tid + "/v2.0") }

// IssuerTemplate is the issuer that multi-tenant discovery names.
func (p *Provider) IssuerTemplate() string { return p.endpoint("/{tenantid}/v2.0") }

// configuredIssuer is the issuer a relying party is configured with.
func (p *Provider) configuredIssuer() string {
	if p.cfg.MultiTenant {
		return p.endpoint("/common/v2.0")
	}
	return p.issuer
}

// setTenant gives the claims of a token of tenant tid ("": of sign-ins
// from now on) its iss and tid, in multi-tenant mode.
func (p *Provider) setTenant(c map[string]any, tid string) {
	if !p.cfg.MultiTenant {
		return
	}
	if tid == "" {
		p.mu.Lock()
		tid = p.x.tenant
		p.mu.Unlock()
	}
	c["iss"] = p.TenantIssuer(tid)
	c["tid"] = tid
}

// grantTenant returns the tenant of the sign-in sid, deciding it at its
// first ID token, and remembers it as the tenant of accessToken; "" when
// not multi-tenant.
func (p *Provider) grantTenant(sid, accessToken string) string {
	if !p.cfg.MultiTenant {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	tid, ok := p.x.tenantOfGrant[sid]
	if !ok {
		tid = p.x.tenant
		p.x.tenantOfGrant[sid] = tid
	}
	p.x.tenantOfToken[accessToken] = tid
	return tid
}

// tokenTenant returns the tenant accessToken was issued in, or "" for the
// tenant of sign-ins from now on.
func (p *Provider) tokenTenant(accessToken string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.x.tenantOfToken[accessToken]
}
