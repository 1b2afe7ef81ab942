package testop

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Client authentication methods at the token endpoint (OpenID Connect Core
// 9). The provider announces the ones in [Config.TokenAuthMethods] and
// accepts only those.
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	ClientSecretJWT   = "client_secret_jwt"
	PrivateKeyJWT     = "private_key_jwt"
	// AuthNone is a public client: client_id in the form and nothing else.
	AuthNone = "none"
)

// DefaultTokenAuthMethods is what the provider announces and accepts when
// [Config.TokenAuthMethods] is empty.
var DefaultTokenAuthMethods = []string{ClientSecretBasic, ClientSecretPost}

// jwtBearer is the client_assertion_type of RFC 7523 2.2.
const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionLifetime is how far in the future a client assertion's exp
// may lie: an assertion is meant for one request (RFC 7523 3 lets the
// server bound it), and a long-lived one could be replayed elsewhere.
const maxAssertionLifetime = 10 * time.Minute

// assertionSkew is the clock skew allowed for iat and nbf.
const assertionSkew = 30 * time.Second

// Signature algorithms of client assertions.
var (
	hmacAlgs      = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}
	asymmetricAlg = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}
)

// clientAuthRecord is what the provider remembers of client
// authentication: spent assertion IDs and what the last token request
// used. It is guarded by Provider.mu.
type clientAuthRecord struct {
	jtis            map[string]time.Time // spent jti -> its exp, after which it is forgotten
	lastMethod      string
	lastHeader      map[string]any
	lastClaims      map[string]any
	lastAuthFailure string
}

func defaultTokenAuthMethods(m []string) []string {
	if len(m) == 0 {
		return slices.Clone(DefaultTokenAuthMethods)
	}
	return slices.Clone(m) // the caller may reuse its slice
}

// LastTokenAuthMethod returns the client authentication method the most
// recent token request used (one of the constants above), whether or not
// it succeeded; "" if there was no token request, or it mixed methods or
// used none that the provider could tell.
func (p *Provider) LastTokenAuthMethod() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clientAuth.lastMethod
}

// LastClientAssertion returns the JOSE header and the claims of the client
// assertion of the most recent token request that carried one, as sent
// (whether or not it was accepted), or nils.
func (p *Provider) LastClientAssertion() (header, claims map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneMap(p.clientAuth.lastHeader), cloneMap(p.clientAuth.lastClaims)
}

// LastClientAuthFailure returns why the most recent token request's client
// authentication was refused, or "" if it was accepted (or there was
// none). The same text is the invalid_client answer's error_description.
func (p *Provider) LastClientAuthFailure() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clientAuth.lastAuthFailure
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	b, _ := json.Marshal(m)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return out
}

// authenticateClient checks the client authentication of a token request:
// exactly one method (RFC 6749 2.3), one the provider announces, carried
// out correctly. It returns "" if the client is authenticated, else the
// reason for an invalid_client answer.
func (p *Provider) authenticateClient(r *http.Request) string {
	method, err := p.checkClientAuth(r)
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	p.mu.Lock()
	p.clientAuth.lastMethod = method
	p.clientAuth.lastAuthFailure = reason
	p.mu.Unlock()
	return reason
}

func (p *Provider) checkClientAuth(r *http.Request) (string, error) {
	form := r.PostForm
	_, _, basic := r.BasicAuth()
	post := form.Has("client_secret")
	assertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	used := 0
	for _, b := range []bool{basic, post, assertion} {
		if b {
			used++
		}
	}
	if used > 1 {
		return "", fmt.Errorf("more than one client authentication method in one request")
	}
	var method string
	switch {
	case basic:
		method = ClientSecretBasic
	case post:
		method = ClientSecretPost
	case assertion:
		m, err := assertionMethod(form.Get("client_assertion"))
		if err != nil {
			return "", err
		}
		method = m
	default:
		method = AuthNone
	}
	if !slices.Contains(p.cfg.TokenAuthMethods, method) {
		return method, fmt.Errorf("client authentication %s is not allowed (want one of %s)", method, strings.Join(p.cfg.TokenAuthMethods, ", "))
	}
	switch method {
	case ClientSecretBasic:
		id, secret, _ := r.BasicAuth()
		// RFC 6749 2.3.1: credentials are form-encoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return method, fmt.Errorf("the Basic credentials are not form-encoded")
		}
		if form.Has("client_id") && form.Get("client_id") != id {
			return method, fmt.Errorf("client_id in the form and in the Authorization header differ")
		}
		return method, p.checkSecret(id, secret)
	case ClientSecretPost:
		return method, p.checkSecret(form.Get("client_id"), form.Get("client_secret"))
	case ClientSecretJWT, PrivateKeyJWT:
		return method, p.checkAssertion(method, form)
	default:
		if form.Get("client_id") != p.cfg.ClientID {
			return method, fmt.Errorf("unknown client")
		}
		return method, nil
	}
}

