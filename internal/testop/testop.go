// Package testop is a small but real OpenID Connect provider for tests.
//
// It serves discovery, authorization (auto-approved, no login form), token
// (authorization_code with mandatory PKCE S256, refresh_token), JWKS,
// userinfo and end-session endpoints on a loopback HTTP server. Tests can
// make it misbehave on purpose (see [Misbehavior]) to check that a relying
// party rejects what the specifications tell it to reject.
//
// All signing is done with go-jose; the only token it assembles by hand is
// the unsigned "alg":"none" one, which go-jose deliberately cannot produce.
package testop

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Misbehavior selects a deliberate protocol violation. It affects tokens and
// responses produced after [Provider.SetMisbehavior] (or, for refreshes only,
// [Provider.SetRefreshMisbehavior]) is called.
type Misbehavior int

// The misbehaviours. Unless noted otherwise they apply to every ID token the
// token endpoint issues (both grants) and to [Provider.LogoutToken].
const (
	// MisbehaveNone makes the provider behave correctly.
	MisbehaveNone Misbehavior = iota
	// WrongNonce puts a nonce that differs from the authorization request's
	// into the ID token. In logout tokens it adds a nonce claim, which the
	// back-channel logout spec forbids.
	WrongNonce
	// WrongAudience issues tokens for another client.
	WrongAudience
	// WrongIssuer issues tokens whose iss is not the provider's issuer.
	WrongIssuer
	// BadSignature corrupts the signature bytes of correctly signed tokens.
	BadSignature
	// AlgNone issues unsigned tokens with header "alg":"none".
	AlgNone
	// Expired issues tokens whose exp lies an hour in the past.
	Expired
	// IssuedInFuture issues tokens whose iat lies an hour in the future.
	IssuedInFuture
	// MissingKid publishes two keys in the JWKS while the token header
	// carries no kid; OIDC Core 10.1 requires a kid in that case.
	MissingKid
	// UnknownKid signs with a key that the JWKS never publishes.
	UnknownKid
	// WrongAzp sets aud to the client plus another audience and azp to a
	// party other than the client (ID tokens only).
	WrongAzp
	// BadAtHash sets an at_hash that does not match the access token (ID
	// tokens only).
	BadAtHash
	// HS256Signed HMAC-signs tokens with the client secret, an algorithm the
	// provider does not advertise.
	HS256Signed
	// AccessDenied makes the authorization endpoint redirect back with
	// error=access_denied instead of a code.
	AccessDenied
	// NoIDToken omits id_token from token responses.
	NoIDToken
	// TokenEndpointError makes the token endpoint answer 500.
	TokenEndpointError
	// NoIat omits the iat claim; exp is still set relative to now.
	NoIat
	// SeveralAudiencesNoAzp sets aud to the client plus another audience
	// without an azp claim, which OIDC Core 3.1.3.7 step 4 lets a relying
	// party reject (ID tokens only).
	SeveralAudiencesNoAzp
	// OtherSubject issues ID tokens for a sub other than the grant's (ID
	// tokens only).
	OtherSubject
	// AzpOfOtherParty keeps the client as the only audience but sets azp to
	// another party (ID tokens only).
	AzpOfOtherParty
)

var misbehaviorNames = [...]string{
	MisbehaveNone:         "MisbehaveNone",
	WrongNonce:            "WrongNonce",
	WrongAudience:         "WrongAudience",
	WrongIssuer:           "WrongIssuer",
	BadSignature:          "BadSignature",
	AlgNone:               "AlgNone",
	Expired:               "Expired",
	IssuedInFuture:        "IssuedInFuture",
	MissingKid:            "MissingKid",
	UnknownKid:            "UnknownKid",
	WrongAzp:              "WrongAzp",
	BadAtHash:             "BadAtHash",
	HS256Signed:           "HS256Signed",
	AccessDenied:          "AccessDenied",
	NoIDToken:             "NoIDToken",
	TokenEndpointError:    "TokenEndpointError",
	NoIat:                 "NoIat",
	SeveralAudiencesNoAzp: "SeveralAudiencesNoAzp",
	OtherSubject:          "OtherSubject",
	AzpOfOtherParty:       "AzpOfOtherParty",
}

