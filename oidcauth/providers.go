package oidcauth

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/oidcgate/caddy-oidc/internal/provider"
	"github.com/oidcgate/caddy-oidc/internal/verify"
)

// ProviderConfig is an OpenID provider and this site's client there. In
// the single-provider form its fields sit directly in oidc_auth's
// configuration; with several providers each has its own, in Providers.
type ProviderConfig struct {
	// Issuer is the provider's issuer URL, exactly as in its discovery
	// document. Required.
	Issuer string `json:"issuer,omitempty"`

	// ClientID is the client (application) ID registered at the provider.
	// Required.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the client secret. It may be a placeholder such as
	// `{env.OIDC_CLIENT_SECRET}` or `{file./run/secrets/oidc}`, resolved when
	// the module is provisioned. Leave empty for a public client (PKCE only).
	ClientSecret string `json:"client_secret,omitempty"`

	// Scopes to request. Default: `openid profile email`. `openid` is added
	// if missing.
	Scopes []string `json:"scopes,omitempty"`

	// AuthParams are extra authorization request parameters, such as
	// `prompt`, `audience`, `acr_values`, `login_hint` or `hd`. Parameters
	// that oidc_auth sets itself (state, nonce, PKCE, redirect_uri, ...) are
	// refused. Default: none.
	AuthParams map[string]string `json:"auth_params,omitempty"`

	// PostLogoutRedirect is the post_logout_redirect_uri sent to the provider
	// at logout; it must be registered there. By default the provider sends
	// the browser back to LogoutPath on the requested host, which checks
	// the `state` it returns and then goes on to the logout's `rd`; with
	// another address here, the state is sent but not checked. Default:
	// LogoutPath on the requested host.
	PostLogoutRedirect string `json:"post_logout_redirect,omitempty"`

	// ClientAuth is how oidc_auth authenticates at the provider's token
	// endpoint: `client_secret_basic`, `client_secret_post`,
	// `client_secret_jwt` (an assertion signed with the client secret, of
	// at least 32 bytes), `private_key_jwt` (an assertion signed with
	// ClientKey) or `none` (a public client). Default: the first of
	// `client_secret_basic`, `client_secret_post`, `client_secret_jwt` and
	// `private_key_jwt` that the provider's
	// `token_endpoint_auth_methods_supported` lists (an absent list means
	// `client_secret_basic`) and the configured secret or key allow;
	// `none` without either.
	ClientAuth string `json:"client_auth,omitempty"`

	// ClientKey is the private key (PEM: PKCS #8, PKCS #1 or SEC 1; RSA or
	// ECDSA) that signs private_key_jwt assertions, optionally followed by
	// its certificate (then the assertion carries its x5t thumbprints, as
	// Microsoft Entra ID wants). May be `{env.NAME}` or `{file./path}`.
	// Default: none.
	ClientKey string `json:"client_key,omitempty"`

	// ClientKeyFile is a file holding ClientKey. Default: none.
	ClientKeyFile string `json:"client_key_file,omitempty"`

	// ClientKeyID is the kid of private_key_jwt assertions, as registered
	// at the provider. Default: none (no kid header).
	ClientKeyID string `json:"client_key_id,omitempty"`

	// ClientAssertionAudience is the aud of client_secret_jwt and
	// private_key_jwt assertions: `issuer` for the provider's issuer (as
	// Zitadel requires), or a URL. Default: the token endpoint's URL (as
	// OpenID Connect Core recommends, and Entra ID, Okta and Keycloak
	// accept).
	ClientAssertionAudience string `json:"client_assertion_audience,omitempty"`

	// Userinfo says when the provider's userinfo endpoint is asked about
	// the user: `on` (at sign-in), `refresh` (at sign-in and after every
	// refresh) or `off`. Its claims join the ID token's in
	// {http.auth.user.*} (the ID token wins) and are in
	// {oidc.user.userinfo.*}; a sign-in fails if the call fails or names
	// another subject. Without the endpoint it is skipped. Default: `on`.
	Userinfo string `json:"userinfo,omitempty"`

	// ClaimSources resolves aggregated and distributed claims (OpenID
	// Connect Core 5.6.2) named in the ID token or userinfo: they are read
	// from their source (a JWT the provider signed, or an endpoint called
	// with the source's or the user's access token) and join the userinfo
	// claims. Default: off.
	ClaimSources bool `json:"claim_sources,omitempty"`

	// Tenants admits these tenants of a multi-tenant provider, one whose
	// discovery names an issuer with `{tenantid}` (Microsoft Entra ID's
	// `/common/v2.0` and `/organizations/v2.0`); `*` admits every tenant.
	// A token's `iss` must then be that issuer with the token's own `tid`.
	// Default: none (a multi-tenant provider is refused).
	Tenants []string `json:"tenants,omitempty"`

	// AccessTokenLifetime is how long an access token is taken to be valid
	// when the provider's token response has no `expires_in` (RFC 6749
	// 5.1 recommends it but does not require it): token_inject refreshes
	// it, with the refresh token, once this time is nearly up. An access
	// token that is a JWT with an `exp` needs none. Default: none (such a
	// token is used as long as the session lasts).
	AccessTokenLifetime caddy.Duration `json:"access_token_lifetime,omitempty"`

	// SigningAlgs are the algorithms ID tokens and logout tokens may be
	// signed with, of RS256, RS384, RS512, PS256, PS384, PS512, ES256,
	// ES384, ES512 and EdDSA; never `none` or HMAC. A token signed
	// otherwise is refused. Default: `RS256`, OpenID Connect's default for
	// a client that registered no other.
	SigningAlgs []string `json:"signing_algs,omitempty"`
}

