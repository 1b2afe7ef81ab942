package oidcauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"

	"github.com/oidcgate/caddy-oidc/internal/claims"
	"github.com/oidcgate/caddy-oidc/internal/provider"
)

// Userinfo modes.
const (
	userinfoOn      = "on"
	userinfoOff     = "off"
	userinfoRefresh = "refresh"
)

// userinfoOf asks p's userinfo endpoint about the user (when it has one
// and Userinfo is not off), resolves aggregated and distributed
// claims of the ID token and userinfo (when ClaimSources), and returns
// those claims as one JSON object, or nil if there are none.
func (p *oidcProvider) userinfoOf(ctx context.Context, st *provider.State, subject, accessToken, rawIDToken string) ([]byte, error) {
	var info []byte
	if p.cfg.Userinfo != userinfoOff {
		var err error
		info, err = st.UserInfo(ctx, accessToken, subject)
		if err != nil && !errors.Is(err, provider.ErrNoUserinfo) {
			return nil, err
		}
	}
	var resolved map[string]any
	if p.cfg.ClaimSources {
		payload, err := jwtPayload(rawIDToken)
		if err != nil {
			return nil, err
		}
		resolved = map[string]any{}
		for _, set := range [][]byte{payload, info} {
			if len(set) == 0 {
				continue
			}
			got, err := st.ResolveClaimSources(ctx, set, accessToken)
			if err != nil {
				return nil, err
			}
			maps.Copy(resolved, got)
		}
	}
	return joinResolved(info, resolved)
}

// joinResolved returns the userinfo claims info with the claims resolved
// from their sources, if any, in place of the references to them. The
// sources' descriptions (_claim_sources) are left out in any case: their
// access tokens are credentials for the sources, not claims about the
// user, and must reach neither the browser nor the upstream.
func joinResolved(info []byte, resolved map[string]any) ([]byte, error) {
	if resolved == nil && !bytes.Contains(info, []byte(`"_claim_sources"`)) {
		return info, nil
	}
	merged := map[string]any{}
	if len(info) > 0 {
		var err error
		if merged, err = claims.Decode(info); err != nil {
			return nil, err
		}
	}
	delete(merged, "_claim_sources")
	if resolved != nil {
		delete(merged, "_claim_names")
		maps.Copy(merged, resolved)
	}
	if len(merged) == 0 {
		return nil, nil
	}
	return json.Marshal(merged)
}

// serveUserinfo tells the browser app who is signed in: the subject, the ID
// token's claims, the raw ID token and the userinfo claims. Never the
// access or refresh token.
func (h *Handler) serveUserinfo(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return h.errorPage(w, r, http.StatusMethodNotAllowed, "Method not allowed", "Use GET.", false)
	}
	rc := h.requestCookies(r)
	s, err := h.session(w, r, &rc)
	if err != nil {
		return h.storeUnavailable(w, r, err)
	}
	if s == nil {
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error":     "unauthenticated",
			"message":   "sign in first",
			"login_url": h.LoginPath,
		})
		return nil
	}
	writeJSON(w, http.StatusOK, struct {
		Sub        string          `json:"sub"`
		IDToken    json.RawMessage `json:"idToken"`
		RawIDToken string          `json:"rawIdToken"`
		Userinfo   json.RawMessage `json:"userinfo"`
	}{s.subject, s.claimsJSON, s.rawIDToken, s.UserinfoJSON()})
	return nil
}
