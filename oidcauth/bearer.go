package oidcauth

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
	"github.com/oidcgate/caddy-oidc/internal/provider"
	"github.com/oidcgate/caddy-oidc/internal/verify"
)

// BearerConfig lets API clients that already hold an access token of the
// provider in (a command-line tool, a mobile app, another service): a
// request with `Authorization: Bearer <token>` is authenticated by the
// token, without a browser session.
type BearerConfig struct {
	// Audience lists this API's identifiers: a JWT access token's aud must
	// name one of them (RFC 9068), or a token the provider issued for
	// another API would do; so must an introspection answer's aud, when it
	// has one. Required for JWT access tokens.
	Audience []string `json:"audience,omitempty"`

	// Introspect checks tokens that are not JWTs (opaque tokens) at the
	// provider's introspection endpoint (RFC 7662), authenticating as the
	// client. Default: off (only JWT access tokens are accepted).
	Introspect bool `json:"introspect,omitempty"`

	// Typ, when `at+jwt`, requires JWT access tokens to say so in their
	// typ header (RFC 9068 2.1), which tells them from ID tokens. Default:
	// none (many providers issue `JWT`).
	Typ string `json:"typ,omitempty"`

	// Scopes are required of every token: its scope (or scp) claim, or the
	// introspection answer's, must grant each. Default: none.
	Scopes []string `json:"scopes,omitempty"`

	// IntrospectionCacheTTL is how long an introspection answer is reused
	// for the same token (never past the token's expiry). A token revoked
	// at the provider is still accepted for up to this long. Default: 1m.
	IntrospectionCacheTTL caddy.Duration `json:"introspection_cache_ttl,omitempty"`

	// MetadataPath serves this API's OAuth 2.0 protected resource metadata
	// (RFC 9728), which the 401 answers point clients to. Default:
	// `/.well-known/oauth-protected-resource`.
	MetadataPath string `json:"metadata_path,omitempty"`

	cache    *introspectionCache
	verified *verifiedCache
	// introspectionTimeout bounds an introspection call; tests shorten it.
	introspectionTimeout time.Duration
}

// Defaults.
const (
	defaultIntrospectionCacheTTL = time.Minute
	defaultMetadataPath          = "/.well-known/oauth-protected-resource"
	introspectionCacheSize       = 10000
	verifiedCacheSize            = 10000
	// verifiedTokenTTL is how long a verified JWT access token is taken
	// without checking its signature again (never past its exp): a key
	// the provider withdraws stops counting for it after this long.
	verifiedTokenTTL = time.Minute
	bearerPrefix     = "Bearer "
)

func (b *BearerConfig) provision() {
	if b.IntrospectionCacheTTL == 0 {
		b.IntrospectionCacheTTL = caddy.Duration(defaultIntrospectionCacheTTL)
	}
	if b.MetadataPath == "" {
		b.MetadataPath = defaultMetadataPath
	}
	b.cache = &introspectionCache{entries: make(map[[32]byte]introspected), max: introspectionCacheSize}
	b.verified = &verifiedCache{entries: make(map[string]verifiedToken), max: verifiedCacheSize}
}

func (b *BearerConfig) validate(h *Handler) error {
	if b.Introspect {
		// RFC 7662 2.1: the introspection endpoint answers only an
		// authenticated caller; without credentials every opaque token
		// would be answered 503.
		configs := map[string]*ProviderConfig{"": &h.ProviderConfig}
		if len(h.Providers) > 0 {
			configs = make(map[string]*ProviderConfig, len(h.Providers))
			for _, np := range h.Providers {
				configs[" (provider "+np.Name+")"] = &np.ProviderConfig
			}
		}
		for in, c := range configs {
			if c.ClientSecret == "" && c.ClientKey == "" && c.ClientKeyFile == "" {
				return errors.New("bearer: introspect needs the client's credentials (client_secret or client_key)" + in)
			}
		}
	}
	if len(b.Audience) == 0 && !b.Introspect {
		return errors.New("bearer: name the audience of JWT access tokens, or introspect")
	}
	if b.Typ != "" && !strings.EqualFold(b.Typ, "at+jwt") {
		return fmt.Errorf("bearer: typ %q: only at+jwt can be required", b.Typ)
	}
	if b.IntrospectionCacheTTL < 0 {
		return errors.New("bearer: introspection_cache_ttl must not be negative")
	}
	if !strings.HasPrefix(b.MetadataPath, "/") {
		return fmt.Errorf("bearer: metadata_path %q: must start with /", b.MetadataPath)
	}
	return nil
}

