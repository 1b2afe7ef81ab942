package oidcauth

import (
	"net/http"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/rules"
)

// ruleClaims are a session's claims as the rules and the oidc_claim
// matcher read them: the ID token's, then userinfo's.
// With several providers they also know the session's provider.
func (s *Session) ruleClaims() rules.Claims {
	c := rules.FromMaps(s.claims, s.userinfo)
	if s.provider != nil && s.provider.name != "" {
		c = rules.WithProvider(c, s.provider.name)
	}
	return c
}

// ruleClaims are a bearer token's claims (or its introspection answer's).
func (id *bearerIdentity) ruleClaims() rules.Claims {
	c := rules.FromMaps(id.claims)
	if id.provider != nil && id.provider.name != "" {
		c = rules.WithProvider(c, id.provider.name)
	}
	return c
}

// accessDenied answers a signed-in user (or bearer token) the rules refuse:
// 403, a page for navigations and a small JSON for API calls, naming no
// claim. The log names the subject and the rule that decided.
func (h *Handler) accessDenied(w http.ResponseWriter, r *http.Request, subject, rule string) error {
	h.logger.Info("access denied", zap.String("sub", subject), zap.String("rule", rule))
	if !h.wantsRedirect(r) || prefersJSON(r) {
		writeJSON(w, http.StatusForbidden, map[string]string{
			"error":   "access_denied",
			"message": "your account may not use this site",
		})
		return nil
	}
	return h.errorPage(w, r, http.StatusForbidden, "Access denied",
		"You are signed in, but your account may not use this site. Ask its administrators for access, or sign out and sign in with another account.", false)
}
