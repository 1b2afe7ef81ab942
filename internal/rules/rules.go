// Package rules decides who may enter from the claims of a signed-in user
// or of a bearer token: allow and deny rules, each a set of conditions that
// must all hold. A user is let in when no deny rule matches and, if there
// are allow rules, at least one does.
//
// Conditions read claims by path (package claims), so nested claims
// (realm_access.roles), client-scoped ones (resource_access.my-client.roles)
// and namespaced ones (https://example.com/roles) work alike, and a claim
// that is an array matches when it contains one of the values.
package rules

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/oidcgate/caddy-oidc/internal/claims"
)

// Claims looks up a claim by path.
type Claims func(path string) (any, bool)

// FromMaps looks claims up in sets, the first that has a path winning:
// the ID token, then userinfo.
func FromMaps(sets ...map[string]any) Claims {
	return func(path string) (any, bool) {
		for _, m := range sets {
			if v, ok := claims.At(m, path); ok {
				return v, true
			}
		}
		return nil, false
	}
}

// providerPath is the path under which WithProvider's claims answer the
// provider's name; no claim path can be it.
const providerPath = "\x00provider"

// WithProvider returns c, which also knows the provider the claims are of.
func WithProvider(c Claims, name string) Claims {
	return func(path string) (any, bool) {
		if path == providerPath {
			return name, true
		}
		return c(path)
	}
}

