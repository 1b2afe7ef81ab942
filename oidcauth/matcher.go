package oidcauth

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oidcgate/caddy-oidc/internal/rules"
)

func init() {
	caddy.RegisterModule(MatchClaim{})
}

// MatchClaim matches requests whose signed-in user (or bearer token) has a
// claim equal to one of the values, or, an array, containing one of them,
// with the same rules as oidc_auth's `claim` rules: the path reaches nested
// and namespaced claims, the ID token's claims count before userinfo's.
// With several providers it can also test the user's provider; what is
// set must all hold. Requests without a user do not match. It must come
// after oidc_auth:
//
//	@admins oidc_claim groups admins
//	handle @admins { ... }
//
//	@staff oidc_claim {
//		provider entra
//		claim    groups 6f1d...
//	}
type MatchClaim struct {
	// Claim is the claim's path, e.g. `groups`, `realm_access.roles`,
	// `https://example.com/roles`. Default: none (only Provider is tested).
	Claim string `json:"claim,omitempty"`
	// Values are the values of which the claim must be (or contain) one.
	Values []string `json:"values,omitempty"`
	// Provider names providers of oidc_auth's providers: the user must
	// have signed in through one of them (or the bearer token be of one).
	// Default: none (any provider).
	Provider []string `json:"provider,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (MatchClaim) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.oidc_claim",
		New: func() caddy.Module { return new(MatchClaim) },
	}
}

// Match implements caddyhttp.RequestMatcher.
func (m MatchClaim) Match(r *http.Request) bool {
	ok, _ := m.MatchWithError(r)
	return ok
}

// MatchWithError implements caddyhttp.RequestMatcherWithError.
func (m MatchClaim) MatchWithError(r *http.Request) (bool, error) {
	c, ok := requestClaims(r)
	if !ok {
		return false, nil
	}
	if len(m.Provider) > 0 && !rules.HasProvider(c, m.Provider) {
		return false, nil
	}
	if m.Claim == "" {
		return true, nil
	}
	v, found := c(m.Claim)
	return found && rules.MatchesValues(v, m.Values), nil
}

// requestClaims are the claims of the request's signed-in user or bearer
// token, as rules read them.
func requestClaims(r *http.Request) (rules.Claims, bool) {
	st, ok := r.Context().Value(sessionCtxKey{}).(*requestState)
	switch {
	case !ok:
		return nil, false
	case st.bearer != nil:
		return st.bearer.ruleClaims(), true
	case st.session != nil:
		return st.session.ruleClaims(), true
	}
	return nil, false
}

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens. Syntax:
//
//	oidc_claim <path> <value...>
//
//	oidc_claim {
//		claim    <path> <value...>
//		provider <name...>
//	}
//
// Caddy hands every oidc_claim line of a matcher set to one matcher; a
// second is refused rather than dropped, as it would narrow the match.
// Two claims that must both hold take a route nested in another.
func (m *MatchClaim) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() { // matcher name
		if m.Claim != "" || len(m.Provider) > 0 {
			return d.Errf("oidc_claim: given twice in one matcher set")
		}
		if err := m.unmarshalOne(d); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalOne reads one oidc_claim matcher: arguments or a block.
func (m *MatchClaim) unmarshalOne(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) > 0 {
		if len(args) < 2 {
			return d.Errf("oidc_claim: want a claim path and at least one value, got %d arguments", len(args))
		}
		m.Claim, m.Values = args[0], args[1:]
		if d.NextBlock(0) {
			return d.Errf("oidc_claim: takes arguments or a block, not both")
		}
		return nil
	}
	for d.NextBlock(0) {
		switch line := d.Val(); line {
		case "claim":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("oidc_claim: claim takes a path and at least one value, got %d arguments", len(args))
			}
			if m.Claim != "" {
				return d.Errf("oidc_claim: claim given twice")
			}
			m.Claim, m.Values = args[0], args[1:]
		case "provider":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.Errf("oidc_claim: provider takes at least one provider name")
			}
			m.Provider = append(m.Provider, args...)
		default:
			return d.Errf("oidc_claim: unknown line %q (want claim or provider)", line)
		}
	}
	if m.Claim == "" && len(m.Provider) == 0 {
		return d.Errf("oidc_claim: want a claim path and at least one value, got 0 arguments (or a block with claim or provider)")
	}
	return nil
}

// Validate checks the matcher.
func (m *MatchClaim) Validate() error {
	if (m.Claim == "") != (len(m.Values) == 0) || (m.Claim == "" && len(m.Provider) == 0) {
		return errMatcherIncomplete
	}
	return nil
}

var errMatcherIncomplete = errString("oidc_claim: a claim path and at least one value, or a provider, are required")

// Interface guards
var (
	_ caddyhttp.RequestMatcherWithError = (*MatchClaim)(nil)
	_ caddyfile.Unmarshaler             = (*MatchClaim)(nil)
	_ caddy.Validator                   = (*MatchClaim)(nil)
)