// String returns the constant's name, which makes subtest names readable.
func (m Misbehavior) String() string {
	if m >= 0 && int(m) < len(misbehaviorNames) {
		return misbehaviorNames[m]
	}
	return fmt.Sprintf("Misbehavior(%d)", int(m))
}

// Config configures a [Provider]. The zero value is usable.
type Config struct {
	// ClientID is the only client the provider knows. Default "test-client".
	ClientID string
	// ClientSecret authenticates the client at the token endpoint, via
	// client_secret_basic, client_secret_post or client_secret_jwt.
	// Default "test-secret".
	ClientSecret string
	// TokenAuthMethods are the client authentication methods the token
	// endpoint announces (token_endpoint_auth_methods_supported) and
	// accepts; a request using another is refused with invalid_client.
	// Default DefaultTokenAuthMethods.
	TokenAuthMethods []string
	// ClientKeys verify private_key_jwt assertions whatever their kid.
	ClientKeys []crypto.PublicKey
	// ClientJWKS verify private_key_jwt assertions too, chosen by the
	// assertion's kid when it has one; a key with a certificate (or
	// thumbprint) wants the assertion's x5t or x5t#S256 to name it.
	ClientJWKS jose.JSONWebKeySet
	// Subject is the user every authorization request is approved for.
	// Default "user-1".
	Subject string
	// Claims are merged over the default extra ID token claims (email
	// "alice@example.com", name "Alice Example", email_verified true). A key
	// mapped to nil removes that claim. Protocol claims (iss, sub, aud, exp,
	// iat, auth_time, nonce, at_hash, sid, azp) always win over these.
	Claims map[string]any
	// UserinfoClaims are merged over what the userinfo endpoint answers
	// besides sub, by default the ID token's email and name; a key mapped
	// to nil removes that claim. With Claims removing a claim from the ID
	// token and UserinfoClaims adding it, the claim is had at userinfo only,
	// as with Okta's thin ID tokens. See userinfo.go.
	UserinfoClaims map[string]any
	// MultiTenant makes the provider look like Microsoft Entra ID's
	// /common/v2.0: discovery names the issuer template
	// http://127.0.0.1:PORT/{tenantid}/v2.0 and tokens carry a tid claim and
	// their tenant's issuer. See tenants.go.
	MultiTenant bool
	// AccessTokenTTL is the expires_in of access tokens. Default 1h.
	AccessTokenTTL time.Duration
	// IDTokenPadding, if > 0, adds a "pad" claim so that ID tokens are
	// roughly this many bytes long, to exercise realistic cookie sizes.
	IDTokenPadding int
	// AccessTokenSize is the length of the opaque access tokens. Default 64.
	AccessTokenSize int
	// AccessTokenFormat is AccessTokenOpaque (the default) or
	// AccessTokenJWT (RFC 9068). See accesstoken.go.
	AccessTokenFormat string
	// AccessTokenAudience is the aud of JWT access tokens (and of the
	// introspection answers) when the authorization request names no
	// resource or audience. Default: the client ID.
	AccessTokenAudience []string
	// Addr is the listen address. Default "127.0.0.1:0". A fixed port lets a
	// test start the provider after a relying party was configured for it.
	Addr string
	// SigningAlgs is what discovery announces as
	// id_token_signing_alg_values_supported. Default ["RS256"]. It changes
	// nothing about how tokens are signed; announcing "none" or "HS256"
	// lets tests check that a relying party does not trust the announcement.
	SigningAlgs []string
	// IssuerPath puts the issuer, and every endpoint, below this path, as
	// the conformance suite's "/test/a/<alias>/" (a trailing slash is part
	// of the issuer; endpoints are <issuer>authorize, ... without a double
	// slash). Requests outside it answer 404. Not with MultiTenant.
	IssuerPath string
}

