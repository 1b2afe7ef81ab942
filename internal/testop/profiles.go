package testop

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
)

// A Profile makes the provider reproduce one real provider's documented
// shape: its issuer, the claims of its tokens and where they are, when it
// issues refresh tokens and what becomes of them, its access tokens, its
// discovery document and its logout. The guides in docs/providers/ are
// tested against these profiles; each rule below names the behaviour it
// reproduces.
type Profile string

// The profiles, named as the guides are.
const (
	// EntraID is Microsoft Entra ID (v2.0 endpoints of one tenant): the
	// issuer http://HOST/<tenant-id>/v2.0; ID tokens with tid, oid and
	// preferred_username but no email (an optional claim); groups as
	// object IDs, or past 200 groups the overage claim pointing at
	// Microsoft Graph; access tokens for Graph, which an app must treat as
	// opaque and which alone the userinfo endpoint accepts, unless a scope
	// of the app's own API (api://...) makes it a JWT for that API;
	// refresh tokens with offline_access; front-channel logout with sid
	// alone (no iss).
	EntraID Profile = "entra-id"
	// Google is Google's OpenID Connect: the issuer at the root, the hd
	// claim of Workspace users, no end_session_endpoint, opaque access
	// tokens, a refresh token only for access_type=offline with
	// prompt=consent, and refreshes that keep the refresh token (the
	// answer carries none).
	Google Profile = "google"
	// Okta is an Okta custom authorization server ("default"): the issuer
	// http://HOST/oauth2/default; thin ID tokens (sub and protocol claims;
	// profile, email and groups at the userinfo endpoint only); a groups
	// claim filtered to the groups matching app-*; JWT access tokens for
	// api://default; refresh tokens with offline_access, rotated on use.
	Okta Profile = "okta"
	// Keycloak is a Keycloak realm ("acme"): the issuer
	// http://HOST/realms/acme; realm_access.roles and
	// resource_access.<client>.roles; JWT access tokens for "account";
	// refresh tokens without asking, spent on use (Revoke Refresh Token);
	// back-channel logout tokens with sid.
	Keycloak Profile = "keycloak"
	// Auth0 is an Auth0 tenant: the issuer with a trailing slash;
	// namespaced custom claims (https://example.com/roles); opaque access
	// tokens unless the audience parameter names an API, which makes them
	// JWTs for it and for /userinfo; refresh tokens with offline_access,
	// rotated, and a reused one revokes every refresh token of the sign-in
	// (reuse detection). End-session discovery is on; a test can turn it
	// off, as on older tenants, with ChangeDiscovery.
	Auth0 Profile = "auth0"
	// Dex: the issuer http://HOST/dex, refresh tokens with offline_access,
	// no end_session_endpoint.
	Dex Profile = "dex"
	// Zitadel: the issuer at the root, refresh tokens with offline_access.
	Zitadel Profile = "zitadel"
	// Hydra is Ory Hydra: the issuer at the root, refresh tokens with
	// offline_access or offline.
	Hydra Profile = "hydra"
	// Authentik: the issuer http://HOST/application/o/<slug>/ with its
	// trailing slash, refresh tokens with offline_access.
	Authentik Profile = "authentik"
)

// Profiles lists every profile.
var Profiles = []Profile{EntraID, Google, Okta, Keycloak, Auth0, Dex, Zitadel, Hydra, Authentik}

// Values the profiles use, which tests compare with.
const (
	// EntraTenant is the tenant of the EntraID profile.
	EntraTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	// EntraObjectID is the oid of the EntraID profile's user.
	EntraObjectID = "00000000-0000-0000-66f3-3332eca7ea81"
	// EntraGroupLimit is how many groups Entra ID puts in a JWT at most;
	// past it, the token carries the overage claim instead.
	EntraGroupLimit = 200
	// GoogleDomain is the hd claim of the Google profile's user.
	GoogleDomain = "example.com"
	// KeycloakRealm is the realm of the Keycloak profile.
	KeycloakRealm = "acme"
	// AuthentikSlug is the application slug of the Authentik profile.
	AuthentikSlug = "caddy"
	// Auth0RolesClaim is the Auth0 profile's namespaced custom claim.
	Auth0RolesClaim = "https://example.com/roles"
	// OktaGroupFilter is the prefix of the groups the Okta profile's
	// groups claim filter lets through.
	OktaGroupFilter = "app-"
)

