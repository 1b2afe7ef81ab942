// Package tokeninject provides the http.handlers.token_inject Caddy module:
// it exposes the signed-in user's ID token to later handlers and swaps the
// user's access token into requests forwarded upstream in place of a
// placeholder string, so the browser never holds the token.
package tokeninject

import (
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
	"github.com/oidcgate/caddy-oidc/internal/origin"
	"github.com/oidcgate/caddy-oidc/internal/substitute"
	"github.com/oidcgate/caddy-oidc/oidcauth"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler exposes the ID token of the session that oidc_auth established,
// and substitutes the session's access token for placeholder strings in the
// request before it is forwarded upstream. It must come after oidc_auth.
//
// These placeholders and variables hold the ID token (there is deliberately
// none for the access token). oidc_auth already sets them for a signed-in
// request, so handlers ordered before token_inject, such as request_header,
// can use them; token_inject keeps them current when it refreshes the
// tokens, and makes them empty on routes without a session:
//
// | Name | Value |
// |---|---|
// | `{oidc.user.id_token}` | the ID token's claims as a JSON object |
// | `{oidc.user.id_token.<path>}` | one claim; dotted paths reach into nested objects; arrays are joined with `,` |
// | `{oidc.user.raw_id_token}` | the compact ID token (JWT) |
// | var `oidc_id_token` | the claims as a map, for `vars` and expression matchers and templates |
// | var `oidc_raw_id_token` | the compact ID token |
//
// The access token replaces each placeholder string (default
// `<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>`) in request header values, and in
// the URL query and request bodies when enabled. For a request oidc_auth let
// in by its bearer token, that is the caller's own token. For a session, it
// is substituted only in the site's own requests: the browser must say the request comes from the site's origin
// (Sec-Fetch-Site, or Origin or Referer where that is absent) or from an
// origin listed in Origins. A request from another site, which carries the
// session cookie on a top-level navigation, never gets the token. An access
// token about to expire is refreshed first. Only the handlers after
// token_inject see the substituted request; placeholders such as
// `{http.request.header.*}` and the access log keep showing the request as
// the client sent it. The redirect headers of the response (Location,
// Content-Location, Refresh) never carry the token back to the browser.
type Handler struct {
	// Placeholders are the strings replaced with the access token.
	// Default: `<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>`.
	Placeholders []string `json:"placeholders,omitempty"`

	// In lists where placeholders are substituted: `header` (request header
	// values), `query` (the URL query) and `body` (the request body).
	// Default: `header`. The query is opt-in: a token put in a URL is
	// written into the address bar, the history and access logs as soon as
	// an upstream redirects to a URL that keeps the query.
	In []string `json:"in,omitempty"`

	// Origins are other origins of the same site whose requests get the
	// token too, such as `https://app.example.com` for a single-page app
	// that calls the API on `https://api.example.com`. A request the
	// browser marks cross-site never gets the token. Default: none (the
	// site's own origin only).
	Origins []string `json:"origins,omitempty"`

	// AllowUnknownOrigin substitutes in requests that do not say where
	// they come from: no Sec-Fetch-Site, Origin or Referer header (command-
	// line clients and scripts holding a session cookie, very old
	// browsers), or Sec-Fetch-Site `none` (an address typed into the
	// browser, a bookmark, a link opened from another application).
	// Default: off; such requests get the OnMissing treatment.
	AllowUnknownOrigin bool `json:"allow_unknown_origin,omitempty"`

	// BodyMaxSize is how much of a request body is held in memory to
	// substitute placeholders and send an exact Content-Length. Larger
	// bodies are substituted as they stream, with bounded memory, and sent
	// with chunked encoding. Default: 1 MiB.
	BodyMaxSize int64 `json:"body_max_size,omitempty"`

	// BodyMemory bounds the memory that the bodies this handler holds at
	// once may take together: past it, bodies are substituted as they
	// stream instead of held. Default: 64 MiB.
	BodyMemory int64 `json:"body_memory,omitempty"`

	// BodyTypes are the media types whose bodies are substituted.
	// `application/x-www-form-urlencoded` bodies get the URL-encoded forms
	// of placeholder and token. Default: `application/json`,
	// `application/x-www-form-urlencoded`, `text/plain`.
	BodyTypes []string `json:"body_types,omitempty"`

	// OnMissing says what happens to a request that carries a placeholder
	// when there is no signed-in user or no usable access token: `reject`
	// (answer with MissingStatus), `remove` (replace the placeholder with
	// nothing) or `keep` (forward the placeholder as it is). Default: `reject`.
	OnMissing string `json:"on_missing,omitempty"`

	// MissingStatus is the status for rejected requests. Default: 401.
	MissingStatus int `json:"missing_status,omitempty"`

	// RefreshSkew refreshes an access token that expires within this
	// duration before substituting it. Default: 30s.
	RefreshSkew caddy.Duration `json:"refresh_skew,omitempty"`

	// RedactResponse replaces the session's live access and refresh tokens
	// in upstream response headers and bodies with the first placeholder,
	// so an upstream that echoes its request cannot hand the token to the
	// browser. Responses are then sent without Content-Length. Default: off.
	RedactResponse bool `json:"redact_response,omitempty"`

	inHeader, inQuery, inBody bool
	origins                   origin.Policy
	// probe and queryProbe find placeholders (as sent, and URL-encoded)
	// without replacing them; built once, as they do not depend on a token.
	probe, queryProbe *substitute.Replacer
	values            *substitutedValues
	budget            *bodyBudget
	logger            *zap.Logger
}

// Defaults.
const (
	DefaultPlaceholder = "<<APPSMITH_USER_OAUTH2_ACCESS_TOKEN>>"
	defaultBodyMaxSize = 1 << 20
	defaultBodyMemory  = 64 << 20
	defaultRefreshSkew = 30 * time.Second
)

var defaultBodyTypes = []string{"application/json", "application/x-www-form-urlencoded", "text/plain"}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.token_inject",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision sets defaults.
func (h *Handler) Provision(ctx caddy.Context) (err error) {
	h.logger = ctx.Logger()
	if err := metrics.Register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %v", err)
	}
	if len(h.Placeholders) == 0 {
		h.Placeholders = []string{DefaultPlaceholder}
	}
	if len(h.In) == 0 {
		h.In = []string{"header"}
	}
	if h.BodyMaxSize == 0 {
		h.BodyMaxSize = defaultBodyMaxSize
	}
	if len(h.BodyTypes) == 0 {
		h.BodyTypes = defaultBodyTypes
	}
	if h.BodyMemory == 0 {
		h.BodyMemory = defaultBodyMemory
	}
	h.budget = &bodyBudget{limit: h.BodyMemory}
	if h.OnMissing == "" {
		h.OnMissing = "reject"
	}
	if h.MissingStatus == 0 {
		h.MissingStatus = http.StatusUnauthorized
	}
	if h.RefreshSkew == 0 {
		h.RefreshSkew = caddy.Duration(defaultRefreshSkew)
	}
	h.inHeader = slices.Contains(h.In, "header")
	h.inQuery = slices.Contains(h.In, "query")
	h.inBody = slices.Contains(h.In, "body")
	if h.inHeader && h.logger.Core().Enabled(zapcore.DebugLevel) {
		// reverse_proxy logs the headers it sends upstream at debug level,
		// and Caddy redacts only its credential headers there.
		h.logger.Warn("debug logging is on: reverse_proxy's debug lines list the headers it sends upstream; " +
			"Caddy redacts Authorization, Proxy-Authorization and Cookie there, " +
			"but an access token substituted into any other header would be logged")
	}
	if h.origins, err = origin.NewPolicy(h.Origins); err != nil {
		return fmt.Errorf("origins: %v", err)
	}
	h.probe = substitute.New(pairsOf(h.Placeholders, "")...)
	h.queryProbe = queryReplacer(h.Placeholders, "")
	h.values = newSubstitutedValues(10000)
	return nil
}

