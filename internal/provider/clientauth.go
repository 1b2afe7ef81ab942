package provider

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Client authentication methods at the token endpoint (OpenID Connect Core
// 9, RFC 7523).
const (
	ClientSecretBasic = "client_secret_basic"
	ClientSecretPost  = "client_secret_post"
	ClientSecretJWT   = "client_secret_jwt"
	PrivateKeyJWT     = "private_key_jwt"
	None              = "none"
)

// Methods are the client authentication methods there are, in the order
// they are preferred when the provider supports several the client can use.
var Methods = []string{ClientSecretBasic, ClientSecretPost, ClientSecretJWT, PrivateKeyJWT, None}

// assertionLifetime is how long a client assertion is valid (RFC 7523 3:
// exp is required; a short one limits the use of an intercepted one).
const assertionLifetime = time.Minute

// ClientAuth is how the client authenticates at the token endpoint.
type ClientAuth struct {
	// Method is one of Methods, or "" to choose the first the provider
	// supports among those the secret or key allow, basic first.
	Method string
	// Secret is the client secret (basic, post, client_secret_jwt).
	Secret string
	// Key signs private_key_jwt assertions: an RSA or ECDSA private key.
	Key crypto.Signer
	// KeyID, when set, is the assertion's kid header.
	KeyID string
	// Certificate, when set, is the Key's certificate; its thumbprints go
	// into the assertion's x5t and x5t#S256 headers, as Microsoft Entra ID
	// asks of certificate credentials.
	Certificate *x509.Certificate
	// AssertionAudience is the aud of client assertions: AudienceIssuer
	// for the issuer, or a URL; default the URL of the endpoint the
	// assertion is sent to (the token endpoint's, as OpenID Connect Core 9
	// recommends).
	AssertionAudience string
}

// AudienceIssuer as ClientAuth.AssertionAudience makes the issuer the aud
// of client assertions, as RFC 7523 3 allows and some providers (Zitadel)
// require.
const AudienceIssuer = "issuer"

// allowed lists the methods the configured secret or key make possible.
func (a ClientAuth) allowed() []string {
	var m []string
	if a.Secret != "" {
		m = append(m, ClientSecretBasic, ClientSecretPost)
		if len(a.Secret) >= 32 {
			m = append(m, ClientSecretJWT)
		}
	}
	if a.Key != nil {
		m = append(m, PrivateKeyJWT)
	}
	if a.Secret == "" && a.Key == nil {
		m = append(m, None)
	}
	return m
}

// Validate refuses a method the configuration cannot carry out.
func (a ClientAuth) Validate() error {
	if a.Method == "" {
		return nil
	}
	if !slices.Contains(Methods, a.Method) {
		return fmt.Errorf("client authentication %q: want one of %v", a.Method, Methods)
	}
	switch {
	case (a.Method == ClientSecretBasic || a.Method == ClientSecretPost) && a.Secret == "":
		return fmt.Errorf("client authentication %s needs a client secret", a.Method)
	case a.Method == ClientSecretJWT && len(a.Secret) < 32:
		return fmt.Errorf("client authentication %s needs a client secret of at least 32 bytes (RFC 7518 3.2)", a.Method)
	case a.Method == PrivateKeyJWT && a.Key == nil:
		return fmt.Errorf("client authentication %s needs a private key", a.Method)
	}
	return nil
}

// methodFor chooses the method for a provider that supports these (OpenID
// Connect Discovery: an absent list means client_secret_basic).
func (a ClientAuth) methodFor(supported []string) (string, error) {
	if a.Method != "" {
		return a.Method, nil
	}
	if len(supported) == 0 {
		supported = []string{ClientSecretBasic}
	}
	allowed := a.allowed()
	for _, m := range Methods {
		if slices.Contains(allowed, m) && slices.Contains(supported, m) {
			return m, nil
		}
	}
	if slices.Contains(allowed, None) {
		return None, nil // a public client; the provider decides
	}
	return "", fmt.Errorf("the provider supports client authentication %v, and the configuration allows %v", supported, allowed)
}

// introspectionMethod chooses the method for the introspection endpoint:
// the token endpoint's, unless the provider lists others there (Zitadel
// takes client_secret_basic and private_key_jwt, not client_secret_post);
// then the first of those the configuration allows.
func (a ClientAuth) introspectionMethod(tokenMethod string, supported []string) string {
	if len(supported) == 0 || slices.Contains(supported, tokenMethod) {
		return tokenMethod
	}
	allowed := a.allowed()
	for _, m := range Methods {
		if slices.Contains(allowed, m) && slices.Contains(supported, m) {
			return m
		}
	}
	return tokenMethod // none fits: the provider has the last word
}

// apply authenticates a request to endpoint (the token or introspection
// endpoint) of the provider issuer with method: it sets the Authorization
// header or adds to the form.
func (a ClientAuth) apply(method, clientID, issuer, endpoint string, form url.Values, header http.Header, now time.Time) error {
	switch method {
	case ClientSecretBasic:
		// RFC 6749 2.3.1: the credentials are form-encoded first.
		header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString(
			[]byte(url.QueryEscape(clientID)+":"+url.QueryEscape(a.Secret))))
		form.Del("client_secret")
	case ClientSecretPost:
		form.Set("client_id", clientID)
		form.Set("client_secret", a.Secret)
	case ClientSecretJWT, PrivateKeyJWT:
		assertion, err := a.assertion(method, clientID, a.audience(issuer, endpoint), now)
		if err != nil {
			return err
		}
		form.Del("client_secret")
		form.Set("client_id", clientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", assertion)
	case None:
		form.Set("client_id", clientID)
		form.Del("client_secret")
	default:
		return fmt.Errorf("unknown client authentication %q", method)
	}
	return nil
}

// audience is the aud of an assertion sent to endpoint.
func (a ClientAuth) audience(issuer, endpoint string) string {
	switch a.AssertionAudience {
	case "":
		return endpoint
	case AudienceIssuer:
		return issuer
	}
	return a.AssertionAudience
}

// assertion is a client assertion (RFC 7523 3, OpenID Connect Core 9): a
// JWT the client signs about itself, for aud, valid a minute.
func (a ClientAuth) assertion(method, clientID, aud string, now time.Time) (string, error) {
	claims, err := json.Marshal(map[string]any{
		"iss": clientID,
		"sub": clientID,
		"aud": aud,
		"jti": rand.Text(),
		"iat": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	var key jose.SigningKey
	switch method {
	case ClientSecretJWT:
		key = jose.SigningKey{Algorithm: jose.HS256, Key: []byte(a.Secret)}
	default:
		alg, err := algorithmFor(a.Key)
		if err != nil {
			return "", err
		}
		k := any(a.Key)
		if a.KeyID != "" {
			k = jose.JSONWebKey{Key: a.Key, KeyID: a.KeyID}
		}
		key = jose.SigningKey{Algorithm: alg, Key: k}
		if a.Certificate != nil {
			s1 := sha1.Sum(a.Certificate.Raw)
			s256 := sha256.Sum256(a.Certificate.Raw)
			opts = opts.WithHeader("x5t", base64.RawURLEncoding.EncodeToString(s1[:])).
				WithHeader("x5t#S256", base64.RawURLEncoding.EncodeToString(s256[:]))
		}
	}
	signer, err := jose.NewSigner(key, opts)
	if err != nil {
		return "", fmt.Errorf("client assertion: %v", err)
	}
	jws, err := signer.Sign(claims)
	if err != nil {
		return "", fmt.Errorf("client assertion: %v", err)
	}
	return jws.CompactSerialize()
}

// algorithmFor is the JWS algorithm of a private key: RS256 for RSA, and
// for ECDSA the one of its curve.
func algorithmFor(k crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch key := k.(type) {
	case *rsa.PrivateKey:
		return jose.RS256, nil
	case *ecdsa.PrivateKey:
		switch key.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	}
	return "", errors.New("the client key must be an RSA or ECDSA (P-256, P-384, P-521) private key")
}

// ParseKey reads a private key in PEM (PKCS #8, PKCS #1 or SEC 1), and a
// certificate if the PEM text holds one too.
func ParseKey(pemText []byte) (crypto.Signer, *x509.Certificate, error) {
	var key crypto.Signer
	var cert *x509.Certificate
	for rest := pemText; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("PKCS #8 key: %v", err)
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, nil, errors.New("the PKCS #8 key cannot sign")
			}
			key = s
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("PKCS #1 key: %v", err)
			}
			key = k
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("EC key: %v", err)
			}
			key = k
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("certificate: %v", err)
			}
			if cert == nil {
				cert = c
			}
		}
	}
	if key == nil {
		return nil, nil, errors.New("no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) found")
	}
	if _, err := algorithmFor(key); err != nil {
		return nil, nil, err
	}
	return key, cert, nil
}
