package oidcauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
	"github.com/oidcgate/caddy-oidc/internal/provider"
	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
	"github.com/oidcgate/caddy-oidc/internal/verify"
)

// Errors of FreshSession.
var (
	// ErrNoSession means the request is not signed in.
	ErrNoSession = errors.New("not signed in")
	// ErrSessionEnded means the provider refused to refresh the tokens
	// (invalid_grant: revoked, expired or already used refresh token); the
	// session has been deleted and the user must sign in again.
	ErrSessionEnded = errors.New("the identity provider ended the session")
	// ErrNoAccessToken means the session has no access token that is still
	// valid and none can be had without signing in again.
	ErrNoAccessToken = errors.New("the session has no usable access token")
	// ErrProviderUnavailable means the provider could not be reached to
	// refresh the tokens; the session is kept.
	ErrProviderUnavailable = errProviderUnavailable
)

// recentRefreshTTL is how long the result of a refresh is remembered for
// requests that still carry the old session: they were sent before the
// browser received the new cookie, and must not spend the old refresh
// token again (providers that rotate refresh tokens would treat that as
// token theft and revoke the whole grant).
const recentRefreshTTL = 2 * time.Minute

// maxRecentRefreshes bounds the memory remembered results take.
const maxRecentRefreshes = 10000

// FreshSession returns the request's session with an access token that is
// valid for at least minValidity, refreshing the tokens first when needed.
// A refreshed session is saved (its cookies set on w) and replaces the old
// one for the rest of the request: SessionFromRequest, the {oidc.user.*}
// placeholders and the ID token variables. Concurrent calls for one session
// make a single call to the provider's token endpoint.
//
// On error, WriteSessionError answers the request.
func FreshSession(w http.ResponseWriter, r *http.Request, minValidity time.Duration) (*Session, error) {
	st, ok := r.Context().Value(sessionCtxKey{}).(*requestState)
	if !ok || st.session == nil {
		return nil, ErrNoSession
	}
	s := st.session
	h := s.owner
	now := h.now()
	if s.accessToken != "" && (s.tokenExpiry.IsZero() || s.tokenExpiry.Sub(now) > minValidity) {
		return s, nil
	}
	if s.refreshToken == "" {
		if s.accessToken != "" && s.tokenExpiry.After(now) {
			return s, nil // expiring soon, but nothing better to be had
		}
		return nil, ErrNoAccessToken
	}
	r = st.storeRequest(r) // saving or deleting the session needs its cookies
	ns, err := h.refreshes.refresh(r.Context(), h, s)
	if errors.Is(err, sessionstore.ErrUnavailable) {
		h.logger.Error("session store unavailable while refreshing", zap.Error(err))
		return nil, err
	}
	if err != nil {
		if errors.Is(err, ErrSessionEnded) {
			// The reason (a refused refreshed ID token, userinfo about
			// another user) is fixed text, never a token value.
			h.logger.Info("session ended by the provider", zap.String("sub", s.subject), zap.Error(err))
			if derr := h.store.Delete(w, r, s); derr != nil {
				h.logger.Error("deleting session", zap.Error(derr))
			}
		} else {
			h.logger.Warn("refreshing tokens failed", zap.String("sub", s.subject), zap.Error(err))
		}
		return nil, err
	}
	if err := h.store.Update(w, r, s, ns); err != nil {
		if errors.Is(err, errSessionGone) {
			// Ended (a logout) while the provider was answering.
			h.logger.Info("session ended during a refresh", zap.String("sub", s.subject))
			return nil, ErrSessionEnded
		}
		h.logger.Error("saving refreshed session", zap.Error(err))
	}
	st.session = ns
	setVars(r, ns)
	return ns, nil
}

// WriteSessionError answers a request for which FreshSession failed: a
// request whose session ended is treated as unauthenticated by the
// oidc_auth handler's rules (navigations are sent to sign in, other requests
// get its status), a provider outage gets 503.
func WriteSessionError(w http.ResponseWriter, r *http.Request, err error) error {
	s, _ := SessionFromRequest(r)
	if s == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthenticated", "message": "sign in first"})
		return nil
	}
	h := s.owner
	if errors.Is(err, sessionstore.ErrUnavailable) {
		return h.storeUnavailable(w, r, err)
	}
	if errors.Is(err, errProviderUnavailable) {
		return h.providerUnavailable(w, r, err)
	}
	return h.unauthenticated(w, r)
}

// refreshGroup makes one token-endpoint call per refresh token, whatever
// the number of concurrent requests, and remembers recent results.
type refreshGroup struct {
	mu       sync.Mutex
	inflight map[string]*refreshCall
	recent   map[string]recentRefresh
}

type refreshCall struct {
	done    chan struct{}
	session *Session
	err     error
}

type recentRefresh struct {
	session *Session
	at      time.Time
}