// Validate checks the configuration.
func (h *Handler) Validate() error {
	for _, p := range h.Placeholders {
		if len(p) < 8 {
			return fmt.Errorf("placeholder %q: too short to be unambiguous (at least 8 characters)", p)
		}
		if strings.ContainsAny(p, "\r\n\x00") {
			return fmt.Errorf("placeholder %q: must not contain line breaks or NUL", p)
		}
	}
	if _, err := origin.NewPolicy(h.Origins); err != nil {
		return fmt.Errorf("origins: %v", err)
	}
	for _, in := range h.In {
		switch in {
		case "header", "query", "body":
		default:
			return fmt.Errorf("in: %q is not header, query or body", in)
		}
	}
	switch h.OnMissing {
	case "reject", "remove", "keep":
	default:
		return fmt.Errorf("on_missing %q: must be reject, remove or keep", h.OnMissing)
	}
	if h.MissingStatus < 400 || h.MissingStatus > 599 {
		return fmt.Errorf("missing_status %d: must be a 4xx or 5xx code", h.MissingStatus)
	}
	if h.BodyMaxSize < 0 || h.BodyMemory < 0 || h.RefreshSkew < 0 {
		return errors.New("body_max_size, body_memory and refresh_skew must not be negative")
	}
	for _, t := range h.BodyTypes {
		if _, _, err := mime.ParseMediaType(t); err != nil {
			return fmt.Errorf("body_types: %q is not a media type", t)
		}
	}
	return nil
}

