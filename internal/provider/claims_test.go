package provider

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/oidcgate/caddy-oidc/internal/testop"
)

// payloadOf is a compact JWT's payload.
func payloadOf(t *testing.T, jwt string) []byte {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWT: %.40q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sourcesFixture signs in at a provider with sources and returns the
// state, the tokens and the userinfo claims.
func sourcesFixture(t *testing.T, sources ...testop.ClaimSource) (*testop.Provider, *State, *Tokens, []byte) {
	t.Helper()
	op := startOP(t, testop.Config{})
	if err := op.SetClaimSources(sources...); err != nil {
		t.Fatal(err)
	}
	st := runProvider(t, configFor(op)).Current()
	tok := signIn(t, st)
	info, err := st.UserInfo(t.Context(), tok.AccessToken, "user-1")
	if err != nil {
		t.Fatal(err)
	}
	return op, st, tok, info
}

func TestResolveAggregatedClaims(t *testing.T) {
	_, st, tok, _ := sourcesFixture(t, testop.ClaimSource{
		Name: "src1", InIDToken: true,
		Claims: map[string]any{"groups": []string{"a", "b"}, "level": 3},
	})
	got, err := st.ResolveClaimSources(t.Context(), payloadOf(t, tok.IDToken), tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if string(b) != `{"groups":["a","b"],"level":3}` {
		t.Errorf("resolved %s; want the source's claims, and only them", b)
	}
}

func TestResolveDistributedClaims(t *testing.T) {
	op, st, tok, info := sourcesFixture(t,
		// The source's own token.
		testop.ClaimSource{Name: "graph", Distributed: true, OwnToken: true, InUserinfo: true,
			Claims: map[string]any{"roles": []string{"admin"}}},
		// The user's access token, and a JSON answer.
		testop.ClaimSource{Name: "hr", Distributed: true, AnswerJSON: true, InUserinfo: true,
			Claims: map[string]any{"cost_center": "42"}},
	)
	got, err := st.ResolveClaimSources(t.Context(), info, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	if string(b) != `{"cost_center":"42","roles":["admin"]}` {
		t.Errorf("resolved %s", b)
	}
	if op.ClaimSourceCalls("graph") != 1 || op.ClaimSourceCalls("hr") != 1 {
		t.Errorf("calls: graph %d, hr %d; want one each", op.ClaimSourceCalls("graph"), op.ClaimSourceCalls("hr"))
	}
	// Without the user's token, the source that relies on it refuses.
	if _, err := st.ResolveClaimSources(t.Context(), info, "not-a-token"); userinfoReason(err) != "refused" {
		t.Errorf("with another token: %v", err)
	}
	// A source that is down is the provider being unavailable.
	op.SetDown(true)
	if _, err := st.ResolveClaimSources(t.Context(), info, tok.AccessToken); !errors.Is(err, ErrUnavailable) {
		t.Errorf("with the sources down: %v", err)
	}
}

func TestResolveClaimSourcesRefusals(t *testing.T) {
	op, st, tok, _ := sourcesFixture(t, testop.ClaimSource{
		Name: "src1", InIDToken: true, BadSignature: true,
		Claims: map[string]any{"groups": []string{"a"}},
	})
	if _, err := st.ResolveClaimSources(t.Context(), payloadOf(t, tok.IDToken), tok.AccessToken); userinfoReason(err) != "signature" {
		t.Errorf("aggregated claims with a bad signature: %v", err)
	}
	for name, c := range map[string]struct {
		claims, reason string
		unavailable    bool
	}{
		"a source named but not described":       {`{"_claim_names":{"groups":"src1"},"_claim_sources":{}}`, "malformed", false},
		"a source with neither JWT nor endpoint": {`{"_claim_names":{"groups":"src1"},"_claim_sources":{"src1":{}}}`, "malformed", false},
		"a JWT that is not one":                  {`{"_claim_names":{"groups":"src1"},"_claim_sources":{"src1":{"JWT":"x.y.z"}}}`, "signature", false},
		"_claim_names that are not names":        {`{"_claim_names":{"groups":7},"_claim_sources":{}}`, "malformed", false},
		"_claim_sources that are not sources":    {`{"_claim_names":{"groups":"src1"},"_claim_sources":[]}`, "malformed", false},
		"an endpoint that is not there":          {`{"_claim_names":{"groups":"src1"},"_claim_sources":{"src1":{"endpoint":"` + op.Issuer() + `/claims/gone"}}}`, "refused", false},
	} {
		_, err := st.ResolveClaimSources(t.Context(), []byte(c.claims), tok.AccessToken)
		if err == nil || userinfoReason(err) != c.reason || errors.Is(err, ErrUnavailable) != c.unavailable {
			t.Errorf("%s: %v", name, err)
		}
	}
	if got, err := st.ResolveClaimSources(t.Context(), []byte(`{"sub":"user-1"}`), tok.AccessToken); got != nil || err != nil {
		t.Errorf("claims without sources: %v, %v", got, err)
	}
}
