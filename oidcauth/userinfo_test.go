package oidcauth

import "testing"

// TestJoinResolvedLeavesOutClaimSources: resolved claims replace the
// references to their sources, and the sources' descriptions, which may
// hold their access tokens, are never kept.
func TestJoinResolvedLeavesOutClaimSources(t *testing.T) {
	const withSources = `{"sub":"u","_claim_names":{"groups":"s"},"_claim_sources":{"s":{"endpoint":"https://op/claims","access_token":"secret"}}}`
	for _, c := range []struct {
		name     string
		info     string
		resolved map[string]any
		want     string
	}{
		{"nothing to do", `{"sub":"u","n":1.50}`, nil, `{"sub":"u","n":1.50}`},
		{"no userinfo", ``, nil, ``},
		{"sources, not resolved", withSources, nil, `{"_claim_names":{"groups":"s"},"sub":"u"}`},
		{"sources resolved", withSources, map[string]any{"groups": []any{"a"}}, `{"groups":["a"],"sub":"u"}`},
		{"resolved from the ID token's sources", ``, map[string]any{"groups": "a"}, `{"groups":"a"}`},
		{"nothing resolved", ``, map[string]any{}, ``},
	} {
		got, err := joinResolved([]byte(c.info), c.resolved)
		if err != nil || string(got) != c.want {
			t.Errorf("%s: %s (%v), want %s", c.name, got, err, c.want)
		}
	}
}