// OktaGroups are all the groups of the Okta profile's user, before the
// groups claim filter.
var OktaGroups = []string{"Everyone", "app-admins", "app-users", "finance"}

// profileRules is how a profile's provider differs from the default one.
// Immutable after NewProfile, but for spent.
type profileRules struct {
	name Profile
	// offlineScopes: a refresh token only for a grant with one of them.
	offlineScopes []string
	// offlineParams: a refresh token only when the authorization request
	// had each of these parameters with its value.
	offlineParams url.Values
	// keepRefreshToken: a refresh answers without a refresh token, and
	// the one used stays valid.
	keepRefreshToken bool
	// reuseRevokes: presenting a spent refresh token revokes every
	// refresh token of its sign-in.
	reuseRevokes bool
	// audience decides the audience of the grant's JWT access tokens from
	// the authorization request; "" (or nil) issues opaque ones.
	audience func(q url.Values) string
	// accessClaims adds the provider's own claims to a JWT access token.
	accessClaims func(c map[string]any)
	// userinfoOpaqueOnly: the userinfo endpoint accepts opaque (Graph)
	// access tokens only.
	userinfoOpaqueOnly bool
	// frontchannelSIDOnly: front-channel logout requests carry sid but
	// no iss.
	frontchannelSIDOnly bool

	spent map[string]string // spent refresh token -> sid; guarded by Provider.mu
}

// profileGrant is what a profile decided for a grant at authorization.
type profileGrant struct {
	noRefresh bool   // no refresh token for this grant
	audience  string // of its JWT access tokens; "" for opaque ones
}

// NewProfile starts a provider shaped like profile. cfg applies as to New;
// its Claims and UserinfoClaims are merged over the profile's (nil removes
// a claim), and a field the profile sets (IssuerPath, Subject,
// TokenAuthMethods) is the profile's unless cfg sets it.
func NewProfile(profile Profile, cfg Config) (*Provider, error) {
	pr, ok := profileShapes[profile]
	if !ok {
		return nil, fmt.Errorf("testop: unknown profile %q", profile)
	}
	rules, shape := pr()
	rules.name = profile
	rules.spent = map[string]string{}
	cfg.Claims = overlay(shape.Claims, cfg.Claims)
	cfg.UserinfoClaims = overlay(shape.UserinfoClaims, cfg.UserinfoClaims)
	cfg.IssuerPath = orDefault(cfg.IssuerPath, shape.IssuerPath)
	cfg.Subject = orDefault(cfg.Subject, shape.Subject)
	if cfg.TokenAuthMethods == nil {
		cfg.TokenAuthMethods = shape.TokenAuthMethods
	}
	p, err := New(cfg)
	if err != nil {
		return nil, err
	}
	// Set before any request reaches the server; every request takes p.mu
	// first (the request log), which orders its reads after this write.
	p.mu.Lock()
	p.profile = rules
	p.mu.Unlock()
	if shape.discovery != nil {
		if err := p.ChangeDiscovery(shape.discovery(p)); err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// overlay is over merged onto base, keeping nil values (which remove).
func overlay(base, over map[string]any) map[string]any {
	if base == nil && over == nil {
		return nil
	}
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	maps.Copy(out, over)
	return out
}

// profileShape is the Config side of a profile, and its discovery changes.
type profileShape struct {
	Config
	discovery func(p *Provider) map[string]any
}

var profileShapes = map[Profile]func() (*profileRules, profileShape){
	EntraID:   entraID,
	Google:    google,
	Okta:      okta,
	Keycloak:  keycloak,
	Auth0:     auth0,
	Dex:       standardProfile("/dex", []string{"client_secret_basic", "client_secret_post"}, false, "offline_access"),
	Zitadel:   standardProfile("", []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}, true, "offline_access"),
	Hydra:     standardProfile("", []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}, true, "offline_access", "offline"),
	Authentik: standardProfile("/application/o/"+AuthentikSlug+"/", []string{"client_secret_basic", "client_secret_post"}, true, "offline_access"),
}

