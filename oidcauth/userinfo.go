package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
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

// userinfoOf asks the provider's userinfo endpoint about the user (when it
// has one and Userinfo is not off), resolves aggregated and distributed
// claims of the ID token and userinfo (when ClaimSources), and returns
// those claims as one JSON object, or nil if there are none.
func (h *Handler) userinfoOf(ctx context.Context, st *provider.State, subject, accessToken, rawIDToken string) ([]byte, error) {
	var info []byte
	if h.Userinfo != userinfoOff {
		var err error
		info, err = st.UserInfo(ctx, accessToken, subject)
		if err != nil && !errors.Is(err, provider.ErrNoUserinfo) {
			return nil, err
		}
	}
	if !h.ClaimSources {
		return info, nil
	}
	resolved := map[string]any{}
	payload, err := jwtPayload(rawIDToken)
	if err != nil {
		return nil, err
	}
	for _, set := range [][]byte{payload, info} {
		if len(set) == 0 {
			continue
		}
		got, err := st.ResolveClaimSources(ctx, set, accessToken)
		if err != nil {
			return nil, err
		}
		for k, v := range got {
			resolved[k] = v
		}
	}
	if len(resolved) == 0 {
		return info, nil
	}
	merged := map[string]any{}
	if len(info) > 0 {
		if merged, err = claims.Decode(info); err != nil {
			return nil, err
		}
	}
	for k, v := range resolved {
		merged[k] = v
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
