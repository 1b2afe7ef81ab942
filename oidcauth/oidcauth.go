// Package oidcauth provides the http.handlers.oidc_auth Caddy module: it signs
// users in with an OpenID Connect provider (authorization-code flow with
// PKCE), keeps their session, and tells later handlers who they are.
package oidcauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/origin"
	"github.com/oidcgate/caddy-oidc/internal/rules"
	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
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
// | `/oauth2/health` | 200 or 503 with a small JSON report: providers and session store ready |
//
// For a signed-in request it sets these placeholders:
//
// | Placeholder | Value |
// |---|---|
// | `{http.auth.user.id}` | the ID token's `sub` claim |
// | `{http.auth.user.<claim>}` | each top-level string, number or boolean claim of the ID token, then of userinfo |
// | `{http.auth.user.provider}` | the provider's name, when several are configured |
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
	// The provider, in the single-provider form.
	ProviderConfig

	// Providers are several providers to sign in with, each with a name;
	// a sign-in starts with a page to choose one (or
	// `/oauth2/login?provider=<name>`), and each session stays with its
	// provider for refresh, userinfo and logout. Default: none (the
	// single-provider form).
	Providers []*NamedProvider `json:"providers,omitempty"`

	// RedirectURL is the callback address registered at the provider: a path
	// on the requested host, or an absolute URL (use that behind a proxy that
	// terminates TLS). Its path is where oidc_auth serves the callback.
	// Default: `/oauth2/callback`.
	RedirectURL string `json:"redirect_url,omitempty"`

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

	// HealthPath answers load balancers' health checks: 200 when every
	// provider can be reached and its keys are loaded and the session
	// store answers, else 503, with a small JSON report. Default:
	// `/oauth2/health`.
	HealthPath string `json:"health_path,omitempty"`

	// HealthDetails puts the failed checks' error messages, which may
	// name internal addresses, in the health report. Default: off (they
	// go to the log only).
	HealthDetails bool `json:"health_details,omitempty"`

	// SessionStore says where sessions are kept. Default: encrypted cookies.
	SessionStore *SessionStoreConfig `json:"session_store,omitempty"`

	callbackPath string
	// revocations is where logouts of cookie sessions and the logout
	// tokens already used are kept: the server-side store, Redis, or
	// Caddy's storage; release gives the stores back.
	revocations sessionstore.Revocations
	release     func()
	// backend is revocations with its operations measured: what the
	// handler and its session store use.
	backend sessionstore.Revocations
	// storage is Caddy's storage: the generated session key and the
	// cookie store's revocation list live there. Provisioning sets it
	// (unit tests set it beforehand).
	storage     certmagic.Storage
	redirectURL *url.URL // absolute RedirectURL, or nil for request-relative
	// providers are the single provider, or the several in Providers'
	// order, by name in providerByName.
	providers      []*oidcProvider
	providerByName map[string]*oidcProvider
	// scope binds sealed cookies to this handler's provider (its issuer
	// and client), or, with several, to the handler.
	scope         string
	rules         *rules.Set // nil: everyone enters
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
	// ctx is the context the handler was provisioned with, the origin of
	// the events it emits through events (nil outside a Caddy config).
	ctx    caddy.Context
	events *caddyevents.App
	health *healthCache
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
	if h.HealthPath == "" {
		h.HealthPath = defaultHealthPath
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
	if err := h.provisionProviders(repl); err != nil {
		return err
	}
	aad := []byte("oidc_auth session\x00" + h.scope)
	switch h.SessionStore.Type {
	case "cookie", "memory", "redis":
	default:
		return fmt.Errorf("session_store %q: must be cookie, memory or redis", h.SessionStore.Type)
	}
	backend, release, err := h.openBackend(repl, "oidc_auth\x00"+h.scope+"\x00"+h.CookieName)
	if err != nil {
		return fmt.Errorf("session_store: %v", err)
	}
	h.revocations, h.release = backend, release
	h.backend = measure(backend, backendName(backend))
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	h.ctx = ctx
	h.events = eventsOf(ctx)
	h.health = new(healthCache)
	if h.SessionStore.Type == "cookie" {
		h.store = &cookieStore{
			owner:       h,
			keys:        h.keys,
			cookies:     h.cookies,
			aad:         aad,
			lifetime:    time.Duration(h.SessionLifetime),
			idle:        time.Duration(h.IdleTimeout),
			cache:       newSessionCache(sessionCacheSize),
			revocations: h.backend,
		}
	} else {
		h.store = &serverStore{
			owner:    h,
			keys:     h.keys,
			cookies:  h.cookies,
			aad:      append(aad, 0),
			lifetime: time.Duration(h.SessionLifetime),
			idle:     time.Duration(h.IdleTimeout),
			backend:  h.backend.(sessionstore.Store),
			decoded:  make(map[string]decodedRecord),
		}
	}

	for _, p := range h.providers {
		go p.op.Run(ctx)
	}
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
	if err := h.validateProviders(); err != nil {
		return err
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
		"health_path":              h.HealthPath,
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
	for _, name := range h.rules.Providers() {
		if _, ok := h.providerNamed(name); !ok || name == "" {
			return fmt.Errorf("rules: provider %q: no provider block of that name", name)
		}
	}
	if h.Bearer != nil {
		if err := h.Bearer.validate(h); err != nil {
			return err
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
	case h.HealthPath:
		return h.serveHealth(w, r)
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
			h.emitSession(eventAccessDenied, s, d.Rule)
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
		// Ended by its lifetime or idle timeout: forgotten here, so that
		// it is counted once.
		if err := h.store.Delete(w, r, s); err != nil {
			h.logger.Error("deleting an expired session", zap.Error(err))
		} else {
			h.loggedOut(s.provider, logoutExpired, s.subject, s.sid)
		}
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
