package oidcauth

import (
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
)

// maxLogoutRequest bounds the body of a back-channel logout request.
const maxLogoutRequest = 64 << 10

// serveBackchannelLogout ends sessions on the provider's word, per OpenID
// Connect Back-Channel Logout 1.0: the logout_token is verified (typ,
// signature, iss, aud, exp, a recent iat, the back-channel logout event, no
// nonce, a sid or sub, a jti not used before), then every matching session
// ends. Server-side sessions are deleted; a
// cookie session cannot be reached, so its subject or sid is put on a
// revocation list until such sessions would have expired anyway.
func (h *Handler) serveBackchannelLogout(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "invalid_request", "error_description": "use POST"})
		return nil
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutRequest)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "unreadable form"})
		return nil
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "no logout_token"})
		return nil
	}
	// With several providers, the token's unverified iss only says which
	// provider's keys are to verify it; the verification checks iss again.
	p := h.defaultProvider()
	if h.several() {
		var ok bool
		if p, ok = h.providerOfIssuer(unverifiedIssuer(raw)); !ok {
			return h.refuseLogoutToken(w, errString("the logout token is of no configured provider (iss)"))
		}
	}
	st, err := p.op.Get(r.Context())
	if err != nil {
		h.logger.Warn("back-channel logout while the provider is unavailable", zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return nil
	}
	lt, err := st.Verifier.LogoutToken(r.Context(), raw)
	if err != nil {
		return h.refuseLogoutToken(w, err)
	}
	// A logout token is used once: a replay, which could end sessions
	// signed in after the first, is refused.
	fresh, err := h.backend.Remember(r.Context(), "jti:"+p.indexKey(lt.TokenID), lt.RememberUntil)
	if err != nil {
		h.logger.Error("back-channel logout", zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return nil
	}
	if !fresh {
		return h.refuseLogoutToken(w, errString("the logout token was used before (jti)"))
	}

	if err := h.endProviderSessions(r, p, lt.Subject, lt.SessionID); err != nil {
		h.logger.Error("back-channel logout", zap.Error(err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return nil
	}
	h.logger.Info("back-channel logout", zap.String("sub", lt.Subject), zap.String("sid", lt.SessionID))
	h.loggedOut(p, logoutBackchannel, lt.Subject, lt.SessionID)
	w.WriteHeader(http.StatusOK)
	return nil
}

// refuseLogoutToken answers 400 with a generic description: the reason
// goes to the log, not to whoever sent the token.
func (h *Handler) refuseLogoutToken(w http.ResponseWriter, err error) error {
	h.logger.Info("back-channel logout token refused", zap.String("reason", err.Error()))
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "the logout token is not valid"})
	return nil
}

// revocationLifetime is how long a revocation of sessions that exist now
// must be kept: until the last of them would have expired anyway.
func (h *Handler) revocationLifetime() time.Duration {
	if h.SessionLifetime > 0 {
		return time.Duration(h.SessionLifetime)
	}
	return defaultSessionLifetime
}

// revocationSelector names s in revocation lists.
func (s *Session) revocationSelector() sessionstore.Selector {
	return sessionstore.Selector{Subject: s.subjectKey, SID: s.sidKey, Session: s.signInKey}
}

type errString string

func (e errString) Error() string { return string(e) }