// Provider is a running test OpenID provider. All methods are safe for
// concurrent use.
type Provider struct {
	cfg    Config // immutable after New
	issuer string
	srv    *httptest.Server
	closer sync.Once
	closed chan struct{} // closed by Close, lets a held token request go

	mu             sync.Mutex
	misbehavior    Misbehavior
	onRefresh      Misbehavior // wins over misbehavior for refresh grants
	noIDOnRefresh  bool        // RefreshIDTokens(false)
	down           bool
	claims         map[string]any
	x              extras // userinfo, claim sources, tenants, discovery changes
	current        *signingKey
	published      []*signingKey // JWKS content, newest first
	decoy          *signingKey   // extra JWKS key while MissingKid is active
	rogue          *signingKey   // never published, for UnknownKid
	codes          map[string]*authCode
	refreshTokens  map[string]grant
	accessTokens   map[string]accessToken
	tokenCalls     int
	refreshCalls   int
	keyFetches     int
	discoveries    int
	lastAuthorize  url.Values
	lastEndSession url.Values
	lastTokenForm  url.Values
	lastTokenHdr   http.Header
	issued         []string // every token value handed out, for leak checks
	tokenTTL       time.Duration
	pause          *tokenPause // armed by PauseTokenEndpoint
	clientAuth     clientAuthRecord
	profile        *profileRules    // a provider's documented shape; see profiles.go
	at             accessTokenState // accesstoken.go, introspect.go
}

// grant is what an authorization (and every refresh of it) stands for.
type grant struct {
	clientID string
	subject  string
	scope    string
	sid      string
	nonce    string // of the sign-in; see TokenResponseShape.RepeatNonce
	authTime time.Time

	profileGrant // what a profile decided at authorization; see profiles.go
}

type authCode struct {
	grant
	redirectURI   string
	nonce         string
	codeChallenge string
	expires       time.Time
}

type accessToken struct {
	subject string
	scope   string
	expires time.Time

	audience string // of a JWT access token; "" for an opaque one
}

// tokenPause holds one token request; see [Provider.PauseTokenEndpoint].
type tokenPause struct {
	arrived chan struct{} // closed when the request arrives
	release chan struct{} // closed by resume
	once    sync.Once
}

func (tp *tokenPause) resume() { tp.once.Do(func() { close(tp.release) }) }

// codeTTL bounds how long an authorization code stays redeemable.
const codeTTL = 5 * time.Minute

// New starts a provider; it serves until [Provider.Close].
func New(cfg Config) (*Provider, error) {
	cfg.ClientID = orDefault(cfg.ClientID, "test-client")
	cfg.ClientSecret = orDefault(cfg.ClientSecret, "test-secret")
	cfg.Subject = orDefault(cfg.Subject, "user-1")
	cfg.Addr = orDefault(cfg.Addr, "127.0.0.1:0")
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = time.Hour
	}
	if cfg.AccessTokenSize <= 0 {
		cfg.AccessTokenSize = 64
	}
	if len(cfg.SigningAlgs) == 0 {
		cfg.SigningAlgs = []string{"RS256"}
	}
	cfg.SigningAlgs = slices.Clone(cfg.SigningAlgs) // the caller may reuse its slice
	cfg.TokenAuthMethods = defaultTokenAuthMethods(cfg.TokenAuthMethods)
	claims, err := mergeClaims(cfg.Claims)
	if err != nil {
		return nil, err
	}
	cfg.Claims = nil // the live copy is p.claims

	key, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("testop: listen: %w", err)
	}
	p := &Provider{
		cfg:           cfg,
		closed:        make(chan struct{}),
		tokenTTL:      cfg.AccessTokenTTL,
		issuer:        issuerFor(ln.Addr()),
		claims:        claims,
		current:       key,
		published:     []*signingKey{key},
		codes:         map[string]*authCode{},
		refreshTokens: map[string]grant{},
		accessTokens:  map[string]accessToken{},
	}
	if err := p.setUpAccessTokens(); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.handleDiscovery)
	mux.HandleFunc("/authorize", p.handleAuthorize)
	mux.HandleFunc("POST /token", p.handleToken)
	mux.HandleFunc("GET /keys", p.handleKeys)
	mux.HandleFunc("/userinfo", p.handleUserinfo)
	mux.HandleFunc("/end_session", p.handleEndSession)
	mux.HandleFunc("POST "+introspectPath, p.handleIntrospect)
	if err := p.extend(mux); err != nil {
		ln.Close()
		return nil, err
	}
	var handler http.Handler = p.middleware(mux)
	if cfg.IssuerPath == "/" { // an issuer with a trailing slash, as Auth0's
		p.issuer += "/"
	}
	if prefix := strings.TrimSuffix(cfg.IssuerPath, "/"); prefix != "" {
		p.issuer += "/" + strings.TrimPrefix(cfg.IssuerPath, "/")
		handler = http.StripPrefix("/"+strings.TrimPrefix(prefix, "/"), handler)
	}
	p.srv = &httptest.Server{Listener: ln, Config: &http.Server{Handler: handler}}
	p.srv.Start()
	return p, nil
}

