package oidcauth

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"
)

// Events oidc_auth emits through Caddy's events app, so that
// `events { on oidc_signed_in exec ... }` and other event handlers see
// them. Their data has `sub`, `sid` (when the provider gave one),
// `provider` and, where it applies, `reason`; never a token.
const (
	eventSignedIn       = "oidc_signed_in"
	eventSignedOut      = "oidc_signed_out"
	eventSessionRevoked = "oidc_session_revoked"
	eventRefreshFailed  = "oidc_refresh_failed"
	eventAccessDenied   = "oidc_access_denied"
)

// eventsOf returns the config's events app, or nil for a context of no
// config (a module provisioned on its own, as tests and benchmarks do).
func eventsOf(ctx caddy.Context) (app *caddyevents.App) {
	defer func() {
		if recover() != nil {
			app = nil
		}
	}()
	a, err := ctx.App("events")
	if err != nil {
		return nil
	}
	app, _ = a.(*caddyevents.App)
	return app
}

// emit sends an event about p's user sub (and provider session sid).
// Event handlers run before it returns.
func (h *Handler) emit(name string, p *oidcProvider, sub, sid, reason string) {
	if h.events == nil {
		return
	}
	data := map[string]any{"sub": sub, "provider": p.metricName()}
	if sid != "" {
		data["sid"] = sid
	}
	if reason != "" {
		data["reason"] = reason
	}
	if e := h.events.Emit(h.ctx, name, data); e.Aborted != nil {
		h.logger.Debug("an event handler aborted", zap.String("event", name), zap.Error(e.Aborted))
	}
}

// emitSession sends an event about session s.
func (h *Handler) emitSession(name string, s *Session, reason string) {
	h.emit(name, s.provider, s.subject, s.sid, reason)
}
