package oidcauth

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/provider"
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
// logs (which record the Location header) or browser history. A `state`
// goes with it (OpenID Connect RP-Initiated Logout 1.0, 2), remembered in
// a short-lived cookie; the provider sends the browser back to this path
// with it (unless post_logout_redirect names another address), and only a
// matching state leads on to `rd`.
func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return h.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Use GET or POST.", false)
	}
	rd := safeRedirect(r.URL.Query().Get("rd"))
	if r.Method != http.MethodPost {
		if _, returning := h.pendingLogout(r); returning {
			return h.serveLogoutReturn(w, r)
		}
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
		h.loggedOut(s.provider, logoutUser, s.subject, s.sid)
	}

	var st *provider.State
	if s != nil {
		st = s.provider.op.Current()
	}
	if st == nil || st.Metadata.EndSessionEndpoint == "" {
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return nil
	}
	postLogout := s.provider.cfg.PostLogoutRedirect
	if postLogout == "" {
		postLogout = requestOrigin(r) + h.LogoutPath
	}
	state := randomString(32)
	h.rememberLogout(w, r, logoutState{State: state, Redirect: rd, Created: h.now().Unix()})
	form := url.Values{
		"id_token_hint":            {s.rawIDToken},
		"post_logout_redirect_uri": {postLogout},
		"client_id":                {s.provider.op.ClientID()},
		"state":                    {state},
	}
	return writeAutoPost(w, st.Metadata.EndSessionEndpoint, form)
}

// logoutState is what an RP-initiated logout remembers until the provider
// sends the browser back.
type logoutState struct {
	State    string `json:"s"`
	Redirect string `json:"rd"`
	Created  int64  `json:"t"`
}

// logoutStateTTL is how long a logout at the provider may take.
const logoutStateTTL = 10 * time.Minute

func (h *Handler) logoutCookieName(r *http.Request) string {
	return h.loginCookies.fullName(r, h.CookieName+"_logout")
}

func (h *Handler) logoutAAD() []byte {
	return []byte("oidc_auth logout\x00" + h.scope)
}

func (h *Handler) rememberLogout(w http.ResponseWriter, r *http.Request, ls logoutState) {
	plain, _ := json.Marshal(ls)
	http.SetCookie(w, h.loginCookies.cookie(r, h.logoutCookieName(r), h.keys.sealString(plain, h.logoutAAD()), logoutStateTTL))
}

// pendingLogout returns the logout this browser started at the provider,
// if any (and not too old).
func (h *Handler) pendingLogout(r *http.Request) (logoutState, bool) {
	var ls logoutState
	v, ok := requestCookie(r, h.logoutCookieName(r))
	if !ok {
		return ls, false
	}
	plain, err := h.keys.openString(v, h.logoutAAD())
	if err != nil || json.Unmarshal(plain, &ls) != nil || ls.State == "" {
		return ls, false
	}
	if h.now().Sub(time.Unix(ls.Created, 0)) > logoutStateTTL {
		return ls, false
	}
	return ls, true
}

// serveLogoutReturn is the provider sending the browser back after an
// RP-initiated logout: with the state it was given, the browser goes on to
// where the sign-out asked; with another or none, it gets a page saying the
// provider's answer could not be matched (the session here is ended
// either way).
func (h *Handler) serveLogoutReturn(w http.ResponseWriter, r *http.Request) error {
	ls, _ := h.pendingLogout(r)
	h.loginCookies.expire(w, r, h.logoutCookieName(r))
	w.Header().Set("Cache-Control", "no-store")
	got := r.URL.Query().Get("state")
	if subtle.ConstantTimeCompare([]byte(got), []byte(ls.State)) != 1 {
		h.logger.Warn("the provider returned from logout with another state", zap.Bool("state_present", got != ""))
		return h.errorPage(w, r, http.StatusBadRequest, "Sign-out could not be confirmed",
			"You are signed out here, but the identity provider's answer did not match this sign-out, so it may not have ended your session there.", false)
	}
	http.Redirect(w, r, safeRedirect(ls.Redirect), http.StatusSeeOther)
	return nil
}