// HasProvider reports whether c are of one of the named providers.
func HasProvider(c Claims, names []string) bool {
	v, ok := c(providerPath)
	if !ok {
		return false
	}
	name, _ := v.(string)
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// Providers returns the provider names the rules name.
func (s *Set) Providers() []string {
	if s == nil {
		return nil
	}
	var names []string
	for _, rs := range [][]Rule{s.Allow, s.Deny} {
		for _, r := range rs {
			for _, c := range r.Conditions {
				names = append(names, c.Provider...)
			}
		}
	}
	return names
}

// Condition is one line of a rule. Exactly one of its forms is set.
type Condition struct {
	// Email: the email claim is one of these addresses (compared without
	// regard to case).
	Email []string `json:"email,omitempty"`
	// EmailDomain: the email claim's domain is one of these, and
	// email_verified is true: an unverified address says nothing about
	// who the user is.
	EmailDomain []string `json:"email_domain,omitempty"`
	// Claim: the claim at this path equals one of Values, or, an array,
	// contains one of them.
	Claim  string   `json:"claim,omitempty"`
	Values []string `json:"values,omitempty"`
	// ClaimRegexp: the claim at this path matches Pattern (anchored
	// neither at start nor end: use ^ and $), or, an array, has an
	// element that does.
	ClaimRegexp string `json:"claim_regexp,omitempty"`
	Pattern     string `json:"pattern,omitempty"`
	// Provider: the user signed in through (or the bearer token is of) one
	// of these providers, by their names in oidc_auth's providers.
	Provider []string `json:"provider,omitempty"`

	re *regexp.Regexp
}

// Rule is a set of conditions that must all hold.
type Rule struct {
	Conditions []Condition `json:"conditions,omitempty"`
}

// Set is the allow and deny rules of one site.
type Set struct {
	Allow []Rule `json:"allow,omitempty"`
	Deny  []Rule `json:"deny,omitempty"`
}

// Empty reports whether the set lets everyone in.
func (s *Set) Empty() bool { return s == nil || (len(s.Allow) == 0 && len(s.Deny) == 0) }

// Compile checks the rules and prepares their regular expressions.
func (s *Set) Compile() error {
	if s == nil {
		return nil
	}
	for kind, rs := range map[string][]Rule{"allow": s.Allow, "deny": s.Deny} {
		for i := range rs {
			if len(rs[i].Conditions) == 0 {
				return fmt.Errorf("%s rule %d: no conditions", kind, i+1)
			}
			for j := range rs[i].Conditions {
				if err := rs[i].Conditions[j].compile(); err != nil {
					return fmt.Errorf("%s rule %d, line %d: %v", kind, i+1, j+1, err)
				}
			}
		}
	}
	return nil
}

func (c *Condition) compile() error {
	forms := 0
	for _, set := range []bool{len(c.Email) > 0, len(c.EmailDomain) > 0, c.Claim != "", c.ClaimRegexp != "", len(c.Provider) > 0} {
		if set {
			forms++
		}
	}
	if forms != 1 {
		return fmt.Errorf("want exactly one of email, email_domain, claim, claim_regexp, provider")
	}
	switch {
	case c.Claim != "" && len(c.Values) == 0:
		return fmt.Errorf("claim %s: no values", c.Claim)
	case c.ClaimRegexp != "":
		re, err := regexp.Compile(c.Pattern)
		if err != nil {
			return fmt.Errorf("claim_regexp %s: %v", c.ClaimRegexp, err)
		}
		c.re = re
	}
	for _, d := range c.EmailDomain {
		if d == "" || strings.ContainsAny(d, "@ ") {
			return fmt.Errorf("email_domain %q: not a domain", d)
		}
	}
	return nil
}

// Decision is what the rules decided, and which rule decided it.
type Decision struct {
	Allowed bool
	// Rule names the rule that decided ("deny rule 2", "allow rule 1",
	// "no allow rule matched"), for the log; never a claim's value.
	Rule string
}

// Decide applies the rules to a user's claims.
func (s *Set) Decide(c Claims) Decision {
	if s.Empty() {
		return Decision{Allowed: true}
	}
	for i, r := range s.Deny {
		if r.matches(c) {
			return Decision{Allowed: false, Rule: fmt.Sprintf("deny rule %d", i+1)}
		}
	}
	if len(s.Allow) == 0 {
		return Decision{Allowed: true, Rule: "no deny rule matched"}
	}
	for i, r := range s.Allow {
		if r.matches(c) {
			return Decision{Allowed: true, Rule: fmt.Sprintf("allow rule %d", i+1)}
		}
	}
	return Decision{Allowed: false, Rule: "no allow rule matched"}
}

func (r Rule) matches(c Claims) bool {
	for _, cond := range r.Conditions {
		if !cond.Holds(c) {
			return false
		}
	}
	return true
}

// Holds reports whether the condition holds for the claims.
func (cond *Condition) Holds(c Claims) bool {
	switch {
	case len(cond.Email) > 0:
		email, ok := stringClaim(c, "email")
		return ok && containsFold(cond.Email, email)
	case len(cond.EmailDomain) > 0:
		email, ok := stringClaim(c, "email")
		if !ok || !verified(c) {
			return false
		}
		at := strings.LastIndexByte(email, '@')
		return at > 0 && containsFold(cond.EmailDomain, email[at+1:])
	case cond.Claim != "":
		v, ok := c(cond.Claim)
		return ok && MatchesValues(v, cond.Values)
	case len(cond.Provider) > 0:
		return HasProvider(c, cond.Provider)
	case cond.ClaimRegexp != "":
		v, ok := c(cond.ClaimRegexp)
		if !ok || cond.re == nil {
			return false
		}
		for _, s := range scalars(v) {
			if cond.re.MatchString(s) {
				return true
			}
		}
	}
	return false
}

// MatchesValues reports whether a claim is one of values or, an array,
// contains one of them. Numbers and booleans compare as the provider wrote
// them ("42", "true"); objects never match.
func MatchesValues(v any, values []string) bool {
	for _, s := range scalars(v) {
		for _, want := range values {
			if s == want {
				return true
			}
		}
	}
	return false
}

// scalars are a claim's string, number and boolean values: itself, or the
// elements of an array.
func scalars(v any) []string {
	switch c := v.(type) {
	case string, json.Number, bool:
		return []string{claims.Format(c)}
	case float64:
		return []string{claims.Format(json.Number(fmt.Sprint(c)))}
	case []any:
		out := make([]string, 0, len(c))
		for _, e := range c {
			switch e.(type) {
			case string, json.Number, bool, float64:
				out = append(out, scalars(e)...)
			}
		}
		return out
	case []string:
		return c
	}
	return nil
}

func stringClaim(c Claims, name string) (string, bool) {
	v, ok := c(name)
	s, isString := v.(string)
	return s, ok && isString && s != ""
}

// verified reports whether email_verified is true (some providers send
// the string "true").
func verified(c Claims) bool {
	v, _ := c("email_verified")
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return strings.EqualFold(b, "true")
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}
