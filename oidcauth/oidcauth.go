// Package oidcauth provides the http.handlers.oidc_auth Caddy module: it signs
// users in with an OpenID Connect provider (authorization-code flow with
// PKCE), keeps their session, and tells later handlers who they are.
package oidcauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/origin"
	"github.com/oidcgate/caddy-oidc/internal/provider"
	"github.com/oidcgate/caddy-oidc/internal/rules"
	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
	"github.com/oidcgate/caddy-oidc/internal/verify"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler signs users in with an OpenID Connect provider and keeps their
// session. Requests without a session are sent to the provider (page
// navigations) or answered with 401 (API calls); requests with one continue
// down the route with the user's identity attached.
//
// It serves these endpoints itself (paths configurable):
//
// | Path | Purpose |
// |---|---|
// | `/oauth2/callback` | authorization-code callback |
// | `/oauth2/login?rd=/path` | start a sign-in, then return to `/path` |
// | `/oauth2/logout?rd=/path` | end the session (and the provider's, when it supports RP-initiated logout): a POST from the site itself; other requests get a page that asks to confirm |
// | `/oauth2/backchannel-logout` | OpenID Connect Back-Channel Logout |
// | `/oauth2/frontchannel-logout` | OpenID Connect Front-Channel Logout |
// | `/oauth2/userinfo` | JSON for the browser app: `sub`, `idToken` (claims), `rawIdToken`, `userinfo` (claims) |
//
// For a signed-in request it sets these placeholders:
//
// | Placeholder | Value |
// |---|---|
// | `{http.auth.user.id}` | the ID token's `sub` claim |
// | `{http.auth.user.<claim>}` | each top-level string, number or boolean claim of the ID token, then of userinfo |
// | `{oidc.user.id_token}` | the ID token's claims as a JSON object |
// | `{oidc.user.id_token.<path>}` | one claim; dotted paths reach into nested objects; arrays are joined with `,` |
// | `{oidc.user.raw_id_token}` | the compact ID token (JWT) |
// | `{oidc.user.userinfo}` | the userinfo endpoint's claims (and resolved claim sources') as a JSON object |
// | `{oidc.user.userinfo.<path>}` | one of those claims, as for the ID token |
//
// and the variables `oidc_id_token` (the claims), `oidc_raw_id_token` and
// `oidc_userinfo` (the userinfo claims). The `{oidc.user.*}` placeholders
// are computed only when read.
//
// Other modules read the session with SessionFromRequest. The access and
// refresh tokens are never exposed as placeholders.
type Handler struct {
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

	// RedirectURL is the callback address registered at the provider: a path
	// on the requested host, or an absolute URL (use that behind a proxy that
	// terminates TLS). Its path is where oidc_auth serves the callback.
	// Default: `/oauth2/callback`.
	RedirectURL string `json:"redirect_url,omitempty"`

	// AuthParams are extra authorization request parameters, such as
	// `prompt`, `audience`, `acr_values`, `login_hint` or `hd`. Parameters
	// that oidc_auth sets itself (state, nonce, PKCE, redirect_uri, ...) are
	// refused. Default: none.
	AuthParams map[string]string `json:"auth_params,omitempty"`

	// LoginPath starts a sign-in explicitly; `?rd=/path` names where to go
	// afterwards. Default: `/oauth2/login`.
	LoginPath string `json:"login_path,omitempty"`

	// LogoutPath ends the session when the site itself POSTs to it; a GET,
	// or a request from another site, gets a page with a button that does.
	// `?rd=/path` names where to go afterwards. Default: `/oauth2/logout`.
	LogoutPath string `json:"logout_path,omitempty"`

	// UserinfoPath serves the signed-in user's ID token claims, raw ID
	// token and userinfo claims as JSON. Default: `/oauth2/userinfo`.
	UserinfoPath string `json:"userinfo_path,omitempty"`

	// BackchannelLogoutPath receives OpenID Connect Back-Channel Logout
	// requests from the provider (register it there as the client's
	// backchannel_logout_uri). Default: `/oauth2/backchannel-logout`.
	BackchannelLogoutPath string `json:"backchannel_logout_path,omitempty"`

	// FrontchannelLogoutPath receives OpenID Connect Front-Channel Logout
	// requests (register it at the provider as the client's
	// frontchannel_logout_uri, with session required): the provider loads
	// it in an iframe with `iss` and `sid`, and that provider session's
	// sessions end. Default: `/oauth2/frontchannel-logout`.
	FrontchannelLogoutPath string `json:"frontchannel_logout_path,omitempty"`

	// PostLogoutRedirect is the post_logout_redirect_uri sent to the provider
	// at logout; it must be registered there. By default the provider sends
	// the browser back to LogoutPath on the requested host, which checks
	// the `state` it returns and then goes on to the logout's `rd`; with
	// another address here, the state is sent but not checked. Default:
	// LogoutPath on the requested host.
	PostLogoutRedirect string `json:"post_logout_redirect,omitempty"`

	// CookieName is the session cookie's name; on HTTPS it gets the
	// `__Host-` prefix (or `__Secure-` when a domain or a path other than
	// `/` is set). Default: `oidc_session`.
	CookieName string `json:"cookie_name,omitempty"`

	// CookieDomain is the session cookie's Domain attribute. Default: none
	// (host-only cookie).
	CookieDomain string `json:"cookie_domain,omitempty"`

	// CookiePath is the session cookie's Path attribute. Default: `/`.
	CookiePath string `json:"cookie_path,omitempty"`

	// SessionLifetime is the absolute lifetime of a session, counted from
	// sign-in. Default: 24h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// IdleTimeout ends a session that has not been used for this long.
	// Default: 0 (no idle timeout).
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`

	// SessionKeys are 32-byte keys, base64-encoded, that encrypt sessions
	// with AES-256-GCM. The first encrypts; all decrypt, so a key can be
	// rotated by putting a new one first. Placeholders such as `{env.X}` are
	// resolved. Default: one key generated on first start and kept in Caddy's
	// storage, so restarts and instances sharing storage keep sessions valid.
	SessionKeys []string `json:"session_keys,omitempty"`

	// Unauthenticated says what a request without a session gets: `auto`
	// (page navigations are sent to the provider, other requests get
	// UnauthenticatedStatus), `redirect` (always sent to the provider) or
	// `status` (always UnauthenticatedStatus). Default: `auto`.
	Unauthenticated string `json:"unauthenticated,omitempty"`

	// UnauthenticatedStatus is the status for unauthenticated requests that
	// are not redirected. Default: 401.
	UnauthenticatedStatus int `json:"unauthenticated_status,omitempty"`

	// Allow rules let a signed-in user (or bearer token) in when at least
	// one of them matches (if there are any); Deny rules keep out whoever
	// one of them matches, first. A rule matches when all its conditions
	// hold, over the ID token's claims and then userinfo's (or a bearer
	// token's). Refused callers get 403. Default: none (every account the
	// provider signs in enters).
	Allow []rules.Rule `json:"allow,omitempty"`
	Deny  []rules.Rule `json:"deny,omitempty"`

	// Bearer accepts API clients' own access tokens in the Authorization
	// header, next to browser sessions; a request with a bearer token is
	// decided by the token, even if it has a session cookie. Default: off.
	Bearer *BearerConfig `json:"bearer,omitempty"`

	// CORSPreflight lets CORS preflight requests (OPTIONS with
	// Access-Control-Request-Method) through without a session or token,
	// as browsers send them without credentials, so that a single-page app
	// on another origin can call the API. Default: true.
	CORSPreflight *bool `json:"cors_preflight,omitempty"`

	// SessionStore says where sessions are kept. Default: encrypted cookies.
	SessionStore *SessionStoreConfig `json:"session_store,omitempty"`

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

	callbackPath string
	// revocations is where logouts of cookie sessions and the logout
	// tokens already used are kept: the server-side store, Redis, or
	// Caddy's storage; release gives the stores back.
	revocations sessionstore.Revocations
	release     func()
	// storage is Caddy's storage: the generated session key and the
	// cookie store's revocation list live there. Provisioning sets it
	// (unit tests set it beforehand).
	storage       certmagic.Storage
	redirectURL   *url.URL           // absolute RedirectURL, or nil for request-relative
	op            *provider.Provider // the OpenID provider
	rules         *rules.Set         // nil: everyone enters
	corsPreflight bool
	store         SessionStore
	keys          *keyRing
	cookies       cookieSettings
	loginCookies  cookieSettings
	touchInterval time.Duration
	// logoutOrigins decides whether a sign-out request is the site's own.
	logoutOrigins origin.Policy
	refreshes     *refreshGroup
	logger        *zap.Logger
	now           func() time.Time
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Defaults.
const (
	defaultRedirectPath     = "/oauth2/callback"
	defaultLoginPath        = "/oauth2/login"
	defaultLogoutPath       = "/oauth2/logout"
	defaultUserinfoPath     = "/oauth2/userinfo"
	defaultBackchannelPath  = "/oauth2/backchannel-logout"
	defaultFrontchannelPath = "/oauth2/frontchannel-logout"
	defaultCookieName       = "oidc_session"
	defaultSessionLifetime  = 24 * time.Hour
)

var defaultScopes = []string{"openid", "profile", "email"}

// reservedAuthParams are set by oidc_auth itself; letting configuration
// override them would undo PKCE, state or nonce protection.
var reservedAuthParams = []string{
	"client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
	"code_challenge", "code_challenge_method",
}

// Provision sets defaults, resolves secrets and starts provider discovery.
func (h *Handler) Provision(ctx caddy.Context) error {
	return h.provision(ctx, ctx.Logger())
}

func (h *Handler) provision(ctx caddy.Context, logger *zap.Logger) error {
	h.logger = logger
	if h.now == nil { // unit tests set their clock beforehand
		h.now = time.Now
	}
	if h.storage == nil {
		h.storage = storageOf(ctx)
	}
	repl := caddy.NewReplacer()

	issuer, err := repl.ReplaceOrErr(h.Issuer, true, true)
	if err != nil {
		return fmt.Errorf("issuer: %v", err)
	}
	clientID, err := repl.ReplaceOrErr(h.ClientID, true, true)
	if err != nil {
		return fmt.Errorf("client_id: %v", err)
	}
	var clientSecret string
	if h.ClientSecret != "" {
		// Resolved into an unexported field only: the configuration keeps
		// the placeholder, so the secret is never echoed back by the admin
		// API or written to a log.
		if clientSecret, err = repl.ReplaceOrErr(h.ClientSecret, true, true); err != nil {
			return fmt.Errorf("client_secret: %v", err)
		}
		clientSecret = strings.TrimSpace(clientSecret)
	}

	if len(h.Scopes) == 0 {
		h.Scopes = defaultScopes
	}
	scopes := h.Scopes
	if !slices.Contains(scopes, "openid") {
		scopes = append([]string{"openid"}, scopes...)
	}
	if h.RedirectURL == "" {
		h.RedirectURL = defaultRedirectPath
	}
	if h.LoginPath == "" {
		h.LoginPath = defaultLoginPath
	}
	if h.LogoutPath == "" {
		h.LogoutPath = defaultLogoutPath
	}
	if h.UserinfoPath == "" {
		h.UserinfoPath = defaultUserinfoPath
	}
	if h.BackchannelLogoutPath == "" {
		h.BackchannelLogoutPath = defaultBackchannelPath
	}
	if h.FrontchannelLogoutPath == "" {
		h.FrontchannelLogoutPath = defaultFrontchannelPath
	}
	if h.SessionStore == nil {
		h.SessionStore = &SessionStoreConfig{}
	}
	if h.SessionStore.Type == "" {
		h.SessionStore.Type = "cookie"
	}
	if h.CookieName == "" {
		h.CookieName = defaultCookieName
	}
	if h.CookiePath == "" {
		h.CookiePath = "/"
	}
	if h.SessionLifetime == 0 {
		h.SessionLifetime = caddy.Duration(defaultSessionLifetime)
	}
	if h.Unauthenticated == "" {
		h.Unauthenticated = "auto"
	}
	if h.Userinfo == "" {
		h.Userinfo = userinfoOn
	}
	h.corsPreflight = h.CORSPreflight == nil || *h.CORSPreflight
	if len(h.Allow) > 0 || len(h.Deny) > 0 {
		h.rules = &rules.Set{Allow: h.Allow, Deny: h.Deny}
		if err := h.rules.Compile(); err != nil {
			return fmt.Errorf("rules: %v", err)
		}
	}
	if h.Bearer != nil {
		h.Bearer.provision()
	}
	if h.UnauthenticatedStatus == 0 {
		h.UnauthenticatedStatus = http.StatusUnauthorized
	}

	u, err := url.Parse(h.RedirectURL)
	if err != nil {
		return fmt.Errorf("redirect_url %q: %v", h.RedirectURL, err)
	}
	if u.IsAbs() {
		h.redirectURL = u
	}
	h.callbackPath = u.Path

	keys, err := h.loadKeys(ctx, repl)
	if err != nil {
		return err
	}
	h.keys = keys

	h.cookies = newCookieSettings(h.CookieName, h.CookieDomain, h.CookiePath,
		h.redirectURL != nil && h.redirectURL.Scheme == "https")
	// Login-state cookies must reach the callback whatever the session
	// cookie's path is.
	h.loginCookies = h.cookies
	h.loginCookies.path = "/"

	if idle := time.Duration(h.IdleTimeout); idle > 0 {
		h.touchInterval = max(idle/10, time.Second)
	}

	h.refreshes = new(refreshGroup)
	aad := []byte("oidc_auth session\x00" + issuer + "\x00" + clientID)
	switch h.SessionStore.Type {
	case "cookie", "memory", "redis":
	default:
		return fmt.Errorf("session_store %q: must be cookie, memory or redis", h.SessionStore.Type)
	}
	backend, release, err := h.openBackend(repl, "oidc_auth\x00"+issuer+"\x00"+clientID+"\x00"+h.CookieName)
	if err != nil {
		return fmt.Errorf("session_store: %v", err)
	}
	h.revocations, h.release = backend, release
	if h.SessionStore.Type == "cookie" {
		h.store = &cookieStore{
			owner:       h,
			keys:        h.keys,
			cookies:     h.cookies,
			aad:         aad,
			lifetime:    time.Duration(h.SessionLifetime),
			idle:        time.Duration(h.IdleTimeout),
			cache:       newSessionCache(sessionCacheSize),
			revocations: backend,
		}
	} else {
		h.store = &serverStore{
			owner:    h,
			keys:     h.keys,
			cookies:  h.cookies,
			aad:      append(aad, 0),
			lifetime: time.Duration(h.SessionLifetime),
			idle:     time.Duration(h.IdleTimeout),
			backend:  backend.(sessionstore.Store),
			decoded:  make(map[string]decodedRecord),
		}
	}

	auth, err := h.clientAuth(repl, clientSecret)
	if err != nil {
		return err
	}
	var introspectionTimeout time.Duration
	if h.Bearer != nil {
		introspectionTimeout = h.Bearer.introspectionTimeout
	}
	h.op = provider.New(provider.Config{
		Issuer:      issuer,
		Tenants:     h.Tenants,
		ClientID:    clientID,
		Auth:        auth,
		Scopes:      scopes,
		SigningAlgs: h.SigningAlgs,
		HTTPClient:  &http.Client{Timeout: providerRequestTimeout},
		Logger:      h.logger,

		IntrospectionTimeout: introspectionTimeout,
		Now:                  h.now,
	})
	go h.op.Run(ctx)
	return nil
}

// storageOf returns the context's storage, or nil for a context that
// belongs to no Caddy config (a module provisioned on its own, as other
// packages' tests and benchmarks do), whose Storage method panics.
func storageOf(ctx caddy.Context) (storage certmagic.Storage) {
	defer func() {
		if recover() != nil {
			storage = nil
		}
	}()
	return ctx.Storage()
}

func (h *Handler) loadKeys(ctx caddy.Context, repl *caddy.Replacer) (*keyRing, error) {
	var raw [][]byte
	for i, s := range h.SessionKeys {
		v, err := repl.ReplaceOrErr(s, true, true)
		if err != nil {
			return nil, fmt.Errorf("session key %d: %v", i+1, err)
		}
		k, err := decodeSessionKey(v)
		if err != nil {
			return nil, fmt.Errorf("session key %d %v", i+1, err)
		}
		raw = append(raw, k)
	}
	if len(raw) == 0 {
		k, err := loadOrCreateStoredKey(ctx, h.storage)
		if err != nil {
			return nil, fmt.Errorf("loading session key from storage: %v", err)
		}
		raw = append(raw, k)
	}
	return newKeyRing(raw)
}

// Cleanup releases the session store.
func (h *Handler) Cleanup() error {
	if h.release != nil {
		h.release()
	}
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	if h.Issuer == "" {
		return fmt.Errorf("issuer is required")
	}
	if h.ClientID == "" {
		return fmt.Errorf("client_id is required")
	}
	if h.redirectURL != nil && h.redirectURL.Scheme != "http" && h.redirectURL.Scheme != "https" {
		return fmt.Errorf("redirect_url %q: must be a path or an http(s) URL", h.RedirectURL)
	}
	for name, p := range map[string]string{
		"redirect_url path":        h.callbackPath,
		"login_path":               h.LoginPath,
		"logout_path":              h.LogoutPath,
		"userinfo_path":            h.UserinfoPath,
		"backchannel_logout_path":  h.BackchannelLogoutPath,
		"frontchannel_logout_path": h.FrontchannelLogoutPath,
		"cookie_path":              h.CookiePath,
	} {
		if !strings.HasPrefix(p, "/") {
			return fmt.Errorf("%s %q: must start with /", name, p)
		}
	}
	switch h.Unauthenticated {
	case "auto", "redirect", "status":
	default:
		return fmt.Errorf("unauthenticated %q: must be auto, redirect or status", h.Unauthenticated)
	}
	if h.UnauthenticatedStatus < 400 || h.UnauthenticatedStatus > 599 {
		return fmt.Errorf("unauthenticated_status %d: must be a 4xx or 5xx code", h.UnauthenticatedStatus)
	}
	if h.SessionLifetime < 0 || h.IdleTimeout < 0 {
		return fmt.Errorf("session_lifetime and idle_timeout must not be negative")
	}
	for k := range h.AuthParams {
		if slices.Contains(reservedAuthParams, k) {
			return fmt.Errorf("auth_params: %q is set by oidc_auth and cannot be configured", k)
		}
	}
	if h.Bearer != nil {
		if err := h.Bearer.validate(h); err != nil {
			return err
		}
	}
	switch h.Userinfo {
	case userinfoOn, userinfoOff, userinfoRefresh:
	default:
		return fmt.Errorf("userinfo %q: must be on, off or refresh", h.Userinfo)
	}
	if h.ClientAuth != "" && !slices.Contains(provider.Methods, h.ClientAuth) {
		return fmt.Errorf("client_auth %q: must be one of %s", h.ClientAuth, strings.Join(provider.Methods, ", "))
	}
	if a := h.ClientAssertionAudience; a != "" && a != provider.AudienceIssuer {
		if u, err := url.Parse(a); err != nil || !u.IsAbs() || u.Host == "" {
			return fmt.Errorf("client_assertion_audience %q: must be %s or an absolute URL", a, provider.AudienceIssuer)
		}
	}
	for _, t := range h.Tenants {
		if t == "" || strings.ContainsAny(t, "/{} ") {
			return fmt.Errorf("tenants: %q is not a tenant ID", t)
		}
	}
	for _, a := range h.SigningAlgs {
		if !slices.Contains(verify.Asymmetric, a) {
			return fmt.Errorf("signing_algs: %q is not allowed (use one of %s)", a, strings.Join(verify.Asymmetric, ", "))
		}
	}
	if strings.ContainsAny(h.CookieName, "=;, \t\r\n\"") || h.CookieName == "" {
		return fmt.Errorf("cookie_name %q: not a valid cookie name", h.CookieName)
	}
	return nil
}

// ServeHTTP serves oidc_auth's endpoints and authenticates every other request.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	switch r.URL.Path {
	case h.callbackPath:
		return h.serveCallback(w, r)
	case h.LoginPath:
		return h.serveLogin(w, r)
	case h.LogoutPath:
		return h.serveLogout(w, r)
	case h.UserinfoPath:
		return h.serveUserinfo(w, r)
	case h.BackchannelLogoutPath:
		return h.serveBackchannelLogout(w, r)
	case h.FrontchannelLogoutPath:
		return h.serveFrontchannelLogout(w, r)
	}

	if h.corsPreflight && r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		// Browsers send preflights without credentials; the request that
		// follows is authenticated as any other.
		return next.ServeHTTP(w, r)
	}
	if h.Bearer != nil {
		if r.URL.Path == h.Bearer.MetadataPath {
			return h.serveResourceMetadata(w, r)
		}
		if cred, ok := bearerCredential(r); ok {
			if served, err := h.serveBearerCredential(w, r, cred, func(r *http.Request) error { return next.ServeHTTP(w, r) }); served {
				return err
			}
		}
	}

	rc := h.requestCookies(r)
	s, err := h.session(w, r, &rc)
	if err != nil {
		return h.storeUnavailable(w, r, err)
	}
	if s == nil {
		return h.unauthenticated(w, r)
	}
	if h.rules != nil {
		if d := h.rules.Decide(s.ruleClaims()); !d.Allowed {
			return h.accessDenied(w, r, s.subject, d.Rule)
		}
	}
	return next.ServeHTTP(w, attach(r, s, h.stripOwnCookies(r, &rc)))
}

// loadSession returns the request's session as the store has it, or nil.
func (h *Handler) loadSession(r *http.Request) (*Session, error) {
	return h.store.Load(r, h.requestCookies(r).session)
}

// requestCookies reads the request's Cookie header.
func (h *Handler) requestCookies(r *http.Request) requestCookies {
	var rc requestCookies
	h.scanCookies(r, h.cookies.fullName(r, h.cookies.name), &rc)
	return rc
}

// session loads the request's session and checks its lifetime. With an idle
// timeout, a session in use is saved again now and then to move its
// last-seen time forward.
func (h *Handler) session(w http.ResponseWriter, r *http.Request, rc *requestCookies) (*Session, error) {
	s, err := h.store.Load(r, rc.session)
	if err != nil || s == nil {
		return nil, err
	}
	now := h.now()
	if s.expired(now, time.Duration(h.SessionLifetime), time.Duration(h.IdleTimeout)) {
		return nil, nil
	}
	if h.touchInterval > 0 && now.Sub(s.lastSeen) >= h.touchInterval {
		touched := s.touched(now)
		switch err := h.store.Update(w, r, s, touched); {
		case errors.Is(err, errSessionGone):
			return nil, nil // ended by a logout just now
		case err != nil:
			h.logger.Error("saving session", zap.Error(err))
		default:
			s = touched
		}
	}
	return s, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
