package provider

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// longSecret is long enough for client_secret_jwt.
const longSecret = "a-client-secret-of-at-least-32-bytes!"

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKey(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func certificateFor(t *testing.T, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "caddy-oidc client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMethodFor(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	all := []string{ClientSecretBasic, ClientSecretPost, ClientSecretJWT, PrivateKeyJWT}
	cases := []struct {
		name      string
		auth      ClientAuth
		supported []string
		want      string // "" wants an error
	}{
		{"basic first", ClientAuth{Secret: "s"}, []string{ClientSecretPost, ClientSecretBasic}, ClientSecretBasic},
		{"the provider's only one", ClientAuth{Secret: "s"}, []string{ClientSecretPost}, ClientSecretPost},
		{"absent list means basic", ClientAuth{Secret: "s"}, nil, ClientSecretBasic},
		{"absent list and only a key", ClientAuth{Key: key}, nil, ""},
		{"a key alone", ClientAuth{Key: key}, all, PrivateKeyJWT},
		{"secret and key: basic first", ClientAuth{Secret: "s", Key: key}, all, ClientSecretBasic},
		{"configured method wins", ClientAuth{Method: ClientSecretPost, Secret: "s"}, []string{ClientSecretBasic}, ClientSecretPost},
		{"configured private_key_jwt", ClientAuth{Method: PrivateKeyJWT, Secret: "s", Key: key}, all, PrivateKeyJWT},
		{"long secret, jwt only", ClientAuth{Secret: longSecret}, []string{ClientSecretJWT}, ClientSecretJWT},
		{"short secret cannot do client_secret_jwt", ClientAuth{Secret: strings.Repeat("s", 31)}, []string{ClientSecretJWT, PrivateKeyJWT}, ""},
		{"public client", ClientAuth{}, all, None},
		{"public client, none announced", ClientAuth{}, []string{None, ClientSecretBasic}, None},
		{"secret, but the provider wants a key", ClientAuth{Secret: "s"}, []string{PrivateKeyJWT}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.auth.methodFor(c.supported)
			switch {
			case c.want == "" && err == nil:
				t.Errorf("methodFor = %q, want an error", got)
			case c.want != "" && (err != nil || got != c.want):
				t.Errorf("methodFor = %q, %v; want %q", got, err, c.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	key := ecKey(t, elliptic.P256())
	for _, c := range []struct {
		auth ClientAuth
		want string // "" accepts
	}{
		{ClientAuth{}, ""},
		{ClientAuth{Method: ClientSecretBasic, Secret: "s"}, ""},
		{ClientAuth{Method: ClientSecretJWT, Secret: longSecret}, ""},
		{ClientAuth{Method: PrivateKeyJWT, Key: key}, ""},
		{ClientAuth{Method: None}, ""},
		{ClientAuth{Method: "tls_client_auth"}, "want one of"},
		{ClientAuth{Method: ClientSecretPost}, "needs a client secret"},
		{ClientAuth{Method: ClientSecretJWT, Secret: "short"}, "at least 32 bytes"},
		{ClientAuth{Method: PrivateKeyJWT, Secret: longSecret}, "needs a private key"},
	} {
		err := c.auth.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: Validate = %v, want %q", c.auth.Method, err, c.want)
		}
	}
}

// decodedAssertion is a client assertion taken apart.
type decodedAssertion struct {
	header map[string]any
	claims struct {
		Iss string `json:"iss"`
		Sub string `json:"sub"`
		Aud string `json:"aud"`
		Jti string `json:"jti"`
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
	}
}

func decodeAssertion(t *testing.T, raw string, verifyWith any, alg jose.SignatureAlgorithm) decodedAssertion {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatalf("parsing the assertion: %v", err)
	}
	payload, err := jws.Verify(verifyWith)
	if err != nil {
		t.Fatalf("the assertion does not verify: %v", err)
	}
	var d decodedAssertion
	h, _, _ := strings.Cut(raw, ".")
	b, _ := base64.RawURLEncoding.DecodeString(h)
	if err := json.Unmarshal(b, &d.header); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(payload, &d.claims); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestAssertionClaims(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	a := ClientAuth{Secret: longSecret}
	form, header := url.Values{"client_secret": {"leftover"}}, http.Header{}
	if err := a.apply(ClientSecretJWT, "my-client", "https://op.example", "https://op.example/token", form, header, now); err != nil {
		t.Fatal(err)
	}
	if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" ||
		form.Get("client_id") != "my-client" || form.Has("client_secret") || header.Get("Authorization") != "" {
		t.Errorf("form %v, header %v", form, header)
	}
	d := decodeAssertion(t, form.Get("client_assertion"), []byte(longSecret), jose.HS256)
	c := d.claims
	if c.Iss != "my-client" || c.Sub != "my-client" || c.Aud != "https://op.example/token" {
		t.Errorf("iss %q sub %q aud %q", c.Iss, c.Sub, c.Aud)
	}
	if c.Iat != now.Unix() || c.Exp <= c.Iat || c.Exp-c.Iat > 60 {
		t.Errorf("iat %d exp %d: want a lifetime of at most a minute from now", c.Iat, c.Exp)
	}
	if len(c.Jti) < 16 {
		t.Errorf("jti %q is too short to be unguessable", c.Jti)
	}
	if d.header["alg"] != "HS256" || d.header["typ"] != "JWT" || d.header["kid"] != nil {
		t.Errorf("header %v", d.header)
	}

	// Every assertion has a jti of its own.
	seen := map[string]bool{c.Jti: true}
	for range 50 {
		raw, err := a.assertion(ClientSecretJWT, "my-client", "aud", now)
		if err != nil {
			t.Fatal(err)
		}
		jti := decodeAssertion(t, raw, []byte(longSecret), jose.HS256).claims.Jti
		if seen[jti] {
			t.Fatalf("jti %q used twice", jti)
		}
		seen[jti] = true
	}
}

func TestAssertionAudience(t *testing.T) {
	for _, c := range []struct{ setting, want string }{
		{"", "https://op.example/oauth/token"},
		{AudienceIssuer, "https://op.example"},
		{"https://login.example/tenant/token", "https://login.example/tenant/token"},
	} {
		a := ClientAuth{Secret: longSecret, AssertionAudience: c.setting}
		form := url.Values{}
		if err := a.apply(ClientSecretJWT, "c", "https://op.example", "https://op.example/oauth/token", form, http.Header{}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if got := decodeAssertion(t, form.Get("client_assertion"), []byte(longSecret), jose.HS256).claims.Aud; got != c.want {
			t.Errorf("AssertionAudience %q: aud %q, want %q", c.setting, got, c.want)
		}
	}
}

func TestPrivateKeyAssertionHeader(t *testing.T) {
	rk := rsaKey(t)
	for _, c := range []struct {
		name string
		key  crypto.Signer
		alg  jose.SignatureAlgorithm
	}{
		{"RSA", rk, jose.RS256},
		{"P-256", ecKey(t, elliptic.P256()), jose.ES256},
		{"P-384", ecKey(t, elliptic.P384()), jose.ES384},
		{"P-521", ecKey(t, elliptic.P521()), jose.ES512},
	} {
		t.Run(c.name, func(t *testing.T) {
			raw, err := ClientAuth{Key: c.key}.assertion(PrivateKeyJWT, "c", "aud", time.Now())
			if err != nil {
				t.Fatal(err)
			}
			d := decodeAssertion(t, raw, c.key.Public(), c.alg)
			if d.header["alg"] != string(c.alg) || d.header["kid"] != nil || d.header["x5t"] != nil {
				t.Errorf("header %v, want alg %s without kid and x5t", d.header, c.alg)
			}
		})
	}
	t.Run("kid", func(t *testing.T) {
		raw, err := ClientAuth{Key: rk, KeyID: "key-2025"}.assertion(PrivateKeyJWT, "c", "aud", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if h := decodeAssertion(t, raw, rk.Public(), jose.RS256).header; h["kid"] != "key-2025" {
			t.Errorf("header %v, want kid key-2025", h)
		}
	})
	t.Run("certificate", func(t *testing.T) {
		cert := certificateFor(t, rk)
		raw, err := ClientAuth{Key: rk, Certificate: cert}.assertion(PrivateKeyJWT, "c", "aud", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		s1, s256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
		h := decodeAssertion(t, raw, rk.Public(), jose.RS256).header
		if h["x5t"] != base64.RawURLEncoding.EncodeToString(s1[:]) || h["x5t#S256"] != base64.RawURLEncoding.EncodeToString(s256[:]) {
			t.Errorf("header %v, want the certificate's x5t and x5t#S256", h)
		}
	})
}

func TestApplySecretMethods(t *testing.T) {
	a := ClientAuth{Secret: "s:e/c%ret"}
	form, header := url.Values{}, http.Header{}
	if err := a.apply(ClientSecretBasic, "c i+d", "", "", form, header, time.Now()); err != nil {
		t.Fatal(err)
	}
	// RFC 6749 2.3.1: form-encoded, then Basic.
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("c+i%2Bd:s%3Ae%2Fc%25ret"))
	if header.Get("Authorization") != want || len(form) != 0 {
		t.Errorf("basic: header %q, form %v", header.Get("Authorization"), form)
	}
	form, header = url.Values{}, http.Header{}
	if err := a.apply(ClientSecretPost, "c i+d", "", "", form, header, time.Now()); err != nil {
		t.Fatal(err)
	}
	if form.Get("client_id") != "c i+d" || form.Get("client_secret") != a.Secret || header.Get("Authorization") != "" {
		t.Errorf("post: form %v, header %v", form, header)
	}
	form = url.Values{"client_secret": {"x"}}
	if err := (ClientAuth{}).apply(None, "c", "", "", form, header, time.Now()); err != nil || form.Get("client_id") != "c" || form.Has("client_secret") {
		t.Errorf("none: form %v, err %v", form, err)
	}
	if err := a.apply("tls_client_auth", "c", "", "", url.Values{}, http.Header{}, time.Now()); err == nil {
		t.Error("an unknown method was applied")
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseKey(t *testing.T) {
	rk, ek := rsaKey(t), ecKey(t, elliptic.P384())
	pkcs8RSA, _ := x509.MarshalPKCS8PrivateKey(rk)
	pkcs8EC, _ := x509.MarshalPKCS8PrivateKey(ek)
	sec1, _ := x509.MarshalECPrivateKey(ek)
	cert := certificateFor(t, rk)

	for _, c := range []struct {
		name     string
		pem      []byte
		key      crypto.Signer
		withCert bool
	}{
		{"PKCS #8 RSA", pemBlock("PRIVATE KEY", pkcs8RSA), rk, false},
		{"PKCS #8 EC", pemBlock("PRIVATE KEY", pkcs8EC), ek, false},
		{"PKCS #1", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), rk, false},
		{"SEC 1", pemBlock("EC PRIVATE KEY", sec1), ek, false},
		{"key then certificate", append(pemBlock("PRIVATE KEY", pkcs8RSA), pemBlock("CERTIFICATE", cert.Raw)...), rk, true},
		{"certificate then key, with text around", []byte("subject=CN=x\n" + string(pemBlock("CERTIFICATE", cert.Raw)) + "bag attributes\n" + string(pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)))), rk, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			key, gotCert, err := ParseKey(c.pem)
			if err != nil {
				t.Fatal(err)
			}
			if !c.key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("ParseKey returned another key")
			}
			if c.withCert != (gotCert != nil) || (gotCert != nil && !gotCert.Equal(cert)) {
				t.Errorf("certificate %v, want one: %v", gotCert != nil, c.withCert)
			}
		})
	}

	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	pkcs8Ed, _ := x509.MarshalPKCS8PrivateKey(edKey)
	for _, c := range []struct {
		name string
		pem  []byte
		want string
	}{
		{"empty", nil, "no PEM private key"},
		{"only a certificate", pemBlock("CERTIFICATE", cert.Raw), "no PEM private key"},
		{"a public key", pemBlock("PUBLIC KEY", []byte("x")), "no PEM private key"},
		{"not PEM", []byte("-----BEGIN nothing"), "no PEM private key"},
		{"Ed25519", pemBlock("PRIVATE KEY", pkcs8Ed), "must be an RSA or ECDSA"},
		{"broken PKCS #8", pemBlock("PRIVATE KEY", []byte("junk")), "PKCS #8 key"},
		{"broken PKCS #1", pemBlock("RSA PRIVATE KEY", []byte("junk")), "PKCS #1 key"},
		{"broken SEC 1", pemBlock("EC PRIVATE KEY", []byte("junk")), "EC key"},
		{"broken certificate", append(pemBlock("PRIVATE KEY", pkcs8RSA), pemBlock("CERTIFICATE", []byte("junk"))...), "certificate"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := ParseKey(c.pem)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("ParseKey = %v, want an error saying %q", err, c.want)
			}
		})
	}
}
