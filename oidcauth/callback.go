package oidcauth

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/provider"
	"github.com/oidcgate/caddy-oidc/internal/verify"
)

// serveCallback completes a sign-in: it matches the callback to the login
// attempt that started it, redeems the code with the PKCE verifier, verifies
// the ID token and establishes the session.
func (h *Handler) serveCallback(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	state := q.Get("state")

	// Find and consume the login attempt this callback belongs to. The
	// cookie is deleted whatever happens next, so a callback URL cannot be
	// replayed.
	var ls loginState
	var found bool
	if len(state) >= loginIDLength {
		name := h.loginCookieName(r, state)
		if value, ok := requestCookie(r, name); ok {
			h.loginCookies.expire(w, r, name)
			ls, found = h.openLoginState(value)
			found = found && subtle.ConstantTimeCompare([]byte(ls.State), []byte(state)) == 1
		}
	}

	if !found {
		// An error from the provider is shown only for a sign-in this
		// browser started: anyone can make a link to the callback, and its
		// text would appear on the site's own origin.
		h.logger.Info("callback with unknown, expired or replayed state", zap.Bool("error", q.Has("error")))
		signInFailed(nil, failState)
		return h.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed",
			"This sign-in link is unknown, expired or was already used.", true)
	}
	p, ok := h.providerNamed(ls.Provider)
	if !ok {
		signInFailed(nil, failState)
		return h.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed",
			"The identity provider this sign-in started with is no longer configured.", true)
	}
	// RFC 9207: a provider that names itself in its answer must name the
	// provider the sign-in went to; with several providers, an answer of
	// another (a mix-up attack) must not be taken for this one's.
	if q.Has("iss") && !p.issuerMatches(q.Get("iss")) {
		h.logger.Warn("callback from another issuer than the sign-in went to", zap.String("provider", p.metricName()), zap.String("iss", truncate(q.Get("iss"), 200)))
		signInFailed(p, failIssuer)
		return h.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed",
			"The answer names another identity provider than the one this sign-in went to.", true)
	}
	if e := q.Get("error"); e != "" {
		desc := q.Get("error_description")
		h.logger.Info("provider refused sign-in", zap.String("error", truncate(e, 100)), zap.String("error_description", truncate(desc, 300)))
		signInFailed(p, failProviderError)
		return h.errorPage(w, r, http.StatusForbidden, "Sign-in was refused",
			"The identity provider did not sign you in: "+truncate(e, 100)+describe(desc), true)
	}
	code := q.Get("code")
	if code == "" {
		signInFailed(p, failNoCode)
		return h.errorPage(w, r, http.StatusBadRequest, "Sign-in could not be completed",
			"The identity provider's answer has no authorization code.", true)
	}

	st, err := p.op.Get(r.Context())
	if err != nil {
		signInFailed(p, failProviderUnavailable)
		return h.providerUnavailable(w, r, err)
	}
	ctx, cancel := context.WithTimeout(r.Context(), providerRequestTimeout)
	defer cancel()
	tok, err := st.Exchange(ctx, code, ls.Verifier, h.redirectURI(r))
	if err != nil {
		var te *provider.TokenError
		if errors.As(err, &te) {
			// Only the error code and description: the raw response body
			// is the provider's and is not logged.
			h.logger.Warn("token exchange refused", zap.String("error", truncate(te.Code, 100)),
				zap.String("error_description", truncate(te.Description, 300)), zap.Int("status", te.Status))
			signInFailed(p, failTokenEndpoint)
			return h.errorPage(w, r, http.StatusBadGateway, "Sign-in could not be completed",
				"The identity provider refused to issue tokens: "+truncate(te.Code, 100)+describe(te.Description), true)
		}
		h.logger.Warn("token exchange failed", zap.Error(err))
		signInFailed(p, failTokenEndpoint)
		return h.providerUnavailable(w, r, err)
	}

	idt, err := st.Verifier.IDToken(ctx, tok.IDToken, tok.AccessToken, ls.Nonce)
	if err != nil {
		reason := verify.Reason(err)
		h.logger.Warn("ID token rejected", zap.String("reason", reason), zap.String("detail", err.Error()))
		if reason == "nonce" {
			signInFailed(p, failNonce)
		} else {
			signInFailed(p, failIDToken)
		}
		return h.errorPage(w, r, http.StatusUnauthorized, "Sign-in could not be completed",
			"The identity provider's ID token failed verification: "+err.Error(), true)
	}

	now := h.now()
	s := &Session{
		signInID:     randomString(16),
		subject:      idt.Subject,
		sid:          idt.SessionID,
		rawIDToken:   tok.IDToken,
		accessToken:  tok.AccessToken,
		refreshToken: tok.RefreshToken,
		tokenExpiry:  p.accessTokenExpiry(tok.Expiry, tok.AccessToken, now),
		createdAt:    now,
		lastSeen:     now,
		owner:        h,
		provider:     p,
		providerName: p.name,
	}
	s.subjectKey, s.sidKey, s.signInKey = p.indexKey(s.subject), p.indexKey(s.sid), p.indexKey(s.signInID)
	// A user's claims, and so the rules that read them, must not depend on
	// whether the provider answered: without userinfo, no sign-in.
	if s.userinfoJSON, err = p.userinfoOf(ctx, st, s.subject, tok.AccessToken, tok.IDToken); err != nil {
		if errors.Is(err, errProviderUnavailable) {
			h.logger.Warn("userinfo unavailable at sign-in", zap.Error(err))
			signInFailed(p, failUserinfo)
			return h.providerUnavailable(w, r, err)
		}
		h.logger.Warn("userinfo refused at sign-in", zap.String("sub", s.subject), zap.Error(err))
		signInFailed(p, failUserinfo)
		return h.errorPage(w, r, http.StatusUnauthorized, "Sign-in could not be completed",
			"The identity provider's userinfo answer was refused: "+err.Error(), true)
	}
	if err := s.deriveClaims(); err != nil {
		signInFailed(p, failIDToken)
		return h.errorPage(w, r, http.StatusUnauthorized, "Sign-in could not be completed", err.Error(), true)
	}
	if err := h.store.Save(w, r, s); err != nil {
		h.logger.Error("saving session", zap.Error(err))
		signInFailed(p, failSessionStore)
		return h.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in could not be completed",
			"The session could not be saved.", true)
	}
	h.logger.Info("signed in", zap.String("sub", s.subject), zap.String("provider", p.metricName()))
	// A user the rules refuse keeps the session the provider gave (the
	// site answers them 403 and offers a sign-out), but did not get in.
	if h.rules != nil {
		if d := h.rules.Decide(s.ruleClaims()); !d.Allowed {
			signInFailed(p, failRuleDenied)
			h.emitSession(eventAccessDenied, s, d.Rule)
		} else {
			h.signedIn(s)
		}
	} else {
		h.signedIn(s)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, safeRedirect(ls.Redirect), http.StatusSeeOther)
	return nil
}

func describe(desc string) string {
	if desc == "" {
		return "."
	}
	return " (" + truncate(desc, 300) + ")."
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