// issuerFor turns the listener address into the issuer URL. A wildcard
// listen address is reachable through loopback, which is what tests use.
func issuerFor(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return "http://" + a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// mergeClaims applies user claims over the defaults. The JSON round trip
// deep-copies nested maps and slices so that later changes by the caller
// cannot race with token issuance; UseNumber keeps large integers exact.
func mergeClaims(extra map[string]any) (map[string]any, error) {
	b, err := json.Marshal(extra)
	if err != nil {
		return nil, fmt.Errorf("testop: claims are not JSON-encodable: %w", err)
	}
	var cp map[string]any
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if err := dec.Decode(&cp); err != nil {
		return nil, fmt.Errorf("testop: copying claims: %w", err)
	}
	out := map[string]any{
		"email":          "alice@example.com",
		"name":           "Alice Example",
		"email_verified": true,
	}
	for k, v := range cp {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out, nil
}

// Issuer returns the issuer URL, "http://127.0.0.1:PORT" without a trailing
// slash (with IssuerPath, followed by it); with MultiTenant, the one a
// relying party configures, "http://127.0.0.1:PORT/common/v2.0".
func (p *Provider) Issuer() string { return p.configuredIssuer() }

// endpoint is the URL of the provider's path (which starts with a slash):
// below the issuer, with exactly one slash between them.
func (p *Provider) endpoint(path string) string {
	return strings.TrimSuffix(p.issuer, "/") + path
}

// ClientID returns the configured (or default) client ID.
func (p *Provider) ClientID() string { return p.cfg.ClientID }

// ClientSecret returns the configured (or default) client secret.
func (p *Provider) ClientSecret() string { return p.cfg.ClientSecret }

// Close stops the server and waits for in-flight requests; a token request
// held by [Provider.PauseTokenEndpoint] is let go first. It is idempotent.
func (p *Provider) Close() {
	p.closer.Do(func() {
		close(p.closed)
		p.srv.Close()
	})
}

// SetMisbehavior selects the misbehaviour for subsequent tokens and
// responses; MisbehaveNone restores correct behaviour.
func (p *Provider) SetMisbehavior(m Misbehavior) {
	p.prepareKeys(m)
	p.mu.Lock()
	p.misbehavior = m
	p.mu.Unlock()
}

// SetRefreshMisbehavior selects a misbehaviour for the refresh_token grant
// only, so that a login succeeds and a later refresh misbehaves. For refresh
// grants it wins over [Provider.SetMisbehavior]; MisbehaveNone removes it,
// and refreshes follow SetMisbehavior again. Besides the ID token
// misbehaviours, NoIDToken and TokenEndpointError work here too. The JWKS is
// not per grant: with MissingKid it publishes the extra key all along.
func (p *Provider) SetRefreshMisbehavior(m Misbehavior) {
	p.prepareKeys(m)
	p.mu.Lock()
	p.onRefresh = m
	p.mu.Unlock()
}

// prepareKeys makes the extra key that m needs, if any. Errors cannot
// happen with crypto/rand; sign reports a missing key should they ever.
func (p *Provider) prepareKeys(m Misbehavior) {
	switch m {
	case MissingKid:
		_, _ = p.extraKey(&p.decoy)
	case UnknownKid:
		_, _ = p.extraKey(&p.rogue)
	}
}

// extraKey returns the key in slot (p.decoy or p.rogue), generating it on
// first use. RSA key generation is slow, so it runs outside the lock; if two
// callers race, the first key stored wins.
func (p *Provider) extraKey(slot **signingKey) (*signingKey, error) {
	p.mu.Lock()
	k := *slot
	p.mu.Unlock()
	if k != nil {
		return k, nil
	}
	k, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if *slot == nil {
		*slot = k
	}
	return *slot, nil
}

// RefreshIDTokens sets whether refresh_token grants answer with an ID token,
// as OIDC Core 12.2 leaves it to the provider. The default is on.
func (p *Provider) RefreshIDTokens(on bool) {
	p.mu.Lock()
	p.noIDOnRefresh = !on
	p.mu.Unlock()
}

// SetClaims replaces the extra ID token claims, with the same merge rules as
// [Config.Claims]. It affects tokens issued afterwards, including refreshes.
func (p *Provider) SetClaims(claims map[string]any) error {
	c, err := mergeClaims(claims)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.claims = c
	p.mu.Unlock()
	return nil
}

// RotateKeys switches to a new RSA signing key with a new kid. The JWKS
// publishes the new key and, if keepOld, the previously published ones.
func (p *Provider) RotateKeys(keepOld bool) {
	if p.rotateKeySet(keepOld) {
		return
	}
	key, err := newSigningKey()
	if err != nil {
		return // cannot happen with crypto/rand and a fixed key size
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = key
	if keepOld {
		p.published = append([]*signingKey{key}, p.published...)
	} else {
		p.published = []*signingKey{key}
	}
}

// SetDown makes every endpoint answer 503 while down is true.
func (p *Provider) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// TokenCalls returns the number of token endpoint requests of any grant,
// including those answered with an error, 503 or 500.
func (p *Provider) TokenCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tokenCalls
}

// KeyFetches returns the number of GET requests for the JWKS, including
// those answered 503 while down.
func (p *Provider) KeyFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keyFetches
}

// DiscoveryFetches returns the number of GET requests for the discovery
// document, including those answered 503 while down.
func (p *Provider) DiscoveryFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.discoveries
}

