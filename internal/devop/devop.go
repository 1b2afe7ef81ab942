// Package devop runs a local OpenID Connect provider for development, demos
// and end-to-end tests.
//
// It is the zitadel example OpenID provider (a real authorization server with
// a username/password login form, discovery, JWKS, token, userinfo, revocation
// and end-session endpoints) with one confidential web client and one demo
// user. Everything lives in memory and the provider's token encryption key is
// a fixed, public value: never expose it beyond a developer's machine or a
// test.
//
// Six things differ from the plain example:
//
//   - The client authenticates the way Config.ClientAuthMethod says
//     (client_secret_basic, client_secret_post, or private_key_jwt with a
//     registered public key), and the token endpoint refuses any other way
//     with invalid_client. Server.LastTokenAuthMethod tells which method a
//     token request used.
//   - The ID token carries the profile and email claims (name, given_name,
//     family_name, preferred_username, email, email_verified) when those
//     scopes are requested, as most production providers do. The example
//     client would only put them behind the userinfo endpoint.
//   - Redirect and post-logout redirect URIs may be globs, so tests can
//     register "http://127.0.0.1:*/oauth2/callback" and listen on random
//     ports.
//   - The client's access tokens may be JWTs (Config.AccessTokenType), which
//     an API can verify with the provider's keys; opaque ones, the default,
//     it asks the introspection endpoint about, with the client's
//     credentials (client_secret_basic or private_key_jwt there).
//   - The demo user has a groups claim (DemoGroups) in the ID token, at the
//     userinfo endpoint, in JWT access tokens and in introspection answers,
//     as providers put group memberships there, so an example can gate an
//     area on a group.
//   - The login page shows the demo user's username and password above
//     the form, so that someone trying the demo knows what to type.
//
// Each Server has its own client table, so several may run in one process.
package devop

