package testop

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// rawJWKS returns the provider's JWKS as plain JSON objects (go-jose
// cannot read every key of a suite-shaped set).
func rawJWKS(t *testing.T, p *Provider) []map[string]any {
	t.Helper()
	resp, body := getWithToken(t, discovery(t, strings.TrimSuffix(p.Issuer(), "/"))["jwks_uri"].(string), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %d", resp.StatusCode)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(body), &set); err != nil {
		t.Fatal(err)
	}
	return set.Keys
}

// keyKind names a JWK by type, curve and use: "RSA/sig", "EC P-256/enc".
func keyKind(k map[string]any) string {
	kind := k["kty"].(string)
	if crv, ok := k["crv"].(string); ok {
		kind += " " + crv
	}
	return kind + "/" + fmt.Sprint(k["use"])
}

// verifyWithSet verifies raw with the published key that has kid (any
// readable key that verifies, when kid is ""), and returns its kind.
func verifyWithSet(t *testing.T, keys []map[string]any, raw, kid string) string {
	t.Helper()
	jws, err := jose.ParseSigned(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if kid != "" && k["kid"] != kid {
			continue
		}
		b, _ := json.Marshal(k)
		var jwk jose.JSONWebKey
		if jwk.UnmarshalJSON(b) != nil {
			continue
		}
		if _, err := jws.Verify(jwk); err == nil {
			return keyKind(k)
		}
	}
	t.Fatalf("no published key (kid %q) verifies the token", kid)
	return ""
}

// TestPublishKeySetLikeTheSuite: the suite's set, key by key, and tokens
// signed with one of its RSA keys, named by kid.
func TestPublishKeySetLikeTheSuite(t *testing.T) {
	p := newOP(t, Config{})
	if err := p.PublishKeySet(SuiteKeySet); err != nil {
		t.Fatal(err)
	}
	keys := rawJWKS(t, p)
	kinds := map[string]int{}
	kids := map[string]bool{}
	for _, k := range keys {
		kinds[keyKind(k)]++
		kid, _ := k["kid"].(string)
		if kid == "" || kids[kid] {
			t.Errorf("key without a kid of its own: %v", k)
		}
		kids[kid] = true
		if _, hasAlg := k["alg"]; hasAlg != (k["use"] == "enc") {
			t.Errorf("alg published on %s: %v", keyKind(k), k["alg"])
		}
		if _, private := k["d"]; private {
			t.Errorf("a private key is published: %v", keyKind(k))
		}
	}
	want := map[string]int{"RSA/sig": 2, "EC P-256/sig": 2, "EC secp256k1/sig": 1, "OKP Ed25519/sig": 1, "RSA/enc": 1, "EC P-256/enc": 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Errorf("published %v, want %v", kinds, want)
	}
	// go-jose cannot read the secp256k1 key: the set as a whole does not
	// parse, which is what a relying party must cope with.
	resp, body := getWithToken(t, p.Issuer()+"/keys", "")
	var strict jose.JSONWebKeySet
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &strict) == nil {
		t.Error("go-jose reads the whole set; the secp256k1 key is not there")
	}

	l := newRP(t, p).mustLogin(t)
	h := jwtHeader(t, l.rawIDToken)
	if h["alg"] != "RS256" || h["kid"] == nil {
		t.Fatalf("ID token header %v", h)
	}
	if kind := verifyWithSet(t, keys, l.rawIDToken, h["kid"].(string)); kind != "RSA/sig" {
		t.Errorf("the ID token is signed with a %s key", kind)
	}

	// Rotation makes a new set of the same shape, under new kids.
	p.RotateKeys(false)
	rotated := rawJWKS(t, p)
	if len(rotated) != len(keys) {
		t.Errorf("rotated set has %d keys, want %d", len(rotated), len(keys))
	}
	for _, k := range rotated {
		if kids[k["kid"].(string)] {
			t.Errorf("rotation kept kid %v", k["kid"])
		}
	}
	p.RotateKeys(true)
	if n := len(rawJWKS(t, p)); n != 2*len(keys) {
		t.Errorf("rotation keeping the old keys publishes %d, want %d", n, 2*len(keys))
	}
}