func (g *refreshGroup) refresh(ctx context.Context, h *Handler, s *Session) (*Session, error) {
	// The access token is part of the key: a provider that keeps the
	// refresh token (Google answers refreshes without a new one) leaves
	// the refreshed session with the same refresh token, and once its own
	// access token is expiring it must be refreshed again, not handed the
	// result that replaced the session before it.
	key := s.refreshToken + "\x00" + s.accessToken
	g.mu.Lock()
	if g.inflight == nil {
		g.inflight = make(map[string]*refreshCall)
		g.recent = make(map[string]recentRefresh)
	}
	if rr, ok := g.recent[key]; ok && h.now().Sub(rr.at) < recentRefreshTTL {
		g.mu.Unlock()
		return rr.session, nil
	}
	c, ok := g.inflight[key]
	if !ok {
		c = &refreshCall{done: make(chan struct{})}
		g.inflight[key] = c
		g.mu.Unlock()
		// The call outlives the request that started it: the others
		// waiting for it must not fail because that client went away.
		// Server-side sessions are also coordinated with other instances.
		callCtx := context.WithoutCancel(ctx)
		if ss, ok := h.store.(*serverStore); ok {
			c.session, c.err = ss.refresh(callCtx, s, h.refreshTokens)
		} else {
			c.session, c.err = h.refreshTokens(callCtx, s)
		}
		g.mu.Lock()
		delete(g.inflight, key)
		if c.err == nil {
			g.remember(key, c.session, h.now())
		}
		g.mu.Unlock()
		close(c.done)
	} else {
		g.mu.Unlock()
	}
	select {
	case <-c.done:
		return c.session, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *refreshGroup) remember(key string, s *Session, now time.Time) {
	if len(g.recent) >= maxRecentRefreshes {
		for k, rr := range g.recent {
			if now.Sub(rr.at) >= recentRefreshTTL {
				delete(g.recent, k)
			}
		}
		if len(g.recent) >= maxRecentRefreshes {
			clear(g.recent)
		}
	}
	g.recent[key] = recentRefresh{s, now}
}

// refreshTokens redeems the session's refresh token at its provider,
// and counts and announces the result.
func (h *Handler) refreshTokens(ctx context.Context, s *Session) (*Session, error) {
	ns, err := h.redeemRefreshToken(ctx, s)
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrSessionEnded):
		result = "ended"
	default:
		result = "failed"
	}
	metrics.Refreshes.WithLabelValues(s.provider.metricName(), result).Inc()
	if err != nil {
		h.emitSession(eventRefreshFailed, s, result)
	}
	return ns, err
}

// redeemRefreshToken redeems the session's refresh token at its provider. A new ID token, if the
// provider sends one, is verified like the first (OpenID Connect Core 12.2)
// and must be about the same subject. With Userinfo `refresh`, the
// userinfo endpoint is asked again.
func (h *Handler) redeemRefreshToken(ctx context.Context, s *Session) (*Session, error) {
	p := s.provider
	st, err := p.op.Get(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, providerRequestTimeout)
	defer cancel()
	tok, err := st.Refresh(ctx, s.refreshToken)
	if err != nil {
		var te *provider.TokenError
		if errors.As(err, &te) && te.Code == "invalid_grant" {
			return nil, ErrSessionEnded
		}
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%w: token endpoint answered %d %s", errProviderUnavailable, te.Status, truncate(te.Code, 100))
		}
		return nil, err
	}
	ns := *s
	ns.record = nil // not stored yet
	ns.accessToken = tok.AccessToken
	ns.tokenExpiry = p.accessTokenExpiry(tok.Expiry, tok.AccessToken, h.now())
	if tok.RefreshToken != "" {
		ns.refreshToken = tok.RefreshToken
	}
	if tok.IDToken != "" {
		// OpenID Connect Core 12.2: the sign-in's checks, and the same
		// issuer, subject, audience and azp as the session's ID token.
		original, err := verify.IdentityOf(s.claimsJSON)
		if err != nil {
			return nil, fmt.Errorf("%w: the session's ID token: %v", ErrSessionEnded, err)
		}
		if _, err := st.Verifier.RefreshedIDToken(ctx, tok.IDToken, tok.AccessToken, original); err != nil {
			return nil, fmt.Errorf("%w: refreshed ID token refused: %v", ErrSessionEnded, err)
		}
		ns.rawIDToken = tok.IDToken
	}
	if p.cfg.Userinfo == userinfoRefresh {
		info, err := p.userinfoOf(ctx, st, ns.subject, ns.accessToken, ns.rawIDToken)
		switch {
		case errors.Is(err, errProviderUnavailable):
			// The new tokens are kept (a rotated refresh token cannot be
			// given back); the claims are those read before.
			h.logger.Warn("userinfo unavailable after a refresh; keeping the claims read before", zap.String("sub", s.subject), zap.Error(err))
		case err != nil:
			return nil, fmt.Errorf("%w: userinfo after a refresh refused: %v", ErrSessionEnded, err)
		default:
			ns.userinfoJSON = info
		}
	}
	if err := ns.deriveClaims(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSessionEnded, err)
	}
	return &ns, nil
}
