package oidcauth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

const (
	// loginStateTTL is how long a sign-in at the provider may take.
	loginStateTTL = 10 * time.Minute
	// maxLoginAttempts bounds the login-state cookies one browser holds:
	// one per tab signing in at the same time.
	maxLoginAttempts = 5
	// loginCookieInfix names login-state cookies: <cookie_name>_login_<id>.
	loginCookieInfix = "_login_"
	// loginIDLength is how much of the state names its cookie.
	loginIDLength = 16
)

// loginState is what a sign-in attempt must remember until its callback. It
// lives in its own encrypted cookie, named after the state, so that several
// tabs can sign in at once without overwriting each other.
type loginState struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Redirect string `json:"rd"`
	Created  int64  `json:"t"`
	// Provider names the provider signed in with, when there are several.
	Provider string `json:"p,omitempty"`
}

func (h *Handler) loginAAD() []byte {
	return []byte("oidc_auth login\x00" + h.scope)
}

func (h *Handler) loginCookieName(r *http.Request, state string) string {
	return h.loginCookies.fullName(r, h.CookieName+loginCookieInfix+state[:loginIDLength])
}

// serveLogin starts a sign-in explicitly, returning to ?rd= afterwards.
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return h.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Start a sign-in with a GET request.", false)
	}
	q := r.URL.Query()
	rd := safeRedirect(q.Get("rd"))
	if !h.several() {
		return h.startLogin(w, r, h.defaultProvider(), rd)
	}
	name := q.Get("provider")
	if name == "" {
		return h.chooseProvider(w, r, rd, http.StatusOK)
	}
	p, ok := h.providerByName[name]
	if !ok {
		return h.chooseProvider(w, r, rd, http.StatusBadRequest)
	}
	return h.startLogin(w, r, p, rd)
}

// signIn sends an unauthenticated navigation to sign in: to the provider,
// or, with several, to the login path's page that lets the user choose
// one (a redirect, so that the page is never taken for the one asked for).
func (h *Handler) signIn(w http.ResponseWriter, r *http.Request, rd string) error {
	if h.several() {
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, h.LoginPath+"?rd="+url.QueryEscape(rd), http.StatusFound)
		return nil
	}
	return h.startLogin(w, r, h.defaultProvider(), rd)
}

// startLogin sends the browser to p's authorization endpoint with a fresh
// state, nonce and PKCE verifier, remembered in a login-state cookie.
func (h *Handler) startLogin(w http.ResponseWriter, r *http.Request, p *oidcProvider, rd string) error {
	st, err := p.op.Get(r.Context())
	if err != nil {
		return h.providerUnavailable(w, r, err)
	}
	ls := loginState{
		State:    randomString(32),
		Nonce:    randomString(32),
		Verifier: oauth2.GenerateVerifier(),
		Redirect: rd,
		Created:  h.now().Unix(),
		Provider: p.name,
	}
	plain, err := json.Marshal(ls)
	if err != nil {
		return err
	}
	h.pruneLoginCookies(w, r)
	http.SetCookie(w, h.loginCookies.cookie(r, h.loginCookieName(r, ls.State), h.keys.sealString(plain, h.loginAAD()), loginStateTTL))

	w.Header().Set("Cache-Control", "no-store")
	metrics.SignInsStarted.WithLabelValues(p.metricName()).Inc()
	http.Redirect(w, r, st.AuthCodeURL(h.redirectURI(r), ls.State, ls.Nonce, ls.Verifier, p.cfg.AuthParams), http.StatusFound)
	return nil
}

// pruneLoginCookies keeps the number of pending sign-ins below
// maxLoginAttempts by deleting the oldest, and deletes any that are no longer
// readable, so that cookies cannot pile up.
func (h *Handler) pruneLoginCookies(w http.ResponseWriter, r *http.Request) {
	type pending struct {
		name    string
		created int64
	}
	var found []pending
	prefix := h.loginCookies.fullName(r, h.CookieName+loginCookieInfix)
	requestCookieNames(r, prefix, func(name, value string) {
		ls, ok := h.openLoginState(value)
		if !ok {
			h.loginCookies.expire(w, r, name)
			return
		}
		found = append(found, pending{name, ls.Created})
	})
	if len(found) < maxLoginAttempts {
		return
	}
	sort.Slice(found, func(i, j int) bool { return found[i].created < found[j].created })
	for _, p := range found[:len(found)-maxLoginAttempts+1] {
		h.loginCookies.expire(w, r, p.name)
	}
}

