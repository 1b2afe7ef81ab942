package testop

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// sourceRefs returns a claim set's _claim_names and _claim_sources.
func sourceRefs(c map[string]any) (names, sources map[string]any) {
	names, _ = c["_claim_names"].(map[string]any)
	sources, _ = c["_claim_sources"].(map[string]any)
	return names, sources
}

func TestAggregatedClaimSourceInTheIDToken(t *testing.T) {
	p := newOP(t, Config{})
	if err := p.SetClaimSources(ClaimSource{Name: "src1", Claims: map[string]any{"groups": []string{"a", "b"}, "level": 3}, InIDToken: true}); err != nil {
		t.Fatal(err)
	}
	l := newRP(t, p).mustLogin(t)
	idt := jwtClaims(t, l.rawIDToken)
	names, sources := sourceRefs(idt)
	if len(names) != 2 || names["groups"] != "src1" || names["level"] != "src1" || len(sources) != 1 {
		t.Fatalf("_claim_names %v, _claim_sources %v", names, sources)
	}
	if _, ok := idt["groups"]; ok {
		t.Error("the ID token carries the aggregated claim itself")
	}
	jwt, _ := sources["src1"].(map[string]any)["JWT"].(string)
	c, err := verifyJWT(t, p, jwt)
	if err != nil {
		t.Fatalf("the aggregated JWT: %v", err)
	}
	if c["iss"] != p.Issuer() || c["sub"] != "user-1" || c["level"] != 3.0 || len(c["groups"].([]any)) != 2 {
		t.Errorf("aggregated claims %v", c)
	}
	// Placed in the ID token only.
	_, body := userinfo(t, p, l.token.AccessToken)
	if names, _ := sourceRefs(jsonObject(t, body)); names != nil {
		t.Errorf("userinfo refers to sources: %s", body)
	}

	if err := p.SetClaimSources(ClaimSource{Name: "src1", Claims: map[string]any{"groups": "x"}, InIDToken: true, BadSignature: true}); err != nil {
		t.Fatal(err)
	}
	_, sources = sourceRefs(jwtClaims(t, newRP(t, p).mustLogin(t).rawIDToken))
	if _, err := verifyJWT(t, p, sources["src1"].(map[string]any)["JWT"].(string)); err == nil {
		t.Error("BadSignature: the aggregated JWT verifies")
	}

	if err := p.SetClaimSources(); err != nil {
		t.Fatal(err)
	}
	if names, _ := sourceRefs(jwtClaims(t, newRP(t, p).mustLogin(t).rawIDToken)); names != nil {
		t.Errorf("sources removed, still named: %v", names)
	}
}

func TestDistributedClaimSources(t *testing.T) {
	p := newOP(t, Config{})
	err := p.SetClaimSources(
		ClaimSource{Name: "graph", Claims: map[string]any{"roles": []string{"admin"}}, Distributed: true, OwnToken: true, InUserinfo: true},
		ClaimSource{Name: "hr", Claims: map[string]any{"cost_center": "42"}, Distributed: true, AnswerJSON: true, InIDToken: true, InUserinfo: true},
	)
	if err != nil {
		t.Fatal(err)
	}
	l := newRP(t, p).mustLogin(t)
	names, sources := sourceRefs(jwtClaims(t, l.rawIDToken))
	if len(names) != 1 || names["cost_center"] != "hr" || len(sources) != 1 {
		t.Fatalf("ID token: _claim_names %v, _claim_sources %v", names, sources)
	}
	hr := sources["hr"].(map[string]any)
	if hr["endpoint"] != p.Issuer()+"/claims/hr" || hr["access_token"] != nil {
		t.Errorf("hr source %v: want the endpoint and no token of its own", hr)
	}
	_, body := userinfo(t, p, l.token.AccessToken)
	names, sources = sourceRefs(jsonObject(t, body))
	if len(names) != 2 || names["roles"] != "graph" || names["cost_center"] != "hr" || len(sources) != 2 {
		t.Fatalf("userinfo: %s", body)
	}
	graph := sources["graph"].(map[string]any)
	own, _ := graph["access_token"].(string)
	if graph["endpoint"] != p.Issuer()+"/claims/graph" || own == "" || own == l.token.AccessToken {
		t.Fatalf("graph source %v: want its own token", graph)
	}
	if !slices.Contains(p.IssuedTokens(), own) {
		t.Error("the source's own token is not among IssuedTokens")
	}

	// graph answers a JWT, to its own token only.
	resp, body := getWithToken(t, graph["endpoint"].(string), own)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/jwt" {
		t.Fatalf("graph: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if c, err := verifyJWT(t, p, body); err != nil || c["roles"].([]any)[0] != "admin" || c["iss"] != p.Issuer() {
		t.Errorf("graph's JWT: %v %v", c, err)
	}
	for _, tok := range []string{l.token.AccessToken, "", "forged"} {
		if resp, _ := getWithToken(t, graph["endpoint"].(string), tok); resp.StatusCode != http.StatusUnauthorized ||
			!strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("graph with token %.8q: %d", tok, resp.StatusCode)
		}
	}
	// hr answers JSON, to the user's access token.
	resp, body = getWithToken(t, hr["endpoint"].(string), l.token.AccessToken)
	if resp.StatusCode != 200 || jsonObject(t, body)["cost_center"] != "42" {
		t.Fatalf("hr: %d %s", resp.StatusCode, body)
	}
	if resp, _ := getWithToken(t, hr["endpoint"].(string), own); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("hr with another source's token: %d", resp.StatusCode)
	}
	if resp, _ := getWithToken(t, p.Issuer()+"/claims/nowhere", own); resp.StatusCode != http.StatusNotFound {
		t.Errorf("an unknown source: %d", resp.StatusCode)
	}
	if p.ClaimSourceCalls("graph") != 4 || p.ClaimSourceCalls("hr") != 2 {
		t.Errorf("calls graph %d, hr %d; want 4, 2", p.ClaimSourceCalls("graph"), p.ClaimSourceCalls("hr"))
	}
}

func TestSetClaimSourcesRefusesAmbiguousSources(t *testing.T) {
	p := newOP(t, Config{})
	a := map[string]any{"groups": "a"}
	for name, sources := range map[string][]ClaimSource{
		"no name":        {{Claims: a, InIDToken: true}},
		"a slash":        {{Name: "a/b", Claims: a, InIDToken: true}},
		"a name twice":   {{Name: "s", InIDToken: true}, {Name: "s", InUserinfo: true}},
		"a claim twice":  {{Name: "s1", Claims: a, InUserinfo: true}, {Name: "s2", Claims: a, InIDToken: true, InUserinfo: true}},
		"not JSON-ready": {{Name: "s", Claims: map[string]any{"f": func() {}}}},
	} {
		if err := p.SetClaimSources(sources...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// One claim from two sources, in different places, is fine.
	if err := p.SetClaimSources(ClaimSource{Name: "s1", Claims: a, InIDToken: true}, ClaimSource{Name: "s2", Claims: a, InUserinfo: true}); err != nil {
		t.Error(err)
	}
}
