package rules

import (
	"strings"
	"testing"

	"github.com/oidcgate/caddy-oidc/internal/claims"
)

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	m, err := claims.Decode([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

const alice = `{
	"sub": "u1",
	"email": "Alice@Example.com",
	"email_verified": true,
	"groups": ["staff", "admins"],
	"realm_access": {"roles": ["offline_access", "editor"]},
	"resource_access": {"my-client": {"roles": ["reporter"]}, "other": {"roles": ["admins"]}},
	"https://example.com/roles": ["billing"],
	"department": "R&D",
	"level": 3,
	"contractor": false
}`

func compile(t *testing.T, s Set) *Set {
	t.Helper()
	if err := s.Compile(); err != nil {
		t.Fatal(err)
	}
	return &s
}

// TestEveryConditionFormAllowsAndRefuses: each form, on nested,
// namespaced, client-scoped, array, number and boolean claims.
func TestEveryConditionFormAllowsAndRefuses(t *testing.T) {
	c := FromMaps(decode(t, alice))
	cases := []struct {
		cond Condition
		want bool
	}{
		{Condition{Email: []string{"bob@example.com", "alice@example.com"}}, true},
		{Condition{Email: []string{"bob@example.com"}}, false},
		{Condition{EmailDomain: []string{"example.com"}}, true},
		{Condition{EmailDomain: []string{"example.org"}}, false},
		{Condition{Claim: "groups", Values: []string{"admins"}}, true},
		{Condition{Claim: "groups", Values: []string{"root"}}, false},
		{Condition{Claim: "realm_access.roles", Values: []string{"editor"}}, true},
		{Condition{Claim: "resource_access.my-client.roles", Values: []string{"reporter"}}, true},
		{Condition{Claim: "resource_access.my-client.roles", Values: []string{"admins"}}, false},
		{Condition{Claim: "https://example.com/roles", Values: []string{"billing"}}, true},
		{Condition{Claim: "department", Values: []string{"R&D"}}, true},
		{Condition{Claim: "level", Values: []string{"3"}}, true},
		{Condition{Claim: "contractor", Values: []string{"false"}}, true},
		{Condition{Claim: "realm_access", Values: []string{"editor"}}, false}, // an object
		{Condition{Claim: "missing", Values: []string{""}}, false},
		{Condition{ClaimRegexp: "email", Pattern: `(?i)@example\.com$`}, true},
		{Condition{ClaimRegexp: "groups", Pattern: `^adm`}, true},
		{Condition{ClaimRegexp: "groups", Pattern: `^root$`}, false},
	}
	for _, tc := range cases {
		s := compile(t, Set{Allow: []Rule{{Conditions: []Condition{tc.cond}}}})
		if got := s.Decide(c).Allowed; got != tc.want {
			t.Errorf("%+v: allowed %v, want %v", tc.cond, got, tc.want)
		}
	}
}

// TestEmailDomainRequiresAVerifiedEmail: an address the provider did not
// verify says nothing about who the user is.
func TestEmailDomainRequiresAVerifiedEmail(t *testing.T) {
	s := compile(t, Set{Allow: []Rule{{Conditions: []Condition{{EmailDomain: []string{"example.com"}}}}}})
	for claimsJSON, want := range map[string]bool{
		`{"email":"a@example.com","email_verified":true}`:          true,
		`{"email":"a@example.com","email_verified":"true"}`:        true,
		`{"email":"a@example.com","email_verified":false}`:         false,
		`{"email":"a@example.com"}`:                                false,
		`{"email":"a@evil.com@example.com","email_verified":true}`: true, // the domain is what follows the last @
		`{"email":"a@sub.example.com","email_verified":true}`:      false,
	} {
		if got := s.Decide(FromMaps(decode(t, claimsJSON))).Allowed; got != want {
			t.Errorf("%s: allowed %v, want %v", claimsJSON, got, want)
		}
	}
}

// TestDenyWinsOverAllowAndLinesMustAllHold: a user is let in when no deny
// rule matches and, with allow rules, one of them does; within a rule
// every line must hold.
func TestDenyWinsOverAllowAndLinesMustAllHold(t *testing.T) {
	c := FromMaps(decode(t, alice))
	admins := Condition{Claim: "groups", Values: []string{"admins"}}
	s := compile(t, Set{
		Allow: []Rule{{Conditions: []Condition{admins, {Claim: "department", Values: []string{"Sales"}}}}, {Conditions: []Condition{admins}}},
		Deny:  []Rule{{Conditions: []Condition{{Claim: "level", Values: []string{"3"}}}}},
	})
	if d := s.Decide(c); d.Allowed || d.Rule != "deny rule 1" {
		t.Fatalf("%+v, want denied by deny rule 1", d)
	}
	s.Deny = nil
	if d := s.Decide(c); !d.Allowed || d.Rule != "allow rule 2" {
		t.Fatalf("%+v, want allowed by allow rule 2 (rule 1 needs both lines)", d)
	}
	s.Allow = s.Allow[:1]
	if d := s.Decide(c); d.Allowed || d.Rule != "no allow rule matched" {
		t.Fatalf("%+v, want refused", d)
	}
	if d := (&Set{}).Decide(c); !d.Allowed {
		t.Fatal("no rules must let everyone in")
	}
	// ID token first, then userinfo.
	c2 := FromMaps(decode(t, `{"groups":["staff"]}`), decode(t, `{"groups":["admins"],"dept":"x"}`))
	only := compile(t, Set{Allow: []Rule{{Conditions: []Condition{admins}}}})
	if only.Decide(c2).Allowed {
		t.Error("userinfo's claim overrode the ID token's")
	}
	if !compile(t, Set{Allow: []Rule{{Conditions: []Condition{{Claim: "dept", Values: []string{"x"}}}}}}).Decide(c2).Allowed {
		t.Error("a claim only userinfo has was not read")
	}
}

func TestCompileRefusesMalformedRules(t *testing.T) {
	for _, s := range []Set{
		{Allow: []Rule{{}}},
		{Deny: []Rule{{Conditions: []Condition{{}}}}},
		{Allow: []Rule{{Conditions: []Condition{{Claim: "g"}}}}},
		{Allow: []Rule{{Conditions: []Condition{{ClaimRegexp: "g", Pattern: "("}}}}},
		{Allow: []Rule{{Conditions: []Condition{{Email: []string{"a"}, Claim: "g", Values: []string{"x"}}}}}},
		{Allow: []Rule{{Conditions: []Condition{{EmailDomain: []string{"@example.com"}}}}}},
	} {
		if err := s.Compile(); err == nil {
			t.Errorf("%+v compiled", s)
		} else if !strings.Contains(err.Error(), "rule 1") {
			t.Errorf("error %q does not name the rule", err)
		}
	}
}
