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
	// another API would do. Required for JWT access tokens.
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

	cache *introspectionCache
}

// Defaults.
const (
	defaultIntrospectionCacheTTL = time.Minute
	defaultMetadataPath          = "/.well-known/oauth-protected-resource"
	introspectionCacheSize       = 10000
	bearerPrefix                 = "Bearer "
)

func (b *BearerConfig) provision() {
	if b.IntrospectionCacheTTL == 0 {
		b.IntrospectionCacheTTL = caddy.Duration(defaultIntrospectionCacheTTL)
	}
	if b.MetadataPath == "" {
		b.MetadataPath = defaultMetadataPath
	}
	b.cache = &introspectionCache{entries: make(map[[32]byte]introspected), max: introspectionCacheSize}
}

func (b *BearerConfig) validate() error {
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

// bearerToken returns the request's bearer token (RFC 6750 2.1), if any.
func bearerToken(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if len(v) <= len(bearerPrefix) || !strings.EqualFold(v[:len(bearerPrefix)], bearerPrefix) {
		return "", false
	}
	tok := strings.TrimSpace(v[len(bearerPrefix):])
	return tok, tok != ""
}

// errBearerRefused is a token that is not valid here (expired, another
// API's, unknown, inactive): 401 invalid_token.
type errBearerRefused struct{ reason string }

func (e errBearerRefused) Error() string { return e.reason }

// authenticateBearer verifies a bearer token: a JWT against its
// provider's keys and the configured rules, anything else, with
// introspection, at the provider.
func (h *Handler) authenticateBearer(r *http.Request, token string) (*bearerIdentity, error) {
	b := h.Bearer
	if strings.Count(token, ".") == 2 && len(b.Audience) > 0 {
		// The token's unverified iss says whose keys are to verify it;
		// the verification checks iss again.
		p, ok := h.providerOfIssuer(unverifiedIssuer(token))
		if !ok {
			if !h.several() {
				p = h.defaultProvider() // its verification names the fault
			} else {
				return nil, errBearerRefused{"the token is of no configured provider"}
			}
		}
		st, err := p.op.Get(r.Context())
		if err != nil {
			return nil, err
		}
		at, err := st.Verifier.AccessToken(r.Context(), token, verify.AccessTokenRules{
			Audiences: b.Audience, RequireTyp: b.Typ != "", Scopes: b.Scopes,
		})
		if err != nil {
			if verify.Reason(err) == "keys_unavailable" {
				return nil, fmt.Errorf("%w: %v", errProviderUnavailable, err)
			}
			return nil, errBearerRefused{err.Error()}
		}
		return &bearerIdentity{token: token, subject: at.Subject, claims: at.Claims, claimsJSON: at.ClaimsJSON, provider: p}, nil
	}
	if !b.Introspect {
		return nil, errBearerRefused{"the token is not a JWT access token for this API"}
	}
	p, in, err := h.introspect(r, token)
	if err != nil {
		return nil, err
	}
	if !in.Active {
		return nil, errBearerRefused{"the provider says the token is not active"}
	}
	if !in.Expiry.IsZero() && !h.now().Before(in.Expiry) {
		return nil, errBearerRefused{"the token has expired"}
	}
	if len(b.Audience) > 0 {
		if !audienceIn(in.Claims["aud"], b.Audience) {
			return nil, errBearerRefused{"the token is not for this resource"}
		}
	}
	granted := verify.Scopes(in.Claims)
	for _, want := range b.Scopes {
		if !containsString(granted, want) {
			return nil, errBearerRefused{fmt.Sprintf("the token does not grant scope %q", truncate(want, 100))}
		}
	}
	if in.Subject == "" {
		return nil, errBearerRefused{"the introspection answer names no subject"}
	}
	return &bearerIdentity{token: token, subject: in.Subject, claims: in.Claims, claimsJSON: in.ClaimsJSON, provider: p}, nil
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
		"resource":                 requestOrigin(r),
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
	if d := h.rules.Decide(id.ruleClaims()); !d.Allowed {
		metrics.BearerTokens.WithLabelValues("denied").Inc()
		h.emit(eventAccessDenied, id.provider, id.subject, "", d.Rule)
		return h.accessDenied(w, r, id.subject, d.Rule)
	}
	metrics.BearerTokens.WithLabelValues("accepted").Inc()
	return next(attachBearer(r, id))
}