func entraID() (*profileRules, profileShape) {
	rules := &profileRules{
		offlineScopes:       []string{"offline_access"},
		userinfoOpaqueOnly:  true,
		frontchannelSIDOnly: true,
		// A scope of the app's own API (api://<app-id>/<name>) makes the
		// access token one for that API; otherwise it is for Graph.
		audience: func(q url.Values) string {
			for _, s := range strings.Fields(q.Get("scope")) {
				if strings.HasPrefix(s, "api://") {
					return s[:strings.LastIndex(s, "/")]
				}
			}
			return ""
		},
		accessClaims: func(c map[string]any) {
			c["tid"], c["oid"], c["ver"] = EntraTenant, EntraObjectID, "2.0"
			var scp []string
			for _, s := range strings.Fields(c["scope"].(string)) {
				if strings.HasPrefix(s, "api://") {
					scp = append(scp, s[strings.LastIndex(s, "/")+1:])
				}
			}
			c["scp"] = strings.Join(scp, " ")
			delete(c, "scope")
		},
	}
	return rules, profileShape{
		Config: Config{
			IssuerPath: "/" + EntraTenant + "/v2.0",
			Subject:    "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
			Claims: map[string]any{
				"email":              nil, // an optional claim, not configured
				"email_verified":     nil,
				"preferred_username": "alice@contoso.onmicrosoft.com",
				"tid":                EntraTenant,
				"oid":                EntraObjectID,
				"ver":                "2.0",
			},
			TokenAuthMethods: []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		},
		discovery: func(p *Provider) map[string]any {
			return map[string]any{
				"scopes_supported":                     []string{"openid", "profile", "email", "offline_access"},
				"frontchannel_logout_supported":        true,
				"http_logout_supported":                true,
				"backchannel_logout_supported":         nil,
				"backchannel_logout_session_supported": nil,
			}
		},
	}
}

// EntraGroupClaims are the ID token claims of an Entra ID user in groups
// (object IDs): a groups claim, or, past EntraGroupLimit, the overage
// claim: no groups, and _claim_names/_claim_sources pointing at the
// Microsoft Graph call that lists them.
func EntraGroupClaims(groups []string) map[string]any {
	if len(groups) <= EntraGroupLimit {
		return map[string]any{"groups": slices.Clone(groups)}
	}
	return map[string]any{
		"groups":       nil,
		"_claim_names": map[string]any{"groups": "src1"},
		"_claim_sources": map[string]any{"src1": map[string]any{
			"endpoint": "https://graph.microsoft.com/v1.0/users/" + EntraObjectID + "/getMemberObjects",
		}},
	}
}

// EntraGroupIDs returns n distinct group object IDs.
func EntraGroupIDs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%08x-1b2c-4d5e-8f60-%012x", 0x1a2b0000+i, i)
	}
	return out
}

func google() (*profileRules, profileShape) {
	return &profileRules{
			offlineParams:    url.Values{"access_type": {"offline"}, "prompt": {"consent"}},
			keepRefreshToken: true,
		}, profileShape{
			Config: Config{
				Subject: "110169484474386276334",
				Claims: map[string]any{
					"hd":          GoogleDomain,
					"email":       "alice@" + GoogleDomain,
					"given_name":  "Alice",
					"family_name": "Example",
					"picture":     "https://lh3.googleusercontent.com/a/alice",
				},
				TokenAuthMethods: []string{"client_secret_post", "client_secret_basic"},
			},
			discovery: func(p *Provider) map[string]any {
				return map[string]any{
					"end_session_endpoint":                 nil,
					"backchannel_logout_supported":         nil,
					"backchannel_logout_session_supported": nil,
					"scopes_supported":                     []string{"openid", "email", "profile"},
				}
			},
		}
}