// SetAccessTokenTTL changes the lifetime of access tokens issued from now on.
func (p *Provider) SetAccessTokenTTL(d time.Duration) {
	p.mu.Lock()
	p.tokenTTL = d
	p.mu.Unlock()
}

// IssuedTokens returns every access, refresh and ID token the provider has
// issued, so tests can check that none of them leaks.
func (p *Provider) IssuedTokens() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.issued...)
}

// RefreshCalls returns the number of refresh_token grant requests.
func (p *Provider) RefreshCalls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refreshCalls
}

// LastAuthorizeRequest returns a copy of the parameters of the most recent
// authorization request, or nil if there was none.
func (p *Provider) LastAuthorizeRequest() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneValues(p.lastAuthorize)
}

// LastEndSessionRequest returns a copy of the parameters of the most recent
// end-session request, or nil if there was none.
func (p *Provider) LastEndSessionRequest() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneValues(p.lastEndSession)
}

// PauseTokenEndpoint makes the next token endpoint request wait, once it has
// been counted and recorded, until resume is called; arrived is closed when
// that request arrives. Everything else about the request (down, grant,
// misbehaviour) is decided after it resumes, so a test can change the
// provider, or land a logout at the relying party, while a refresh is in
// flight. Only that one request is held; further requests pass. resume may
// be called any number of times, also before the request arrives, which then
// passes without waiting. A later call replaces a pause no request has taken
// yet. The held request also goes on if its client gives up or the provider
// is closed.
func (p *Provider) PauseTokenEndpoint() (arrived <-chan struct{}, resume func()) {
	tp := &tokenPause{arrived: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	p.pause = tp
	p.mu.Unlock()
	return tp.arrived, tp.resume
}

// LastTokenRequest returns copies of the form body and the headers of the
// most recent token endpoint request, whatever its outcome, or nils if there
// was none.
func (p *Provider) LastTokenRequest() (form url.Values, header http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneValues(p.lastTokenForm), p.lastTokenHdr.Clone()
}

// RevokeRefreshTokens invalidates every refresh token issued so far; later
// refresh_token grants with them answer 400 invalid_grant. Logins after the
// call get fresh, valid refresh tokens.
func (p *Provider) RevokeRefreshTokens() {
	p.mu.Lock()
	clear(p.refreshTokens)
	p.mu.Unlock()
}

// ValidAccessToken reports whether tok was issued by this provider and has
// not expired.
func (p *Provider) ValidAccessToken(tok string) bool {
	_, ok := p.lookupAccessToken(tok)
	return ok
}

func (p *Provider) lookupAccessToken(tok string) (accessToken, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.accessTokens[tok]
	return at, ok && time.Now().Before(at.expires)
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// middleware counts token, JWKS and discovery requests, and records (and
// maybe holds) token requests, before the down check, so tests can see that
// a relying party did try to reach an unavailable provider.
func (p *Provider) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		p.logRequest(r)
		if r.Method == http.MethodGet {
			p.mu.Lock()
			switch {
			case r.URL.Path == p.keysPathLocked():
				p.keyFetches++
			case strings.HasSuffix(r.URL.Path, "/.well-known/openid-configuration"):
				p.discoveries++
			}
			p.mu.Unlock()
		}
		if r.URL.Path == "/token" {
			_ = r.ParseForm() // errors are reported by handleToken
			p.mu.Lock()
			p.tokenCalls++
			if r.PostForm.Get("grant_type") == "refresh_token" {
				p.refreshCalls++
			}
			p.lastTokenForm = cloneValues(r.PostForm)
			p.lastTokenHdr = r.Header.Clone()
			tp := p.pause
			p.pause = nil
			p.mu.Unlock()
			if tp != nil {
				close(tp.arrived)
				select {
				case <-tp.release:
				case <-r.Context().Done():
				case <-p.closed:
				}
			}
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			http.Error(w, "service unavailable", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (p *Provider) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	doc := map[string]any{
		"issuer":                                p.issuer,
		"authorization_endpoint":                p.endpoint("/authorize"),
		"token_endpoint":                        p.endpoint("/token"),
		"jwks_uri":                              p.endpoint("/keys"),
		"userinfo_endpoint":                     p.endpoint("/userinfo"),
		"end_session_endpoint":                  p.endpoint("/end_session"),
		"response_types_supported":              []string{"code"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": p.cfg.SigningAlgs,
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": p.cfg.TokenAuthMethods,
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"backchannel_logout_supported":          true,
		"backchannel_logout_session_supported":  true,
	}
	p.announceIntrospection(doc)
	writeJSON(w, http.StatusOK, p.changeDiscovery(r, doc))
}

func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	q := r.Form
	p.mu.Lock()
	p.lastAuthorize = cloneValues(q)
	m := p.misbehavior
	p.mu.Unlock()

	// RFC 6749 4.1.2.1: with an unknown client or a bad redirect_uri the
	// provider must not redirect, so those errors are shown to the "user".
	if q.Get("client_id") != p.cfg.ClientID {
		http.Error(w, "unknown client_id", http.StatusBadRequest)
		return
	}
	redirectURI := q.Get("redirect_uri")
	target, err := url.Parse(redirectURI)
	if err != nil || !target.IsAbs() || target.Host == "" || target.Fragment != "" {
		http.Error(w, "missing or invalid redirect_uri", http.StatusBadRequest)
		return
	}

	reply := target.Query()
	if state, ok := q["state"]; ok {
		reply.Set("state", state[0]) // echoed exactly; Encode escapes it
	}
	redirect := func() {
		target.RawQuery = reply.Encode()
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, target.String(), http.StatusFound)
	}
	fail := func(code, desc string) {
		reply.Set("error", code)
		reply.Set("error_description", desc)
		redirect()
	}
	switch {
	case q.Get("response_type") != "code":
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		fail("invalid_request", "PKCE with code_challenge_method=S256 is required")
		return
	case m == AccessDenied:
		// Checked after validation: a real provider asks the user only for
		// well-formed requests.
		fail("access_denied", "the user denied the request")
		return
	}

	code, sid := randomString(43), randomString(22)
	p.mu.Lock()
	p.rememberAudienceLocked(sid, q)
	p.codes[code] = &authCode{
		grant: grant{
			clientID: p.cfg.ClientID,
			subject:  p.cfg.Subject,
			scope:    q.Get("scope"),
			sid:      sid,
			authTime: time.Now(),
		},
		redirectURI:   redirectURI,
		nonce:         q.Get("nonce"),
		codeChallenge: q.Get("code_challenge"),
		expires:       time.Now().Add(codeTTL),
	}
	p.codes[code].profileGrant = p.profile.decide(q)
	p.mu.Unlock()
	reply.Set("code", code)
	p.addSessionState(reply)
	redirect()
}

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "malformed form body")
		return
	}
	refresh := r.PostForm.Get("grant_type") == "refresh_token"
	p.mu.Lock()
	m := p.misbehavior
	if refresh && p.onRefresh != MisbehaveNone {
		m = p.onRefresh
	}
	withIDToken := !refresh || !p.noIDOnRefresh
	p.mu.Unlock()
	if m == TokenEndpointError {
		oauthError(w, http.StatusInternalServerError, "server_error", "induced failure")
		return
	}
	if reason := p.authenticateClient(r); reason != "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="testop"`)
		oauthError(w, http.StatusUnauthorized, "invalid_client", reason)
		return
	}
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		p.codeGrant(w, r.PostForm, m)
	case "refresh_token":
		p.refreshGrant(w, r.PostForm, m, withIDToken)
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
	}
}