// NamedProvider is one of several providers a site signs users in with.
type NamedProvider struct {
	// Name identifies the provider in `/oauth2/login?provider=<name>`, in
	// {http.auth.user.provider}, in rules, metrics and events: letters,
	// digits, `-` and `_`. Required.
	Name string `json:"name,omitempty"`

	// Label is what the sign-in chooser page shows for the provider.
	// Default: Name.
	Label string `json:"label,omitempty"`

	ProviderConfig
}

var providerNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// oidcProvider is a provider as the handler uses it: its configuration,
// with defaults applied and secrets resolved, and its discovered state.
type oidcProvider struct {
	// name is the provider's configured name; "" in the single-provider
	// form.
	name  string
	label string
	cfg   ProviderConfig
	op    *provider.Provider
	// client makes every request to the provider, measured.
	client *http.Client
	// scope binds what is sealed or indexed for this provider to its
	// issuer and client: a session of another client does not open.
	scope string
}

// metricName names the provider in metrics and events: its name, or
// "default" in the single-provider form.
func (p *oidcProvider) metricName() string {
	if p.name == "" {
		return "default"
	}
	return p.name
}

// newProvider resolves a provider's configuration and sets its defaults.
func (h *Handler) newProvider(name, label string, cfg ProviderConfig, repl *caddy.Replacer) (*oidcProvider, error) {
	issuer, err := repl.ReplaceOrErr(cfg.Issuer, true, true)
	if err != nil {
		return nil, fmt.Errorf("issuer: %v", err)
	}
	clientID, err := repl.ReplaceOrErr(cfg.ClientID, true, true)
	if err != nil {
		return nil, fmt.Errorf("client_id: %v", err)
	}
	var clientSecret string
	if cfg.ClientSecret != "" {
		// Resolved into the provider's configuration only: the handler's
		// keeps the placeholder, so the secret is never echoed back by the
		// admin API or written to a log.
		if clientSecret, err = repl.ReplaceOrErr(cfg.ClientSecret, true, true); err != nil {
			return nil, fmt.Errorf("client_secret: %v", err)
		}
		clientSecret = strings.TrimSpace(clientSecret)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = defaultScopes
	}
	scopes := cfg.Scopes
	if !slices.Contains(scopes, "openid") {
		scopes = append([]string{"openid"}, scopes...)
	}
	if cfg.Userinfo == "" {
		cfg.Userinfo = userinfoOn
	}
	if label == "" {
		label = name
	}
	auth, err := clientAuthOf(cfg, repl, clientSecret)
	if err != nil {
		return nil, err
	}
	p := &oidcProvider{
		name:  name,
		label: label,
		cfg:   cfg,
		scope: issuer + "\x00" + clientID,
	}
	p.client = &http.Client{Timeout: providerRequestTimeout, Transport: h.providerTransport(p)}
	p.op = provider.New(provider.Config{
		Issuer:      issuer,
		Tenants:     cfg.Tenants,
		ClientID:    clientID,
		Auth:        auth,
		Scopes:      scopes,
		SigningAlgs: cfg.SigningAlgs,
		HTTPClient:  p.client,
		Logger:      h.logger,
		Now:         h.now,

		IntrospectionTimeout: h.introspectionTimeout(),
	})
	return p, nil
}