func okta() (*profileRules, profileShape) {
	var groups []string
	for _, g := range OktaGroups {
		if strings.HasPrefix(g, OktaGroupFilter) {
			groups = append(groups, g)
		}
	}
	return &profileRules{
			offlineScopes: []string{"offline_access"},
			audience:      func(url.Values) string { return "api://default" },
			accessClaims: func(c map[string]any) {
				c["cid"] = c["azp"]
				c["scp"] = strings.Fields(c["scope"].(string))
				delete(c, "scope")
			},
		}, profileShape{
			Config: Config{
				IssuerPath: "/oauth2/default",
				Subject:    "00u1abcd2EFGH3ijk4l5",
				Claims: map[string]any{
					// Thin: profile, email and groups are at userinfo.
					"email": nil, "email_verified": nil, "name": nil,
					"ver": 1, "amr": []string{"pwd"}, "idp": "00o1abcd2EFGH3ijk4l5",
				},
				UserinfoClaims: map[string]any{
					"email":              "alice@example.com",
					"email_verified":     true,
					"name":               "Alice Example",
					"given_name":         "Alice",
					"family_name":        "Example",
					"preferred_username": "alice@example.com",
					"zoneinfo":           "America/Los_Angeles",
					"groups":             groups,
				},
			},
		}
}

func keycloak() (*profileRules, profileShape) {
	return &profileRules{
			audience: func(url.Values) string { return "account" },
			accessClaims: func(c map[string]any) {
				c["typ"] = "Bearer"
				c["realm_access"] = map[string]any{"roles": []string{"offline_access", "uma_authorization", "app-admin"}}
			},
		}, profileShape{
			Config: Config{
				IssuerPath: "/realms/" + KeycloakRealm,
				Subject:    "f3b4c0a2-9d4e-4b51-8a9a-2a1c6e0e7d11",
				Claims: map[string]any{
					"typ":                "ID",
					"preferred_username": "alice",
					"given_name":         "Alice",
					"family_name":        "Example",
					"realm_access":       map[string]any{"roles": []string{"offline_access", "uma_authorization", "app-admin"}},
					// The client's own roles are keyed by its client ID,
					// which NewProfile's caller chooses: see KeycloakClientRoles.
				},
				TokenAuthMethods: []string{"private_key_jwt", "client_secret_basic", "client_secret_post", "tls_client_auth", "client_secret_jwt"},
			},
		}
}

// KeycloakClientRoles are the claims that give the Keycloak profile's user
// roles of client clientID (resource_access.<client>.roles), besides the
// account client's.
func KeycloakClientRoles(clientID string, roles ...string) map[string]any {
	return map[string]any{"resource_access": map[string]any{
		clientID:  map[string]any{"roles": roles},
		"account": map[string]any{"roles": []string{"manage-account", "view-profile"}},
	}}
}

func auth0() (*profileRules, profileShape) {
	return &profileRules{
			offlineScopes: []string{"offline_access"},
			reuseRevokes:  true,
			audience:      func(q url.Values) string { return q.Get("audience") },
		}, profileShape{
			Config: Config{
				IssuerPath: "/",
				Subject:    "auth0|64b7f0c2a1e4d3b2c1a09f8e",
				Claims: map[string]any{
					"nickname":      "alice",
					"picture":       "https://s.gravatar.com/avatar/alice.png",
					"updated_at":    "2024-01-01T00:00:00.000Z",
					Auth0RolesClaim: []string{"admin", "editor"},
				},
				TokenAuthMethods: []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
			},
		}
}

// standardProfile is a provider of the standard shape: an issuer path,
// its client authentication methods, an end_session_endpoint or not, and
// the scopes that get a refresh token.
func standardProfile(issuerPath string, methods []string, endSession bool, offline ...string) func() (*profileRules, profileShape) {
	return func() (*profileRules, profileShape) {
		return &profileRules{offlineScopes: offline}, profileShape{
			Config: Config{IssuerPath: issuerPath, TokenAuthMethods: methods},
			discovery: func(p *Provider) map[string]any {
				d := map[string]any{"scopes_supported": append([]string{"openid", "profile", "email"}, offline...)}
				if !endSession {
					d["end_session_endpoint"] = nil
				}
				return d
			},
		}
	}
}

