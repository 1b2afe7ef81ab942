package testop

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
)

// extras is the provider's state for the features of userinfo.go,
// claimsources.go, tenants.go and this file. It is guarded by Provider.mu.
type extras struct {
	// userinfo.go
	userinfoClaims    map[string]any // over the ID token's email and name; nil values remove
	userinfoMode      UserinfoMisbehavior
	userinfoSigned    bool
	noUserinfo        bool
	userinfoCalls     int
	lastUserinfoHdr   http.Header
	lastUserinfoQuery url.Values

	// claimsources.go
	sources     []ClaimSource
	sourceToken map[string]string // a source's own access token, by source name
	sourceCalls map[string]int

	// tenants.go
	tenant        string            // of sign-ins from now on
	tenantOfGrant map[string]string // by the grant's sid
	tenantOfToken map[string]string // by access token

	// this file
	discovery map[string]any // changes to the discovery document
	keysPath  string         // where the JWKS is served; "" for /keys

	keys   keyState        // keysets.go
	suite  suiteState      // conformance.go
	logout endSessionState // endsession.go
}

// extend sets up the state and the routes of the extra features; New calls
// it before the server starts.
func (p *Provider) extend(mux *http.ServeMux) error {
	if p.cfg.UserinfoClaims != nil {
		c, err := copyClaims(p.cfg.UserinfoClaims)
		if err != nil {
			return fmt.Errorf("testop: userinfo claims: %w", err)
		}
		p.x.userinfoClaims = c
	}
	p.cfg.UserinfoClaims = nil // the live copy is p.x.userinfoClaims
	p.x.tenant = DefaultTenant
	p.x.tenantOfGrant = map[string]string{}
	p.x.tenantOfToken = map[string]string{}
	p.x.sourceToken = map[string]string{}
	p.x.sourceCalls = map[string]int{}
	mux.HandleFunc("GET /jwks/{name}", p.handleKeys)
	mux.HandleFunc("/claims/{name}", p.handleClaimSource)
	mux.HandleFunc("GET /check_session", p.handleCheckSession)
	if p.cfg.MultiTenant {
		mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", p.handleDiscovery)
	}
	return nil
}

// copyClaims deep-copies claims through JSON, keeping nil values (which
// mean "remove") and numbers exact.
func copyClaims(in map[string]any) (map[string]any, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("claims are not JSON-encodable: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var out map[string]any
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	if out == nil {
		out = map[string]any{}
	}
	return out, nil
}

// ChangeDiscovery changes the discovery document from now on: each field is
// set to its value, over the changes made before; a field mapped to nil is
// left out. Only the document changes, not what the provider serves (for
// that, see MoveKeys and RemoveUserinfoEndpoint), so that a relying party
// that reads the document again can be seen to follow it, and one that
// checks it to refuse it (an "issuer" of another provider, say).
func (p *Provider) ChangeDiscovery(fields map[string]any) error {
	c, err := copyClaims(fields)
	if err != nil {
		return fmt.Errorf("testop: discovery fields: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.x.discovery == nil {
		p.x.discovery = map[string]any{}
	}
	maps.Copy(p.x.discovery, c)
	return nil
}

// RestoreDiscovery undoes every ChangeDiscovery.
func (p *Provider) RestoreDiscovery() {
	p.mu.Lock()
	p.x.discovery = nil
	p.mu.Unlock()
}

// MoveKeys serves the JWKS at /jwks/<name> from now on, and discovery's
// jwks_uri says so; the path it was served at before answers 404. name
// must be one path segment; "" moves the JWKS back to /keys. It returns the
// new jwks_uri. KeyFetches counts fetches at the new path.
func (p *Provider) MoveKeys(name string) string {
	path := "/keys"
	if name != "" {
		path = "/jwks/" + name
	}
	p.mu.Lock()
	p.x.keysPath = path
	p.mu.Unlock()
	return p.endpoint(path)
}

// keysPathLocked is where the JWKS is served; p.mu must be held.
func (p *Provider) keysPathLocked() string {
	if p.x.keysPath == "" {
		return "/keys"
	}
	return p.x.keysPath
}

// changeDiscovery applies the features' and the tests' changes to the
// discovery document r asked for.
func (p *Provider) changeDiscovery(r *http.Request, doc map[string]any) map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.MultiTenant {
		doc["issuer"] = p.IssuerTemplate()
		if t := r.PathValue("tenant"); t != "" && !commonTenants[t] {
			doc["issuer"] = p.TenantIssuer(t)
		}
	}
	if p.x.noUserinfo {
		delete(doc, "userinfo_endpoint")
	}
	doc["jwks_uri"] = p.endpoint(p.keysPathLocked())
	p.sessionManagementDiscoveryLocked(doc)
	for k, v := range p.x.discovery {
		if v == nil {
			delete(doc, k)
		} else {
			doc[k] = v
		}
	}
	return doc
}