// introspectionTimeout bounds an introspection call (tests shorten it);
// zero for the provider package's default.
func (h *Handler) introspectionTimeout() time.Duration {
	if h.Bearer == nil {
		return 0
	}
	return h.Bearer.introspectionTimeout
}

// validate checks a provider's configuration.
func (cfg *ProviderConfig) validate() error {
	if cfg.Issuer == "" {
		return errors.New("issuer is required")
	}
	if cfg.ClientID == "" {
		return errors.New("client_id is required")
	}
	for k := range cfg.AuthParams {
		if slices.Contains(reservedAuthParams, k) {
			return fmt.Errorf("auth_params: %q is set by oidc_auth and cannot be configured", k)
		}
	}
	switch cfg.Userinfo {
	case "", userinfoOn, userinfoOff, userinfoRefresh:
	default:
		return fmt.Errorf("userinfo %q: must be on, off or refresh", cfg.Userinfo)
	}
	if cfg.ClientAuth != "" && !slices.Contains(provider.Methods, cfg.ClientAuth) {
		return fmt.Errorf("client_auth %q: must be one of %s", cfg.ClientAuth, strings.Join(provider.Methods, ", "))
	}
	if a := cfg.ClientAssertionAudience; a != "" && a != provider.AudienceIssuer {
		if u, err := url.Parse(a); err != nil || !u.IsAbs() || u.Host == "" {
			return fmt.Errorf("client_assertion_audience %q: must be %s or an absolute URL", a, provider.AudienceIssuer)
		}
	}
	for _, t := range cfg.Tenants {
		if t == "" || strings.ContainsAny(t, "/{} ") {
			return fmt.Errorf("tenants: %q is not a tenant ID", t)
		}
	}
	for _, a := range cfg.SigningAlgs {
		if !slices.Contains(verify.Asymmetric, a) {
			return fmt.Errorf("signing_algs: %q is not allowed (use one of %s)", a, strings.Join(verify.Asymmetric, ", "))
		}
	}
	if cfg.AccessTokenLifetime < 0 {
		return errors.New("access_token_lifetime must not be negative")
	}
	return nil
}

// isSet reports whether any of the provider settings is given.
func (cfg *ProviderConfig) isSet() bool {
	return cfg.Issuer != "" || cfg.ClientID != "" || cfg.ClientSecret != "" || len(cfg.Scopes) > 0 ||
		len(cfg.AuthParams) > 0 || cfg.PostLogoutRedirect != "" || cfg.ClientAuth != "" ||
		cfg.ClientKey != "" || cfg.ClientKeyFile != "" || cfg.ClientKeyID != "" ||
		cfg.ClientAssertionAudience != "" || cfg.Userinfo != "" || cfg.ClaimSources ||
		len(cfg.Tenants) > 0 || cfg.AccessTokenLifetime != 0 || len(cfg.SigningAlgs) > 0
}

// provisionProviders sets up the single provider, or each of several.
func (h *Handler) provisionProviders(repl *caddy.Replacer) error {
	h.providerByName = make(map[string]*oidcProvider)
	if len(h.Providers) == 0 {
		p, err := h.newProvider("", "", h.ProviderConfig, repl)
		if err != nil {
			return err
		}
		h.providers = []*oidcProvider{p}
		h.scope = p.scope
		return nil
	}
	if h.ProviderConfig.isSet() {
		return errors.New("provider settings go either in oidc_auth itself (one provider) or in provider blocks (several), not both")
	}
	names := make([]string, 0, len(h.Providers))
	for i, np := range h.Providers {
		if np == nil || !providerNamePattern.MatchString(np.Name) {
			return fmt.Errorf("provider %d: a name of letters, digits, - and _ is required", i+1)
		}
		if _, dup := h.providerByName[np.Name]; dup {
			return fmt.Errorf("provider %q: named twice", np.Name)
		}
		p, err := h.newProvider(np.Name, np.Label, np.ProviderConfig, repl)
		if err != nil {
			return fmt.Errorf("provider %q: %v", np.Name, err)
		}
		h.providers = append(h.providers, p)
		h.providerByName[p.name] = p
		names = append(names, p.name)
	}
	// Sessions of several providers are sealed for this handler's set of
	// names; which provider a session is of, and that its ID token is of
	// that provider's issuer and client, is checked when it is opened
	// (adopt), so adding a provider does not end the others' sessions.
	h.scope = "providers\x00" + h.CookieName
	return nil
}