// decide is what the profile decides for the grant the authorization
// request q starts.
func (r *profileRules) decide(q url.Values) profileGrant {
	var g profileGrant
	if r == nil {
		return g
	}
	if r.audience != nil {
		g.audience = r.audience(q)
	}
	if len(r.offlineScopes) > 0 && !slices.ContainsFunc(r.offlineScopes, func(s string) bool { return hasScope(q.Get("scope"), s) }) {
		g.noRefresh = true
	}
	for k, v := range r.offlineParams {
		if q.Get(k) != v[0] {
			g.noRefresh = true
		}
	}
	return g
}

// issuesRefreshToken reports whether a grant's answer (a refresh if
// refresh) carries a refresh token.
func (r *profileRules) issuesRefreshToken(g grant, refresh bool) bool {
	return !g.noRefresh && !(refresh && r.keepsRefreshTokens())
}

func (r *profileRules) keepsRefreshTokens() bool { return r != nil && r.keepRefreshToken }

// spendLocked remembers a refresh token just spent; p.mu is held.
func (r *profileRules) spendLocked(rt, sid string) {
	if r != nil && r.reuseRevokes {
		r.spent[rt] = sid
	}
}

// reusedLocked revokes every refresh token of the sign-in whose spent
// refresh token rt was presented again, with reuse detection; p.mu is held.
func (r *profileRules) reusedLocked(p *Provider, rt string) {
	if r == nil || !r.reuseRevokes {
		return
	}
	sid, ok := r.spent[rt]
	if !ok {
		return
	}
	maps.DeleteFunc(p.refreshTokens, func(_ string, g grant) bool { return g.sid == sid })
}

// userinfoAccepts reports whether the userinfo endpoint takes at.
func (r *profileRules) userinfoAccepts(at accessToken) bool {
	return r == nil || !r.userinfoOpaqueOnly || at.audience == ""
}

// profileAccessToken is the access token a profile issues for grant g
// and scope: a JWT for the grant's audience (ok), or, without a profile
// or an audience, none: the provider's own kind.
func (p *Provider) profileAccessToken(g grant, scope string, ttl time.Duration) (tok string, ok bool, err error) {
	r := p.profile
	if r == nil || g.audience == "" {
		return "", false, nil
	}
	now := time.Now()
	c := map[string]any{
		"iss":   p.issuer,
		"sub":   g.subject,
		"aud":   g.audience,
		"azp":   g.clientID,
		"iat":   now.Unix(),
		"exp":   now.Add(ttl).Unix(),
		"jti":   randomString(22),
		"scope": scope,
		"sid":   g.sid,
	}
	if r.name == Auth0 && hasScope(scope, "openid") {
		c["aud"] = []string{g.audience, p.endpoint("/userinfo")}
	}
	if r.accessClaims != nil {
		r.accessClaims(c)
	}
	tok, err = p.sign(c, MisbehaveNone, "JWT")
	return tok, true, err
}

// Profile returns the provider's profile, "" for the default shape.
func (p *Provider) Profile() Profile {
	if p.profile == nil {
		return ""
	}
	return p.profile.name
}

// FrontchannelLogoutURL is the URL the provider's logout page loads in an
// iframe to end the provider session sid at a relying party whose
// front-channel logout URI is uri: with iss and sid (OpenID Connect
// Front-Channel Logout 1.0), or, as Entra ID sends it, with sid alone.
func (p *Provider) FrontchannelLogoutURL(uri, sid string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	q := u.Query()
	if p.profile == nil || !p.profile.frontchannelSIDOnly {
		q.Set("iss", p.issuer)
	}
	q.Set("sid", sid)
	u.RawQuery = q.Encode()
	return u.String()
}