import (
	"context"
	"crypto"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// The demo user, the only account that can sign in.
const (
	DemoUsername = "demo"
	DemoPassword = "demo-password"

	// DemoSubject is the demo user's sub claim.
	DemoSubject = "demo-user"
	// DemoEmail is the demo user's email claim.
	DemoEmail = "demo@example.com"
	// DemoGivenName and DemoFamilyName make up the name claim, DemoName.
	DemoGivenName  = "Demo"
	DemoFamilyName = "User"
	DemoName       = DemoGivenName + " " + DemoFamilyName
)

// DemoGroups are the demo user's groups claim: a member of staff and of
// reporting, not of admins.
var DemoGroups = []string{"staff", "reporting"}

// groupsClaim is the name of the claim that carries DemoGroups.
const groupsClaim = "groups"

// Defaults for the zero Config.
const (
	DefaultAddr         = "127.0.0.1:0"
	DefaultClientID     = "caddy-demo"
	DefaultClientSecret = "demo-secret"
)

// DefaultRedirectURIs accept the default oidc_auth callback path on any
// loopback port.
var DefaultRedirectURIs = []string{
	"http://localhost:*/oauth2/callback",
	"http://127.0.0.1:*/oauth2/callback",
}

// DefaultPostLogoutRedirectURIs accept any single-segment path on any
// loopback port, and oidc_auth's logout path, where it checks the state
// the provider returns.
var DefaultPostLogoutRedirectURIs = []string{
	"http://localhost:*/*",
	"http://127.0.0.1:*/*",
	"http://localhost:*/oauth2/logout",
	"http://127.0.0.1:*/oauth2/logout",
}

// Config describes a provider. The zero value is usable.
type Config struct {
	// Addr is the TCP listen address, such as "127.0.0.1:0" (the default) or
	// "localhost:9998".
	Addr string

	// Issuer is the provider's issuer identifier, scheme://host[:port] with no
	// path and no trailing slash. It must name the listener: the provider
	// serves discovery at Issuer + "/.well-known/openid-configuration". The
	// default is "http://" + the listen host (localhost when it is empty or a
	// wildcard address) + ":" + the actual port.
	Issuer string

	// ClientID and ClientSecret identify the one confidential web client.
	// The defaults are DefaultClientID and DefaultClientSecret.
	ClientID, ClientSecret string

	// ClientAuthMethod is how the client authenticates at the token
	// endpoint: ClientSecretBasic (the default), ClientSecretPost or
	// PrivateKeyJWT.
	ClientAuthMethod string

	// ClientKeys are the client's registered public keys (RSA or ECDSA)
	// for PrivateKeyJWT, by key ID: a client assertion's kid picks its
	// key, and one without a kid is verified with the key under "". Like
	// Zitadel, the provider wants the issuer as the assertion's aud.
	ClientKeys map[string]crypto.PublicKey

	// RedirectURIs are the client's allowed redirect URIs. An entry with glob
	// metacharacters is matched as a doublestar glob, where "*" does not cross
	// "/": "http://127.0.0.1:*/oauth2/callback" accepts any port. The default
	// is DefaultRedirectURIs.
	RedirectURIs []string

	// PostLogoutRedirectURIs are the client's allowed post_logout_redirect_uri
	// values, matched like RedirectURIs (with path.Match for globs). The
	// default is DefaultPostLogoutRedirectURIs.
	PostLogoutRedirectURIs []string

	// AccessTokenType is the kind of access token the client is issued:
	// AccessTokenOpaque (the default) or AccessTokenJWT. Zitadel's JWT
	// access tokens have typ JWT (not RFC 9068's at+jwt), the client ID as
	// their aud, and iss, sub, client_id, iat, nbf, exp and jti.
	AccessTokenType string
}

// Access token types of Config.AccessTokenType.
const (
	AccessTokenOpaque = "opaque"
	AccessTokenJWT    = "jwt"
)

// Server is a running provider.
type Server struct {
	issuer    string
	auth      *clientAuth
	srv       *http.Server
	served    chan struct{}
	closeOnce sync.Once
}

// New starts a provider described by cfg and returns once it accepts
// connections.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.ClientID == "" {
		cfg.ClientID = DefaultClientID
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = DefaultClientSecret
	}
	if len(cfg.RedirectURIs) == 0 {
		cfg.RedirectURIs = DefaultRedirectURIs
	}
	if len(cfg.PostLogoutRedirectURIs) == 0 {
		cfg.PostLogoutRedirectURIs = DefaultPostLogoutRedirectURIs
	}
	if cfg.Issuer != "" {
		if err := checkIssuer(cfg.Issuer); err != nil {
			return nil, err
		}
	}
	auth, err := newClientAuth(cfg.ClientAuthMethod, cfg.ClientKeys)
	if err != nil {
		return nil, err
	}
	tokenType := op.AccessTokenTypeBearer
	switch cfg.AccessTokenType {
	case "", AccessTokenOpaque:
	case AccessTokenJWT:
		tokenType = op.AccessTokenTypeJWT
	default:
		return nil, fmt.Errorf("access token type %q: want %s or %s", cfg.AccessTokenType, AccessTokenOpaque, AccessTokenJWT)
	}

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", cfg.Addr, err)
	}
	issuer := cfg.Issuer
	if issuer == "" {
		issuer = defaultIssuer(cfg.Addr, ln.Addr())
	}

	// SetupServer ends the process with log.Fatal when the provider cannot be
	// built. With the fixed options it passes, only an invalid issuer can
	// cause that, and checkIssuer has ruled it out.
	client := storage.WebClient(cfg.ClientID, cfg.ClientSecret, cfg.RedirectURIs...)
	store := &devStorage{
		// A table of its own rather than storage.RegisterClients, which
		// fills one table shared by every provider in the process.
		Storage:    storage.NewStorageWithClients(demoUsers{}, map[string]*storage.Client{cfg.ClientID: client}),
		client:     client,
		auth:       auth,
		tokenType:  tokenType,
		redirects:  splitGlobs(cfg.RedirectURIs),
		postLogout: splitGlobs(cfg.PostLogoutRedirectURIs),
	}
	// A nil logger keeps the process-wide slog default untouched.
	router := exampleop.SetupServer(issuer, store, nil, false)

	s := &Server{
		issuer: issuer,
		auth:   auth,
		srv: &http.Server{
			Handler:           auth.enforce(showDemoAccount(router)),
			ReadHeaderTimeout: 10 * time.Second,
		},
		served: make(chan struct{}),
	}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return s, nil
}

// Issuer returns the provider's issuer identifier (no trailing slash).
func (s *Server) Issuer() string { return s.issuer }

// Close stops the provider, waiting briefly for requests in flight. It is safe
// to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			_ = s.srv.Close()
		}
		<-s.served
	})
}

// checkIssuer accepts only what the provider can serve: an http or https URL
// with a host and nothing after it, because discovery and the login UI are
// mounted at the server's root.
func checkIssuer(issuer string) error {
	if err := op.ValidateIssuer(issuer, true); err != nil {
		return fmt.Errorf("invalid issuer %q: %w", issuer, err)
	}
	u, _ := url.Parse(issuer) // ValidateIssuer has parsed it
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("invalid issuer %q: scheme must be http or https", issuer)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("invalid issuer %q: want scheme://host[:port] without path, trailing slash, query or user info", issuer)
	}
	return nil
}