func (h *Handler) openLoginState(value string) (loginState, bool) {
	var ls loginState
	plain, err := h.keys.openString(value, h.loginAAD())
	if err != nil {
		return ls, false
	}
	if err := json.Unmarshal(plain, &ls); err != nil || len(ls.State) < loginIDLength {
		return ls, false
	}
	if h.now().Sub(time.Unix(ls.Created, 0)) > loginStateTTL {
		return ls, false
	}
	return ls, true
}

// clearLoginCookies deletes every login-state cookie the request carries.
func (h *Handler) clearLoginCookies(w http.ResponseWriter, r *http.Request) {
	prefix := h.loginCookies.fullName(r, h.CookieName+loginCookieInfix)
	requestCookieNames(r, prefix, func(name, _ string) { h.loginCookies.expire(w, r, name) })
}

// redirectURI is the absolute callback URL for r.
func (h *Handler) redirectURI(r *http.Request) string {
	if h.redirectURL != nil {
		return h.redirectURL.String()
	}
	return requestOrigin(r) + h.RedirectURL
}

func requestOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// wantsRedirect reports whether an unauthenticated request should be sent to
// the provider rather than answered with a status: top-level page
// navigations are, API and XHR/fetch calls are not.
func (h *Handler) wantsRedirect(r *http.Request) bool {
	switch h.Unauthenticated {
	case "redirect":
		return true
	case "status":
		return false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// unauthenticated answers a request that has no valid session.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request) error {
	rd := originalRequestURI(r)
	if h.wantsRedirect(r) {
		return h.signIn(w, r, rd)
	}
	if h.Bearer != nil {
		// An API that takes bearer tokens says how to get one (RFC 6750
		// 3, RFC 9728 5.1).
		return h.bearerChallenge(w, r, "no access token")
	}
	loginURL := h.LoginPath + "?rd=" + url.QueryEscape(rd)
	w.Header().Set("WWW-Authenticate", `OIDC realm="`+strings.ReplaceAll(r.Host, `"`, "")+`", login_url="`+loginURL+`"`)
	writeJSON(w, h.UnauthenticatedStatus, map[string]string{
		"error":     "unauthenticated",
		"message":   "sign in first",
		"login_url": loginURL,
	})
	return nil
}

// originalRequestURI is the URI the client asked for, before any rewrite.
func originalRequestURI(r *http.Request) string {
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		return safeRedirect(orig.URL.RequestURI())
	}
	return safeRedirect(r.URL.RequestURI())
}

// safeRedirect returns rd if it is a path on this site, else "/". Only a
// path that starts with a single slash qualifies: "//host", "/\host",
// schemes and control characters (which browsers strip, turning "/\t/host"
// into "//host") could send the user to another site.
func safeRedirect(rd string) string {
	if rd == "" || rd[0] != '/' || len(rd) > 2048 {
		return "/"
	}
	for i := 0; i < len(rd); i++ {
		if c := rd[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	if len(rd) > 1 && rd[1] == '/' {
		return "/"
	}
	u, err := url.Parse(rd)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return rd
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (h *Handler) providerUnavailable(w http.ResponseWriter, r *http.Request, err error) error {
	h.logger.Warn("identity provider unavailable", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	return h.errorPage(w, r, http.StatusServiceUnavailable, "Sign-in is unavailable",
		"The identity provider cannot be reached right now. Please try again in a moment.", false)
}

func (h *Handler) storeUnavailable(w http.ResponseWriter, r *http.Request, err error) error {
	h.logger.Error("session store unavailable", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	return h.errorPage(w, r, http.StatusServiceUnavailable, "Sessions are unavailable",
		"The session store cannot be reached right now. Please try again in a moment.", false)
}
