package oidcauth

import (
	"html/template"
	"net/http"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
)

// serveFrontchannelLogout ends sessions on the provider's word, per OpenID
// Connect Front-Channel Logout 1.0: the provider loads this path in a
// hidden iframe of its logout page, with its issuer (iss) and the provider
// session (sid) being ended. Every session of that sid ends, as with
// back-channel logout: server-side sessions are deleted, cookie sessions
// revoked. The sid, not a cookie, says which: browsers do not send
// SameSite=Lax cookies to a cross-site iframe. A request without iss and
// sid ends the session whose cookie it carries, if it carries one.
//
// A sid without iss is taken as the provider's (Microsoft Entra ID sends
// sid alone). The specification wants iss so that a relying party of
// several providers can tell whose sid it is; without it, with several,
// the sid ends the sessions of that sid at each of them: sids are the
// providers' own unguessable identifiers, looked up under each one's
// issuer and client. An iss without sid is refused.
//
// The answer is a small page that may be framed (it is meant to be), and is
// never cached.
func (h *Handler) serveFrontchannelLogout(w http.ResponseWriter, r *http.Request) error {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Pragma", "no-cache")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		return h.frontchannelPage(w, http.StatusMethodNotAllowed)
	}
	q := r.URL.Query()
	iss, sid := q.Get("iss"), q.Get("sid")
	switch {
	case iss == "" && sid == "":
		s, err := h.loadSession(r)
		if err != nil {
			h.logger.Error("front-channel logout", zap.Error(err))
			return h.frontchannelPage(w, http.StatusServiceUnavailable)
		}
		if s != nil {
			if err := h.store.Delete(w, r, s); err != nil {
				h.logger.Error("front-channel logout", zap.Error(err))
				return h.frontchannelPage(w, http.StatusServiceUnavailable)
			}
			h.logger.Info("front-channel logout", zap.String("sub", s.subject))
			h.loggedOut(s.provider, logoutFrontchannel, s.subject, s.sid)
		}
		return h.frontchannelPage(w, http.StatusOK)
	case sid == "":
		h.logger.Info("front-channel logout refused: an iss without a sid")
		return h.frontchannelPage(w, http.StatusBadRequest)
	}
	// The providers whose sid this may be: the one iss names, or, without
	// iss, every one.
	providers := h.providers
	if iss != "" {
		p, ok := h.providerOfIssuer(iss)
		if !ok {
			h.logger.Info("front-channel logout refused: another issuer", zap.String("iss", truncate(iss, 200)))
			return h.frontchannelPage(w, http.StatusBadRequest)
		}
		providers = []*oidcProvider{p}
	}
	for _, p := range providers {
		if err := h.endProviderSessions(r, p, "", sid); err != nil {
			h.logger.Error("front-channel logout", zap.Error(err))
			return h.frontchannelPage(w, http.StatusServiceUnavailable)
		}
	}
	h.logger.Info("front-channel logout", zap.String("sid", sid))
	for _, p := range providers {
		h.loggedOut(p, logoutFrontchannel, "", sid)
	}
	return h.frontchannelPage(w, http.StatusOK)
}

// endProviderSessions ends every session of provider p's user sub (sid ==
// "") or provider session sid: server-side sessions are deleted, cookie
// sessions revoked until they would have expired anyway.
func (h *Handler) endProviderSessions(r *http.Request, p *oidcProvider, sub, sid string) error {
	subKey, sidKey := p.indexKey(sub), p.indexKey(sid)
	switch store := h.store.(type) {
	case *serverStore:
		_, err := store.endSessions(r.Context(), subKey, sidKey)
		return err
	case *cookieStore:
		now := h.now()
		return store.revocations.Revoke(r.Context(), sessionstore.Selector{Subject: subKey, SID: sidKey}, now, now.Add(h.revocationLifetime()))
	}
	return nil
}

var frontchannelTemplate = template.Must(template.New("frontchannel").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head>
<body><p>{{if eq . 200}}Signed out.{{else}}Status {{.}}{{end}}</p></body></html>
`))

func (h *Handler) frontchannelPage(w http.ResponseWriter, status int) error {
	// Meant to be framed by the provider's logout page.
	return writePage(w, status, frontchannelTemplate, "default-src 'none'", false, status)
}