// defaultIssuer names the listener by the host it was asked for, so that
// "localhost:9998" yields "http://localhost:9998" (what a browser and a
// Caddyfile use) rather than the resolved "127.0.0.1:9998".
func defaultIssuer(requested string, actual net.Addr) string {
	host, _, err := net.SplitHostPort(requested)
	if err != nil || host == "" {
		host = "localhost"
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(actual.String())
	return "http://" + net.JoinHostPort(host, port)
}

// uriPatterns holds registered URIs: exact ones are compared as strings, the
// others are matched as globs.
type uriPatterns struct {
	exact, globs []string
}

func splitGlobs(uris []string) uriPatterns {
	var p uriPatterns
	for _, u := range uris {
		if strings.ContainsAny(u, "*?[{") {
			p.globs = append(p.globs, u)
		} else {
			p.exact = append(p.exact, u)
		}
	}
	return p
}

// devStorage is the example storage with its client served as a devClient.
type devStorage struct {
	*storage.Storage
	client     *storage.Client
	auth       *clientAuth
	tokenType  op.AccessTokenType
	redirects  uriPatterns
	postLogout uriPatterns
}

// GetClientByClientID implements op.Storage.
func (s *devStorage) GetClientByClientID(ctx context.Context, clientID string) (op.Client, error) {
	if clientID != s.client.GetID() {
		return s.Storage.GetClientByClientID(ctx, clientID)
	}
	return devClient{Client: s.client, authMethod: s.auth.method, tokenType: s.tokenType, redirects: s.redirects, postLogout: s.postLogout}, nil
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest: the ID
// token's claims, with the demo user's groups.
func (s *devStorage) SetUserinfoFromRequest(ctx context.Context, userinfo *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, userinfo, token, scopes); err != nil {
		return err
	}
	addGroups(userinfo, token.GetSubject())
	return nil
}

// SetUserinfoFromToken implements op.Storage: the userinfo endpoint's
// answer, with the demo user's groups.
func (s *devStorage) SetUserinfoFromToken(ctx context.Context, userinfo *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, userinfo, tokenID, subject, origin); err != nil {
		return err
	}
	addGroups(userinfo, subject)
	return nil
}

// SetIntrospectionFromToken implements op.Storage: an introspection
// answer, with the demo user's groups when the token is active.
func (s *devStorage) SetIntrospectionFromToken(ctx context.Context, introspection *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	if err := s.Storage.SetIntrospectionFromToken(ctx, introspection, tokenID, subject, clientID); err != nil {
		return err
	}
	if subject == DemoSubject {
		if introspection.Claims == nil {
			introspection.Claims = map[string]any{}
		}
		introspection.Claims[groupsClaim] = DemoGroups
	}
	return nil
}

// GetPrivateClaimsFromScopes implements op.Storage: the claims of a JWT
// access token, with the demo user's groups.
func (s *devStorage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil || userID != DemoSubject {
		return claims, err
	}
	if claims == nil {
		claims = map[string]any{}
	}
	claims[groupsClaim] = DemoGroups
	return claims, nil
}

func addGroups(userinfo *oidc.UserInfo, subject string) {
	if subject == DemoSubject {
		userinfo.AppendClaims(groupsClaim, DemoGroups)
	}
}

// devClient is the web client with its redirect URIs (exact and globs) and
// ID-token claims policy set here rather than in the example.
type devClient struct {
	*storage.Client
	authMethod oidc.AuthMethod
	tokenType  op.AccessTokenType
	redirects  uriPatterns
	postLogout uriPatterns
}

// AuthMethod implements op.Client.
func (c devClient) AuthMethod() oidc.AuthMethod { return c.authMethod }

// AccessTokenType implements op.Client.
func (c devClient) AccessTokenType() op.AccessTokenType { return c.tokenType }

// RedirectURIs implements op.Client.
func (c devClient) RedirectURIs() []string { return c.redirects.exact }

// PostLogoutRedirectURIs implements op.Client.
func (c devClient) PostLogoutRedirectURIs() []string { return c.postLogout.exact }

// RedirectURIGlobs implements op.HasRedirectGlobs.
func (c devClient) RedirectURIGlobs() []string { return c.redirects.globs }

// PostLogoutRedirectURIGlobs implements op.HasRedirectGlobs.
func (c devClient) PostLogoutRedirectURIGlobs() []string { return c.postLogout.globs }

// IDTokenUserinfoClaimsAssertion implements op.Client: the profile and email
// claims go into the ID token even when an access token is issued alongside.
func (c devClient) IDTokenUserinfoClaimsAssertion() bool { return true }

// demoUsers is a storage.UserStore holding the demo user.
type demoUsers struct{}

var demoUser = &storage.User{
	ID:                DemoSubject,
	Username:          DemoUsername,
	Password:          DemoPassword,
	FirstName:         DemoGivenName,
	LastName:          DemoFamilyName,
	Email:             DemoEmail,
	EmailVerified:     true,
	PreferredLanguage: language.English,
}

func (demoUsers) GetUserByID(id string) *storage.User {
	if id == demoUser.ID {
		return demoUser
	}
	return nil
}

func (demoUsers) GetUserByUsername(username string) *storage.User {
	if username == demoUser.Username {
		return demoUser
	}
	return nil
}

// ExampleClientID names the example's JWT-profile service account.
func (demoUsers) ExampleClientID() string { return storage.ServiceUserID }