// bearerIdentity is who a bearer token says the caller is.
type bearerIdentity struct {
	token      string
	provider   *oidcProvider
	subject    string
	claims     map[string]any
	claimsJSON []byte
}

// bearerCredential returns the value of the request's Authorization
// header with the Bearer scheme (RFC 6750 2.1), if any. It is a token only
// if isB64Token says so.
func bearerCredential(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if len(v) <= len(bearerPrefix) || !strings.EqualFold(v[:len(bearerPrefix)], bearerPrefix) {
		return "", false
	}
	tok := strings.TrimSpace(v[len(bearerPrefix):])
	return tok, tok != ""
}

// serveBearerCredential decides a request with a Bearer credential by
// it, and reports false when the credential is no token at all. A value
// outside the token syntax is none: that is how the browser app sends
// token_inject's placeholder (`Bearer <<APPSMITH_...>>`) with its
// session, and the session, not the placeholder, must decide that request.
// A token verified before is found first, so the syntax of an API
// client's every call is not read again.
func (h *Handler) serveBearerCredential(w http.ResponseWriter, r *http.Request, cred string, next func(*http.Request) error) (bool, error) {
	if id, ok := h.Bearer.verified.get(cred, h.now()); ok {
		return true, h.admitBearer(w, r, id, next)
	}
	if !isB64Token(cred) {
		return false, nil
	}
	return true, h.serveBearer(w, r, cred, next)
}

// isB64Token reports whether s has RFC 6750's b64token syntax:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64TokenChars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

var b64TokenChars = func() (t [256]bool) {
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/") {
		t[c] = true
	}
	return t
}()

// errBearerRefused is a token that is not valid here (expired, another
// API's, unknown, inactive): 401 invalid_token.
type errBearerRefused struct {
	reason string
	// scope: the token is valid but does not grant a scope this API
	// requires: 403 insufficient_scope (RFC 6750 3.1).
	scope bool
}

func (e errBearerRefused) Error() string { return e.reason }

// authenticateBearer verifies a bearer token: a JWT against the provider's
// keys and the configured rules, anything else, with introspection, at the
// provider.
func (h *Handler) authenticateBearer(r *http.Request, token string) (*bearerIdentity, error) {
	b := h.Bearer
	if strings.Count(token, ".") == 2 && len(b.Audience) > 0 {
		// The token's unverified iss says whose keys are to verify it;
		// the verification checks iss again.
		p := h.defaultProvider() // with one, its verification names the fault
		if h.several() {
			var ok bool
			if p, ok = h.providerOfIssuer(unverifiedIssuer(token)); !ok {
				return nil, errBearerRefused{reason: "the token is of no configured provider"}
			}
		}
		st, err := p.op.Get(r.Context())
		if err != nil {
			return nil, err
		}
		return h.verifyJWT(r, p, st, token)
	}
	if !b.Introspect {
		return nil, errBearerRefused{reason: "the token is not a JWT access token for this API"}
	}
	p, in, err := h.introspect(r, token)
	if err != nil {
		return nil, err
	}
	if !in.Active {
		return nil, errBearerRefused{reason: "the provider says the token is not active"}
	}
	if !in.Expiry.IsZero() && !h.now().Before(in.Expiry) {
		return nil, errBearerRefused{reason: "the token has expired"}
	}
	// aud is optional in an introspection answer (RFC 7662 2.2): when
	// there, it must name this API; when not, the provider vouched for
	// the token to this client, as Zitadel does only for a client in the
	// token's audience.
	if aud, ok := in.Claims["aud"]; ok && len(b.Audience) > 0 && !audienceIn(aud, b.Audience) {
		return nil, errBearerRefused{reason: "the token is not for this resource"}
	}
	granted := verify.Scopes(in.Claims)
	for _, want := range b.Scopes {
		if !containsString(granted, want) {
			return nil, errBearerRefused{reason: fmt.Sprintf("the token does not grant scope %q", truncate(want, 100)), scope: true}
		}
	}
	if in.Subject == "" {
		return nil, errBearerRefused{reason: "the introspection answer names no subject"}
	}
	return &bearerIdentity{token: token, subject: in.Subject, claims: in.Claims, claimsJSON: in.ClaimsJSON, provider: p}, nil
}

