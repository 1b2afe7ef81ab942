package oidcauth

import (
	"net/http"
	"net/url"

	"go.uber.org/zap"
)

// serveLogout ends the local session and, when the provider supports
// RP-initiated logout, the provider's session too.
//
// Only a POST that the site itself sent ends anything: a GET, or a POST
// from another site (or one that names no origin), is answered with a page
// that asks the user to confirm by pressing a button, which POSTs from the
// site. Session cookies are SameSite=Lax, so they travel with top-level
// navigations another site starts: a plain link must not sign anyone out,
// here or, through the automatic id_token_hint, at the provider.
//
// The ID token goes to the provider as id_token_hint in an auto-submitted
// POST form rather than in a redirect URL, so it does not end up in access
// logs (which record the Location header) or browser history.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return h.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Use GET or POST.", false)
	}
	rd := safeRedirect(r.URL.Query().Get("rd"))
	if r.Method != http.MethodPost {
		return h.logoutConfirmation(w, r, rd, http.StatusOK)
	}
	if from := h.logoutOrigins.Classify(r); !from.Own() {
		h.logger.Info("sign-out request not sent by the site refused", zap.Stringer("from", from))
		return h.logoutConfirmation(w, r, rd, http.StatusForbidden)
	}
	s, err := h.loadSession(r)
	if err != nil {
		return h.storeUnavailable(w, r, err)
	}
	if err := h.store.Delete(w, r, s); err != nil {
		// The cookies are cleared in this browser, but a copy of them
		// would still work: say so rather than pretend.
		h.clearLoginCookies(w, r)
		return h.storeUnavailable(w, r, err)
	}
	h.clearLoginCookies(w, r)
	w.Header().Set("Cache-Control", "no-store")
	if s != nil {
		h.logger.Info("signed out", zap.String("sub", s.subject))
	}

	st := h.op.Current()
	if s == nil || st == nil || st.Metadata.EndSessionEndpoint == "" {
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return nil
	}
	postLogout := h.PostLogoutRedirect
	if postLogout == "" {
		postLogout = requestOrigin(r) + rd
	}
	form := url.Values{
		"id_token_hint":            {s.rawIDToken},
		"post_logout_redirect_uri": {postLogout},
		"client_id":                {h.op.ClientID()},
	}
	return writeAutoPost(w, st.Metadata.EndSessionEndpoint, form)
}
