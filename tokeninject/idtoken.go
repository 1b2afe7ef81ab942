package tokeninject

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidcgate/caddy-oidc/oidcauth"
)

// Variable names set for later handlers.
const (
	varIDToken    = "oidc_id_token"
	varRawIDToken = "oidc_raw_id_token"
)

const (
	placeholderPrefix     = "oidc.user."
	placeholderIDToken    = "oidc.user.id_token"
	placeholderRawIDToken = "oidc.user.raw_id_token"
)

// idTokenView answers the {oidc.user.*} placeholders from a session. Values
// are computed only when a placeholder is read, so a request that reads
// none costs no formatting. Without a session every {oidc.user.*}
// placeholder is empty rather than left as literal text in a header.
type idTokenView struct {
	session *oidcauth.Session
}

func exposeIDToken(r *http.Request, s *oidcauth.Session) *idTokenView {
	v := &idTokenView{session: s}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Map(v.placeholder)
	}
	if vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any); ok && s != nil {
		vars[varIDToken] = s.Claims()
		vars[varRawIDToken] = s.RawIDToken()
	}
	return v
}

func (v *idTokenView) placeholder(key string) (any, bool) {
	if !strings.HasPrefix(key, placeholderPrefix) {
		return nil, false
	}
	s := v.session
	switch {
	case key == placeholderIDToken:
		if s == nil {
			return "", true
		}
		return string(s.ClaimsJSON()), true
	case key == placeholderRawIDToken:
		if s == nil {
			return "", true
		}
		return s.RawIDToken(), true
	case strings.HasPrefix(key, placeholderIDToken+"."):
		if s == nil {
			return "", true
		}
		c, ok := claimAt(s.Claims(), key[len(placeholderIDToken)+1:])
		if !ok {
			return "", true
		}
		return formatClaim(c), true
	}
	return nil, false
}

// claimAt finds a claim by dotted path. Claim names may contain dots
// themselves (namespaced claims such as "https://example.com/roles"), so at
// each level the whole remaining path is tried as a name first, then every
// split at a dot from the left.
func claimAt(m map[string]any, path string) (any, bool) {
	if v, ok := m[path]; ok {
		return v, true
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' {
			continue
		}
		v, ok := m[path[:i]]
		if !ok {
			continue
		}
		if sub, isMap := v.(map[string]any); isMap {
			if c, found := claimAt(sub, path[i+1:]); found {
				return c, true
			}
		}
	}
	return nil, false
}

// formatClaim renders a claim for a placeholder: strings as they are,
// numbers exactly as the provider wrote them, arrays joined with ",",
// objects as JSON.
func formatClaim(v any) string {
	switch c := v.(type) {
	case nil:
		return ""
	case string:
		return c
	case json.Number:
		return c.String()
	case bool:
		if c {
			return "true"
		}
		return "false"
	case []any:
		parts := make([]string, len(c))
		for i, e := range c {
			parts[i] = formatClaim(e)
		}
		return strings.Join(parts, ",")
	default:
		b, err := json.Marshal(c)
		if err != nil {
			return ""
		}
		return string(b)
	}
}