// verifyJWT verifies a JWT access token and keeps it as verified.
func (h *Handler) verifyJWT(r *http.Request, p *oidcProvider, st *provider.State, token string) (*bearerIdentity, error) {
	b := h.Bearer
	now := h.now()
	at, err := st.Verifier.AccessToken(r.Context(), token, verify.AccessTokenRules{
		Audiences: b.Audience, RequireTyp: b.Typ != "", Scopes: b.Scopes,
	})
	if err != nil {
		if verify.Reason(err) == "keys_unavailable" {
			return nil, fmt.Errorf("%w: %v", errProviderUnavailable, err)
		}
		return nil, errBearerRefused{reason: err.Error(), scope: verify.Reason(err) == "scope"}
	}
	id := &bearerIdentity{token: token, subject: at.Subject, claims: at.Claims, claimsJSON: at.ClaimsJSON, provider: p}
	b.verified.put(token, verifiedToken{id: id, expiry: at.Expiry, until: now.Add(verifiedTokenTTL)}, now)
	return id, nil
}

// verifiedCache keeps JWT access tokens already verified, so that an API
// client's every call does not cost a signature check (tens of
// microseconds): bounded in number, each until its exp and
// verifiedTokenTTL. The token itself is the key, as the identity it maps
// to holds it anyway (for token_inject), and a lookup by it costs no
// allocation, unlike hashing it first.
type verifiedCache struct {
	mu      sync.Mutex
	entries map[string]verifiedToken
	max     int
}

type verifiedToken struct {
	id            *bearerIdentity
	expiry, until time.Time
}

func (c *verifiedCache) get(key string, now time.Time) (*bearerIdentity, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || !now.Before(e.expiry) || !now.Before(e.until) {
		return nil, false
	}
	return e.id, true
}

func (c *verifiedCache) put(key string, v verifiedToken, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.expiry) || !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k) // an arbitrary one: a miss costs a verification
		}
	}
	c.entries[key] = v
}

// len is the number of tokens kept.
func (c *verifiedCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// introspect asks the providers about an opaque token, through the cache:
// in their configured order, until one says it is active.
func (h *Handler) introspect(r *http.Request, token string) (*oidcProvider, *provider.Introspection, error) {
	b := h.Bearer
	key := sha256.Sum256([]byte(token))
	now := h.now()
	if e, ok := b.cache.get(key, now); ok {
		metrics.IntrospectionCache.WithLabelValues("hit").Inc()
		return e.provider, e.in, nil
	}
	metrics.IntrospectionCache.WithLabelValues("miss").Inc()
	var (
		p  *oidcProvider
		in *provider.Introspection
	)
	for _, p = range h.providers {
		st, err := p.op.Get(r.Context())
		if err != nil {
			return nil, nil, err
		}
		if in, err = st.Introspect(r.Context(), token); err != nil {
			return nil, nil, err
		}
		if in.Active {
			break
		}
	}
	until := now.Add(time.Duration(b.IntrospectionCacheTTL))
	if !in.Expiry.IsZero() && in.Expiry.Before(until) {
		until = in.Expiry
	}
	b.cache.put(key, introspected{provider: p, in: in}, until, now)
	return p, in, nil
}

// introspectionCache keeps introspection answers, by a hash of the token,
// bounded in number and never past the token's expiry.
type introspectionCache struct {
	mu      sync.Mutex
	entries map[[32]byte]introspected
	max     int
}

type introspected struct {
	provider *oidcProvider
	in       *provider.Introspection
	until    time.Time
}

func (c *introspectionCache) get(key [32]byte, now time.Time) (introspected, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.until) {
		return introspected{}, false
	}
	return e, true
}

func (c *introspectionCache) put(key [32]byte, e introspected, until, now time.Time) {
	if !now.Before(until) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k) // an arbitrary one: a miss costs a call
		}
	}
	e.until = until
	c.entries[key] = e
}

// len is the number of answers kept.
func (c *introspectionCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func audienceIn(v any, want []string) bool {
	switch a := v.(type) {
	case string:
		return containsString(want, a)
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok && containsString(want, s) {
				return true
			}
		}
	}
	return false
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// bearerChallenge answers a request on a route that takes bearer tokens
// without a usable one: 401 with WWW-Authenticate (RFC 6750 3) naming the
// error and pointing to the protected resource metadata (RFC 9728 5.1).
func (h *Handler) bearerChallenge(w http.ResponseWriter, r *http.Request, description string) error {
	metadata := requestOrigin(r) + h.Bearer.MetadataPath
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="invalid_token", error_description=%q, resource_metadata=%q`,
		strings.ReplaceAll(r.Host, `"`, ""), description, metadata))
	writeJSON(w, http.StatusUnauthorized, map[string]string{
		"error":             "invalid_token",
		"error_description": description,
	})
	return nil
}

// insufficientScope answers a valid token that does not grant every scope
// the API requires: 403 with the scopes to ask for (RFC 6750 3.1).
func (h *Handler) insufficientScope(w http.ResponseWriter, r *http.Request) error {
	const description = "the access token does not grant the scopes this API requires"
	metadata := requestOrigin(r) + h.Bearer.MetadataPath
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope", error_description=%q, scope=%q, resource_metadata=%q`,
		strings.ReplaceAll(r.Host, `"`, ""), description, strings.Join(h.Bearer.Scopes, " "), metadata))
	writeJSON(w, http.StatusForbidden, map[string]string{
		"error":             "insufficient_scope",
		"error_description": description,
		"scope":             strings.Join(h.Bearer.Scopes, " "),
	})
	return nil
}