func (p *Provider) codeGrant(w http.ResponseWriter, form url.Values, m Misbehavior) {
	// Codes are single-use: remove it whatever the outcome of the checks.
	p.mu.Lock()
	c, ok := p.codes[form.Get("code")]
	delete(p.codes, form.Get("code"))
	p.mu.Unlock()
	switch {
	case !ok || time.Now().After(c.expires) || c.clientID != p.cfg.ClientID:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown, used or expired code")
	case form.Get("redirect_uri") != c.redirectURI:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "redirect_uri mismatch")
	case !validVerifier(form.Get("code_verifier")) || s256(form.Get("code_verifier")) != c.codeChallenge:
		oauthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verification failed")
	default:
		g := c.grant
		g.nonce = c.nonce
		p.issueTokens(w, g, c.nonce, c.scope, m, true, false)
	}
}

func (p *Provider) refreshGrant(w http.ResponseWriter, form url.Values, m Misbehavior, withIDToken bool) {
	rt := form.Get("refresh_token")
	p.mu.Lock()
	g, ok := p.refreshTokens[rt]
	if ok && !p.profile.keepsRefreshTokens() {
		delete(p.refreshTokens, rt) // rotation: the old token is spent
		p.profile.spendLocked(rt, g.sid)
	} else if !ok {
		p.profile.reusedLocked(p, rt)
	}
	p.mu.Unlock()
	if !ok || g.clientID != p.cfg.ClientID {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or revoked refresh token")
		return
	}
	// RFC 6749 6: a narrower scope may be requested, never a wider one.
	scope := g.scope
	if s := form.Get("scope"); s != "" {
		for _, want := range strings.Fields(s) {
			if !hasScope(g.scope, want) {
				oauthError(w, http.StatusBadRequest, "invalid_scope", "scope exceeds the original grant")
				return
			}
		}
		scope = s
	}
	p.issueTokens(w, g, p.refreshNonce(g), scope, m, withIDToken, true)
}