// TestPublishKeySetWithoutKids: the kid-absent modules' sets and tokens.
func TestPublishKeySetWithoutKids(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := newOP(t, Config{})
			if err := p.PublishKeySet(KeySet{RSA: n, EC: n, Secp256k1: n, Ed25519: n, Encryption: true, NoKeyIDs: true}); err != nil {
				t.Fatal(err)
			}
			keys := rawJWKS(t, p)
			if len(keys) != 4*n+2 {
				t.Errorf("%d keys, want %d", len(keys), 4*n+2)
			}
			for _, k := range keys {
				if _, has := k["kid"]; has != (k["use"] == "enc") {
					t.Errorf("%s key: kid %v", keyKind(k), k["kid"])
				}
			}
			l := newRP(t, p).mustLogin(t)
			if h := jwtHeader(t, l.rawIDToken); h["kid"] != nil || h["alg"] != "RS256" {
				t.Errorf("ID token header %v, want RS256 without kid", h)
			}
			if kind := verifyWithSet(t, keys, l.rawIDToken, ""); kind != "RSA/sig" {
				t.Errorf("the ID token is signed with a %s key", kind)
			}
		})
	}
	if err := newOP(t, Config{}).PublishKeySet(KeySet{EC: 1}); err == nil {
		t.Error("a set without an RSA key was published")
	}
}

// TestSetSigningAlgES256: ID tokens signed with a published P-256 key, in
// a suite-shaped set or in the default one.
func TestSetSigningAlgES256(t *testing.T) {
	for _, shaped := range []bool{false, true} {
		t.Run(fmt.Sprint("shaped=", shaped), func(t *testing.T) {
			p := newOP(t, Config{SigningAlgs: []string{"ES256"}})
			if shaped {
				if err := p.PublishKeySet(SuiteKeySet); err != nil {
					t.Fatal(err)
				}
			}
			if err := p.SetSigningAlg("ES256"); err != nil {
				t.Fatal(err)
			}
			r := newRP(t, p)
			l, err := r.login(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			h := jwtHeader(t, l.rawIDToken)
			if h["alg"] != "ES256" || h["kid"] == nil {
				t.Fatalf("ID token header %v", h)
			}
			if kind := verifyWithSet(t, rawJWKS(t, p), l.rawIDToken, h["kid"].(string)); kind != "EC P-256/sig" {
				t.Errorf("signed with a %s key", kind)
			}
			if err := p.SetSigningAlg("RS256"); err != nil {
				t.Fatal(err)
			}
			if h := jwtHeader(t, r.mustLogin(t).rawIDToken); h["alg"] != "RS256" {
				t.Errorf("back to RS256: header %v", h)
			}
		})
	}
	if err := newOP(t, Config{}).SetSigningAlg("HS256"); err == nil {
		t.Error("HS256 was accepted as the signing algorithm")
	}
}

// TestSignLogoutTokenWith: the wrong-alg and alg-none logout tokens.
func TestSignLogoutTokenWith(t *testing.T) {
	p := newOP(t, Config{})
	if err := p.PublishKeySet(SuiteKeySet); err != nil {
		t.Fatal(err)
	}
	keys := rawJWKS(t, p)
	for alg, kind := range map[string]string{"RS256": "RSA/sig", "ES256": "EC P-256/sig"} {
		tok, err := p.SignLogoutTokenWith(alg, map[string]any{"sid": "s1", "ignored_claim": "x"}, "")
		if err != nil {
			t.Fatal(err)
		}
		h := jwtHeader(t, tok)
		if h["alg"] != alg || h["typ"] != nil || h["kid"] == nil {
			t.Errorf("%s: header %v", alg, h)
		}
		if got := verifyWithSet(t, keys, tok, h["kid"].(string)); got != kind {
			t.Errorf("%s: signed with a %s key", alg, got)
		}
		c := jwtClaims(t, tok)
		if c["sid"] != "s1" || c["ignored_claim"] != "x" || c["events"] == nil || c["iss"] != p.Issuer() {
			t.Errorf("%s: claims %v", alg, c)
		}
	}
	tok, err := p.SignLogoutTokenWith("none", map[string]any{"sub": "u"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if h := jwtHeader(t, tok); h["alg"] != "none" || !strings.HasSuffix(tok, ".") {
		t.Errorf("unsigned token %q, header %v", tok, h)
	}
	if _, err := p.SignLogoutTokenWith("HS256", nil, ""); err == nil {
		t.Error("HS256 was accepted")
	}
}

// TestPooledRSAKeysAreDistinct: keys handed out together differ, in and
// beyond the pool.
func TestPooledRSAKeysAreDistinct(t *testing.T) {
	for _, n := range []int{3, rsaPoolSize, rsaPoolSize + 2} {
		keys, err := pooledRSAKeys(n)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, k := range keys {
			s := k.N.String()
			if seen[s] {
				t.Errorf("%d keys: one handed out twice", n)
			}
			seen[s] = true
		}
	}
}