// serveResourceMetadata answers with this API's OAuth 2.0 protected
// resource metadata (RFC 9728 2): which authorization server issues its
// tokens and how they are sent.
func (h *Handler) serveResourceMetadata(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return nil
	}
	issuers := make([]string, 0, len(h.providers))
	var algs []string
	for _, p := range h.providers {
		issuer := p.op.Issuer()
		if st := p.op.Current(); st != nil {
			issuer = st.Metadata.Issuer
		}
		issuers = append(issuers, issuer)
		for _, a := range p.cfg.SigningAlgs {
			if !slices.Contains(algs, a) {
				algs = append(algs, a)
			}
		}
	}
	doc := map[string]any{
		"resource":                 h.resourceIdentifier(r),
		"authorization_servers":    issuers,
		"bearer_methods_supported": []string{"header"},
	}
	if len(h.Bearer.Scopes) > 0 {
		doc["scopes_supported"] = h.Bearer.Scopes
	}
	if len(algs) > 0 {
		doc["resource_signing_alg_values_supported"] = algs
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	writeJSON(w, http.StatusOK, doc)
	return nil
}

// resourceIdentifier is the resource the metadata is about: the URL its
// own URL was made from by inserting the well-known path (RFC 9728 3.1),
// which a client checks the document's resource against (3.3); the
// site's origin for a metadata path elsewhere.
func (h *Handler) resourceIdentifier(r *http.Request) string {
	rest, ok := strings.CutPrefix(h.Bearer.MetadataPath, defaultMetadataPath)
	if !ok || (rest != "" && rest[0] != '/') {
		rest = ""
	}
	return requestOrigin(r) + rest
}

// serveBearer authenticates a request by its bearer token and passes it
// on, or answers 401 (refused token), 503 (provider unreachable) or 403
// (the rules refuse the caller).
func (h *Handler) serveBearer(w http.ResponseWriter, r *http.Request, token string, next func(*http.Request) error) error {
	id, err := h.authenticateBearer(r, token)
	var refused errBearerRefused
	switch {
	case errors.As(err, &refused):
		h.logger.Info("bearer token refused", zap.String("reason", refused.reason))
		metrics.BearerTokens.WithLabelValues("refused").Inc()
		if refused.scope {
			return h.insufficientScope(w, r)
		}
		return h.bearerChallenge(w, r, "the access token is not valid here")
	case err != nil:
		h.logger.Warn("bearer token could not be checked", zap.Error(err))
		metrics.BearerTokens.WithLabelValues("unavailable").Inc()
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{
			"error":   "temporarily_unavailable",
			"message": "the access token cannot be checked right now",
		})
		return nil
	}
	return h.admitBearer(w, r, id, next)
}

// admitBearer lets a caller whose token is valid in, if the rules do. A
// session cookie that came along stays here, as on a session's request.
func (h *Handler) admitBearer(w http.ResponseWriter, r *http.Request, id *bearerIdentity, next func(*http.Request) error) error {
	if d := h.rules.Decide(id.ruleClaims()); !d.Allowed {
		bearerDenied.Inc()
		h.emit(eventAccessDenied, id.provider, id.subject, "", d.Rule)
		return h.accessDenied(w, r, id.subject, d.Rule)
	}
	bearerAccepted.Inc()
	if _, ok := r.Header["Cookie"]; ok {
		rc := h.requestCookies(r)
		h.stripOwnCookies(r, &rc)
	}
	return next(attachBearer(r, id))
}

// The counters of bearer requests let in or refused by the rules, looked
// up once: they are counted on every bearer request.
var (
	bearerAccepted = metrics.BearerTokens.WithLabelValues("accepted")
	bearerDenied   = metrics.BearerTokens.WithLabelValues("denied")
)