func hasScope(scope, want string) bool { return slices.Contains(strings.Fields(scope), want) }

// validVerifier checks RFC 7636 4.1: 43-128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for _, c := range v {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("-._~", c)) {
			return false
		}
	}
	return true
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// issueTokens answers a successful grant (a refresh if refresh) with
// misbehaviour m. The refresh token keeps the original grant (scope
// included) so refreshes can never widen it.
func (p *Provider) issueTokens(w http.ResponseWriter, g grant, nonce, scope string, m Misbehavior, withIDToken, refresh bool) {
	p.mu.Lock()
	ttl := p.tokenTTL
	p.mu.Unlock()
	access, err := p.newAccessToken(g, scope, ttl)
	if err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	refreshToken := randomString(43)
	withRefresh := p.profile.issuesRefreshToken(g, refresh)
	p.mu.Lock()
	p.accessTokens[access] = accessToken{subject: g.subject, scope: scope, expires: time.Now().Add(ttl), audience: g.audience}
	p.issued = append(p.issued, access)
	if withRefresh {
		p.refreshTokens[refreshToken] = g
		p.issued = append(p.issued, refreshToken)
	}
	p.mu.Unlock()

	resp := map[string]any{
		"access_token":  access,
		"token_type":    "Bearer",
		"expires_in":    int64(ttl / time.Second),
		"refresh_token": refreshToken,
		"scope":         scope,
	}
	if !withRefresh {
		delete(resp, "refresh_token")
	}
	p.shapeTokenResponse(resp)
	// Like real providers, only OpenID requests get an ID token.
	if hasScope(scope, "openid") && withIDToken && m != NoIDToken {
		idt, err := p.idToken(g, nonce, access, m, refresh)
		if err != nil {
			oauthError(w, http.StatusInternalServerError, "server_error", err.Error())
			return
		}
		resp["id_token"] = idt
		p.mu.Lock()
		p.issued = append(p.issued, idt)
		p.mu.Unlock()
	}
	p.recordTokenResponse(resp)
	writeJSON(w, http.StatusOK, resp)
}

func (p *Provider) handleKeys(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if r.URL.Path != p.keysPathLocked() { // moved: see MoveKeys
		p.mu.Unlock()
		http.NotFound(w, r)
		return
	}
	keys := slices.Clone(p.published)
	if (p.misbehavior == MissingKid || p.onRefresh == MissingKid) && p.decoy != nil {
		keys = append(keys, p.decoy)
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusOK, p.publishedKeySet(keys))
}

func (p *Provider) handleEndSession(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed request", http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.lastEndSession = cloneValues(r.Form)
	p.mu.Unlock()
	if p.endSessionForLogoutClient(w, r) {
		return
	}
	back := r.Form.Get("post_logout_redirect_uri")
	if back == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "signed out")
		return
	}
	target, err := url.Parse(back)
	if err != nil || !target.IsAbs() || target.Host == "" {
		http.Error(w, "invalid post_logout_redirect_uri", http.StatusBadRequest)
		return
	}
	http.Redirect(w, r, p.withReturnedState(target, r.Form), http.StatusFound)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // RFC 6749 5.1, harmless elsewhere
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	body := map[string]string{"error": code}
	if desc != "" {
		body["error_description"] = desc
	}
	writeJSON(w, status, body)
}