// validateProviders checks the single provider or each of several.
func (h *Handler) validateProviders() error {
	if len(h.Providers) == 0 {
		return h.ProviderConfig.validate()
	}
	for _, np := range h.Providers {
		if err := np.validate(); err != nil {
			return fmt.Errorf("provider %q: %v", np.Name, err)
		}
	}
	return nil
}

// several reports whether the site has several providers to choose from.
func (h *Handler) several() bool { return len(h.Providers) > 0 }

// defaultProvider is the provider of the single-provider form, or the
// first of several.
func (h *Handler) defaultProvider() *oidcProvider { return h.providers[0] }

// providerNamed returns the provider a session or a login names: "" is
// the single-provider form's.
func (h *Handler) providerNamed(name string) (*oidcProvider, bool) {
	if !h.several() {
		return h.providers[0], name == ""
	}
	p, ok := h.providerByName[name]
	return p, ok
}

// providerOfIssuer returns the provider whose issuer (or, multi-tenant,
// issuer with an admitted tenant) is iss.
func (h *Handler) providerOfIssuer(iss string) (*oidcProvider, bool) {
	for _, p := range h.providers {
		if p.issuerMatches(iss) {
			return p, true
		}
	}
	return nil, false
}

// issuerMatches reports whether iss is the provider's issuer (for a
// multi-tenant provider, its issuer with an admitted tenant).
func (p *oidcProvider) issuerMatches(iss string) bool {
	if iss == p.op.Issuer() {
		return true
	}
	st := p.op.Current()
	return st != nil && st.Verifier.IssuerOfTenant(iss)
}

// unverifiedIssuer reads a JWT's iss claim without verifying anything: it
// only says which provider's keys are to verify it.
func unverifiedIssuer(raw string) string {
	payload, err := jwtPayload(raw)
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.Iss
}

// indexKey stands for a subject or provider session ID of p in the session
// store's indexes and revocation lists, so that Redis key names do not
// carry user identifiers in clear, and the same subject at two providers
// is two users. It is salted with the issuer and client, not keyed with
// the session keys, so that rotating keys does not break back-channel
// logout of existing sessions.
func (p *oidcProvider) indexKey(v string) string {
	if v == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(p.scope + "\x00" + v))
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}

// adopt completes a session read from the store: its provider, and its
// index keys. With several providers, the session's ID token must be of
// its provider's issuer and client; a session of a provider no longer
// configured does not open.
func (h *Handler) adopt(s *Session) error {
	p, ok := h.providerNamed(s.providerName)
	if !ok {
		return fmt.Errorf("the session is of provider %q, which is not configured", truncate(s.providerName, 64))
	}
	if h.several() {
		id, err := verify.IdentityOf(s.claimsJSON)
		if err != nil {
			return err
		}
		if !p.issuerMatches(id.Issuer) || !slices.Contains(id.Audience, p.op.ClientID()) {
			return fmt.Errorf("the session's ID token is not of provider %q", p.name)
		}
	}
	s.owner, s.provider = h, p
	s.subjectKey, s.sidKey, s.signInKey = p.indexKey(s.subject), p.indexKey(s.sid), p.indexKey(s.signInID)
	return nil
}

// accessTokenExpiry is when an access token of p expires: what the token
// response said, else a JWT's exp, else now plus the configured assumed
// lifetime, else never (zero). A JWT's exp is read without verifying it:
// it only decides when to refresh.
func (p *oidcProvider) accessTokenExpiry(said time.Time, accessToken string, now time.Time) time.Time {
	if !said.IsZero() {
		return said
	}
	if payload, err := jwtPayload(accessToken); err == nil {
		var c struct {
			Exp json.Number `json:"exp"`
		}
		if json.Unmarshal(payload, &c) == nil {
			if sec, err := c.Exp.Int64(); err == nil && sec > 0 {
				return time.Unix(sec, 0)
			}
		}
	}
	if p.cfg.AccessTokenLifetime > 0 {
		return now.Add(time.Duration(p.cfg.AccessTokenLifetime))
	}
	return time.Time{}
}