// ServeHTTP exposes the ID token and substitutes the access token.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	session, _ := oidcauth.SessionFromRequest(r)
	if session == nil {
		oidcauth.ExposeNoIDToken(r)
	}

	need := h.scan(r)
	if !need.any() {
		if h.RedactResponse && session != nil {
			return h.serveRedacted(w, h.askForIdentity(r), next, session)
		}
		return next.ServeHTTP(w, r)
	}

	// Only a body held in memory can be checked before the token is needed.
	var body *heldBody
	if need.body {
		var err error
		if body, err = h.holdBody(r); err != nil {
			return caddyhttp.Error(http.StatusBadRequest, fmt.Errorf("reading request body: %w", err))
		}
		defer body.release()
		need.body = body.mayContain(h)
		if !need.any() {
			r = body.restore(r)
			return h.serveRedactedOrNext(w, r, next, session, session)
		}
	}

	// Only the site's own requests get the token: another site can send
	// the user here, with the session cookie, on a top-level navigation.
	var token string
	from := h.origins.Classify(r)
	if bearer, ok := oidcauth.BearerToken(r); ok {
		// The caller brought this token itself: no other site can make a
		// browser send it, so where the request comes from does not
		// matter, and it is the caller's to refresh.
		token = bearer
	} else if from.Own() || (from == origin.Unknown && h.AllowUnknownOrigin) {
		var err error
		if token, err = h.accessToken(w, r, session); err != nil {
			return oidcauth.WriteSessionError(w, r, err)
		}
	}
	if token == "" {
		if session != nil && !from.Own() && !(from == origin.Unknown && h.AllowUnknownOrigin) {
			countSubstitution(need, withheld)
		} else {
			countSubstitution(need, missing)
		}
		switch h.OnMissing {
		case "reject":
			h.logger.Debug("placeholder without an access token",
				zap.Bool("signed_in", session != nil), zap.Stringer("from", from))
			return h.reject(w)
		case "keep":
			if body != nil {
				r = body.restore(r)
			}
			if h.RedactResponse && session != nil {
				return h.serveRedacted(w, h.askForIdentity(r), next, session)
			}
			return next.ServeHTTP(w, r)
		}
	}
	refreshed, _ := oidcauth.SessionFromRequest(r)
	if token != "" {
		countSubstitution(need, substituted)
	}

	if token != "" && !h.RedactResponse {
		// The request copy and the guard of its response, in one allocation.
		g := new(guardedRequest)
		g.guard = redirectGuard{ResponseWriter: w, token: token, placeholder: h.Placeholders[0]}
		r, w = h.substitute(&g.req, r, need, body, token), &g.guard
	} else {
		r = h.substitute(nil, r, need, body, token)
	}
	return h.serveRedactedOrNext(w, r, next, session, refreshed)
}

// serveRedactedOrNext serves next, through the redactor when redaction is
// on; sessions are the request's session before and after a refresh.
func (h *Handler) serveRedactedOrNext(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, before, after *oidcauth.Session) error {
	if h.RedactResponse && (before != nil || after != nil) {
		return h.serveRedacted(w, r, next, before, after)
	}
	return next.ServeHTTP(w, r)
}

// askForIdentity returns r asking upstream for an uncompressed response,
// which the redactor can read.
func (h *Handler) askForIdentity(r *http.Request) *http.Request {
	r2 := shallowCopy(r)
	r2.Header = maps.Clone(r.Header)
	r2.Header.Set("Accept-Encoding", "identity")
	return r2
}

// accessToken returns the session's access token, refreshed if it is about
// to expire, or "" when there is no session or no usable token.
func (h *Handler) accessToken(w http.ResponseWriter, r *http.Request, s *oidcauth.Session) (string, error) {
	if s == nil {
		return "", nil
	}
	fresh, err := oidcauth.FreshSession(w, r, time.Duration(h.RefreshSkew))
	switch {
	case err == nil:
		return fresh.AccessToken(), nil
	case errors.Is(err, oidcauth.ErrNoAccessToken):
		return "", nil
	default:
		return "", err
	}
}

// reject answers a request that carries a placeholder but has no token.
func (h *Handler) reject(w http.ResponseWriter) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(h.MissingStatus)
	_, err := w.Write([]byte(`{"error":"no_access_token","message":"this request needs the signed-in user's access token; sign in first"}`))
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