func (p *Provider) checkSecret(id, secret string) error {
	if id != p.cfg.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(p.cfg.ClientSecret)) != 1 {
		return fmt.Errorf("unknown client or wrong secret")
	}
	return nil
}

// assertionMethod tells the method of a client assertion by its alg: an
// HMAC is signed with the client secret (client_secret_jwt), anything else
// with the client's private key (private_key_jwt).
func assertionMethod(assertion string) (string, error) {
	h, _, ok := strings.Cut(assertion, ".")
	if !ok {
		return "", fmt.Errorf("client_assertion is not a compact JWS")
	}
	var header struct {
		Alg string `json:"alg"`
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil || json.Unmarshal(b, &header) != nil {
		return "", fmt.Errorf("client_assertion has no readable header")
	}
	switch {
	case slices.Contains(hmacAlgs, jose.SignatureAlgorithm(header.Alg)):
		return ClientSecretJWT, nil
	case slices.Contains(asymmetricAlg, jose.SignatureAlgorithm(header.Alg)):
		return PrivateKeyJWT, nil
	}
	return "", fmt.Errorf("client_assertion alg %q is not allowed", header.Alg)
}

// checkAssertion verifies a client assertion (RFC 7523 3, OpenID Connect
// Core 9) and spends its jti.
func (p *Provider) checkAssertion(method string, form url.Values) error {
	raw := form.Get("client_assertion")
	p.recordAssertion(raw)
	if form.Get("client_assertion_type") != jwtBearer {
		return fmt.Errorf("client_assertion_type must be %s", jwtBearer)
	}
	algs := asymmetricAlg
	if method == ClientSecretJWT {
		algs = hmacAlgs
	}
	jws, err := jose.ParseSignedCompact(raw, algs)
	if err != nil {
		return fmt.Errorf("client_assertion: %v", err)
	}
	var payload []byte
	if method == ClientSecretJWT {
		payload, err = jws.Verify([]byte(p.cfg.ClientSecret))
		if err != nil {
			return fmt.Errorf("client_assertion signature does not verify with the client secret")
		}
	} else if payload, err = p.verifyWithClientKey(jws); err != nil {
		return err
	}
	var c struct {
		Iss string          `json:"iss"`
		Sub string          `json:"sub"`
		Aud json.RawMessage `json:"aud"`
		Exp *json.Number    `json:"exp"`
		Nbf *json.Number    `json:"nbf"`
		Iat *json.Number    `json:"iat"`
		Jti string          `json:"jti"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&c); err != nil {
		return fmt.Errorf("client_assertion claims are not a JSON object")
	}
	now := time.Now()
	switch {
	case c.Iss != p.cfg.ClientID || c.Sub != p.cfg.ClientID:
		return fmt.Errorf("client_assertion iss and sub must both be the client_id")
	case form.Has("client_id") && form.Get("client_id") != c.Iss:
		return fmt.Errorf("client_id and client_assertion iss differ")
	case !p.audienceOK(c.Aud):
		return fmt.Errorf("client_assertion aud must contain %s or %s", p.endpoint("/token"), p.issuer)
	case c.Exp == nil:
		return fmt.Errorf("client_assertion has no exp")
	case c.Jti == "":
		return fmt.Errorf("client_assertion has no jti")
	}
	exp, err := unixTime(*c.Exp)
	if err != nil {
		return fmt.Errorf("client_assertion exp: %v", err)
	}
	switch {
	case !now.Before(exp):
		return fmt.Errorf("client_assertion has expired")
	case exp.After(now.Add(maxAssertionLifetime)):
		return fmt.Errorf("client_assertion exp is more than %v away", maxAssertionLifetime)
	}
	for name, v := range map[string]*json.Number{"nbf": c.Nbf, "iat": c.Iat} {
		if v == nil {
			continue
		}
		t, err := unixTime(*v)
		if err != nil {
			return fmt.Errorf("client_assertion %s: %v", name, err)
		}
		if t.After(now.Add(assertionSkew)) {
			return fmt.Errorf("client_assertion %s is in the future", name)
		}
	}
	// RFC 7523 3, item 7: the jti may be used once.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clientAuth.jtis == nil {
		p.clientAuth.jtis = map[string]time.Time{}
	}
	for j, until := range p.clientAuth.jtis {
		if now.After(until) {
			delete(p.clientAuth.jtis, j)
		}
	}
	if _, spent := p.clientAuth.jtis[c.Jti]; spent {
		return fmt.Errorf("client_assertion jti was used before")
	}
	p.clientAuth.jtis[c.Jti] = exp
	return nil
}

func unixTime(n json.Number) (time.Time, error) {
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(int64(f), 0), nil
}

// audienceOK accepts an aud (a string or an array) naming the token
// endpoint, as OpenID Connect Core 9 recommends, the issuer, as RFC 7523
// 3 allows, or the introspection endpoint, where the client authenticates
// the same way.
func (p *Provider) audienceOK(raw json.RawMessage) bool {
	var auds []string
	var one string
	if json.Unmarshal(raw, &one) == nil {
		auds = []string{one}
	} else if json.Unmarshal(raw, &auds) != nil {
		return false
	}
	return slices.Contains(auds, p.endpoint("/token")) || slices.Contains(auds, p.issuer) || slices.Contains(auds, p.endpoint(introspectPath))
}

// verifyWithClientKey checks a private_key_jwt signature against the
// client's registered keys: those of ClientJWKS chosen by the assertion's
// kid (when it has one), and ClientKeys whatever the kid. A JWKS key with a
// certificate thumbprint (or certificate) also wants the assertion's x5t or
// x5t#S256 to name it, as Microsoft Entra ID does.
func (p *Provider) verifyWithClientKey(jws *jose.JSONWebSignature) ([]byte, error) {
	h := jws.Signatures[0].Header
	var lastErr error
	tried := 0
	for _, k := range p.cfg.ClientJWKS.Keys {
		if h.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		tried++
		if err := thumbprintsMatch(k, h); err != nil {
			lastErr = err
			continue
		}
		if payload, err := jws.Verify(k.Key); err == nil {
			return payload, nil
		}
	}
	for _, k := range p.cfg.ClientKeys {
		tried++
		if payload, err := jws.Verify(k); err == nil {
			return payload, nil
		}
	}
	switch {
	case tried == 0 && h.KeyID != "":
		return nil, fmt.Errorf("client_assertion kid %q names no registered key", h.KeyID)
	case tried == 0:
		return nil, fmt.Errorf("the client has no registered key")
	case lastErr != nil && tried == 1:
		return nil, lastErr
	}
	return nil, fmt.Errorf("client_assertion signature does not verify with a registered key")
}

// thumbprintsMatch checks the assertion's x5t and x5t#S256 headers against
// a registered key's certificate: at least one must be present, and those
// present must match.
func thumbprintsMatch(k jose.JSONWebKey, h jose.Header) error {
	s1, s256 := k.CertificateThumbprintSHA1, k.CertificateThumbprintSHA256
	if len(k.Certificates) > 0 {
		a, b := sha1.Sum(k.Certificates[0].Raw), sha256.Sum256(k.Certificates[0].Raw)
		s1, s256 = a[:], b[:]
	}
	if len(s1) == 0 && len(s256) == 0 {
		return nil
	}
	got1, _ := h.ExtraHeaders["x5t"].(string)
	got256, _ := h.ExtraHeaders["x5t#S256"].(string)
	if got1 == "" && got256 == "" {
		return fmt.Errorf("client_assertion has no x5t or x5t#S256 naming the registered certificate")
	}
	if (got1 != "" && got1 != base64.RawURLEncoding.EncodeToString(s1)) ||
		(got256 != "" && got256 != base64.RawURLEncoding.EncodeToString(s256)) {
		return fmt.Errorf("client_assertion x5t or x5t#S256 does not name the registered certificate")
	}
	return nil
}

// recordAssertion keeps the header and claims of an assertion as sent.
func (p *Provider) recordAssertion(raw string) {
	parts := strings.Split(raw, ".")
	decode := func(i int) map[string]any {
		if i >= len(parts) {
			return nil
		}
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			return nil
		}
		return m
	}
	h, c := decode(0), decode(1)
	p.mu.Lock()
	p.clientAuth.lastHeader, p.clientAuth.lastClaims = h, c
	p.mu.Unlock()
}
