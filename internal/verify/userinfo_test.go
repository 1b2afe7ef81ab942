package verify

import (
	"context"
	"encoding/json"
	"testing"
)

// TestSignedUserinfoChecksOfOpenIDConnectCore532: the signature with an
// allowed algorithm, and iss and aud when present.
func TestSignedUserinfoChecksOfOpenIDConnectCore532(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// What a signed userinfo answer carries: claims, iss, aud; no nonce,
	// iat or exp.
	answer := map[string]any{"nonce": nil, "iat": nil, "exp": nil, "email": "a@example.com"}
	for name, claims := range map[string]map[string]any{
		"iss and aud":         answer,
		"neither iss nor aud": merge(answer, map[string]any{"iss": nil, "aud": nil}),
		"aud among several":   merge(answer, map[string]any{"aud": []string{"other", client}}),
	} {
		payload, err := f.v.SignedUserinfo(ctx, f.sign(claims, "JWT"))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var c map[string]any
		if json.Unmarshal(payload, &c) != nil || c["sub"] != "user" || c["email"] != "a@example.com" {
			t.Errorf("%s: payload %s", name, payload)
		}
	}
	for _, c := range []struct {
		name   string
		claims map[string]any
		reason string
	}{
		{"another issuer", map[string]any{"iss": "https://evil.example"}, "issuer"},
		{"another audience", map[string]any{"aud": "other"}, "audience"},
		{"other audiences", map[string]any{"aud": []string{"other", "more"}}, "audience"},
		{"an aud that is a number", map[string]any{"aud": 7}, "audience"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.v.SignedUserinfo(ctx, f.sign(merge(answer, c.claims), "JWT"))
			wantReason(t, err, c.reason)
		})
	}
	_, err := f.v.SignedUserinfo(ctx, unsigned(`{"alg":"none"}`, `{"sub":"user"}`))
	wantReason(t, err, "algorithm")
	_, err = f.v.SignedUserinfo(ctx, unsigned(`{"alg":"HS256"}`, `{"sub":"user"}`)+"c2ln")
	wantReason(t, err, "algorithm")
	_, err = f.v.SignedUserinfo(ctx, `{"sub":"user"}`)
	wantReason(t, err, "malformed")
	good := f.sign(answer, "JWT")
	_, err = f.v.SignedUserinfo(ctx, good[:len(good)-4]+"AAAA")
	if Reason(err) != "signature" {
		t.Errorf("a corrupted signature: %v", err)
	}
}

// TestSignedUserinfoOfAMultiTenantProvider: an iss must be the tenant's
// own, and the tenant admitted, as for ID tokens.
func TestSignedUserinfoOfAMultiTenantProvider(t *testing.T) {
	f := newFixture(t)
	f.multiTenant(tenantA)
	ctx := context.Background()
	answer := map[string]any{"nonce": nil, "iat": nil, "exp": nil}
	if _, err := f.v.SignedUserinfo(ctx, f.sign(merge(answer, map[string]any{"iss": tenantIssuer(tenantA), "tid": tenantA}), "JWT")); err != nil {
		t.Fatalf("the admitted tenant's: %v", err)
	}
	if _, err := f.v.SignedUserinfo(ctx, f.sign(merge(answer, map[string]any{"iss": nil}), "JWT")); err != nil {
		t.Fatalf("without iss: %v", err)
	}
	for _, c := range []struct {
		name   string
		claims map[string]any
		reason string
	}{
		{"another tenant's", map[string]any{"iss": tenantIssuer(tenantB), "tid": tenantB}, "tenant"},
		{"iss of another tenant", map[string]any{"iss": tenantIssuer(tenantB), "tid": tenantA}, "issuer"},
		{"an iss without tid", map[string]any{"iss": tenantIssuer(tenantA)}, "issuer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.v.SignedUserinfo(ctx, f.sign(merge(answer, c.claims), "JWT"))
			wantReason(t, err, c.reason)
		})
	}
}
