package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Tokens are a token endpoint's answer (RFC 6749 5.1).
type Tokens struct {
	AccessToken  string
	RefreshToken string // "" if none was issued
	IDToken      string // "" if none was issued
	Expiry       time.Time
	Scope        string
}

// TokenError is the token endpoint refusing a grant (RFC 6749 5.2): a
// code such as invalid_grant, which says nothing is wrong with the
// provider itself. Description is the provider's text.
type TokenError struct {
	Code        string
	Description string
	Status      int
}

// Unwrap makes a refusal with a server error (status 5xx) an
// ErrUnavailable too.
func (e *TokenError) Unwrap() error {
	if e.Status >= 500 {
		return ErrUnavailable
	}
	return nil
}

func (e *TokenError) Error() string {
	if e.Description == "" {
		return "the token endpoint answered " + e.Code
	}
	return "the token endpoint answered " + e.Code + ": " + e.Description
}

// AuthCodeURL is where a sign-in sends the browser: the authorization
// request with the state, the nonce and the PKCE challenge (S256) of the
// verifier, and extra parameters.
func (s *State) AuthCodeURL(redirectURI, state, nonce, verifier string, extra map[string]string) string {
	opts := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", nonce), oauth2.S256ChallengeOption(verifier)}
	for k, v := range extra {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	cfg := s.oauth2Config()
	cfg.RedirectURL = redirectURI
	return cfg.AuthCodeURL(state, opts...)
}

// Exchange redeems an authorization code (RFC 6749 4.1.3) with the PKCE
// verifier.
func (s *State) Exchange(ctx context.Context, code, verifier, redirectURI string) (*Tokens, error) {
	cfg := s.oauth2Config()
	cfg.RedirectURL = redirectURI
	tok, err := cfg.Exchange(s.clientContext(ctx), code, oauth2.VerifierOption(verifier))
	return tokensOf(tok, err)
}

// Refresh redeems a refresh token (RFC 6749 6).
func (s *State) Refresh(ctx context.Context, refreshToken string) (*Tokens, error) {
	cfg := s.oauth2Config()
	tok, err := cfg.TokenSource(s.clientContext(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	return tokensOf(tok, err)
}

func tokensOf(tok *oauth2.Token, err error) (*Tokens, error) {
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			status := 0
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			if re.ErrorCode != "" {
				return nil, &TokenError{Code: re.ErrorCode, Description: re.ErrorDescription, Status: status}
			}
			// Only the status and code: the raw body is the provider's
			// and may echo the request.
			return nil, fmt.Errorf("%w: the token endpoint answered %d %s", ErrUnavailable, status, re.ErrorCode)
		}
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	t := &Tokens{AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry}
	t.IDToken, _ = tok.Extra("id_token").(string)
	t.Scope, _ = tok.Extra("scope").(string)
	return t, nil
}

// oauth2Config is the client as x/oauth2 sees it. Client authentication
// other than the client secret in the header or the form is added by the
// HTTP client's transport (clientContext): x/oauth2 knows no client
// assertions.
func (s *State) oauth2Config() oauth2.Config {
	p := s.p
	cfg := oauth2.Config{
		ClientID: p.cfg.ClientID,
		Endpoint: oauth2.Endpoint{
			AuthURL:   s.Metadata.AuthorizationEndpoint,
			TokenURL:  s.Metadata.TokenEndpoint,
			AuthStyle: oauth2.AuthStyleInParams,
		},
		Scopes: p.cfg.Scopes,
	}
	if s.TokenAuth == ClientSecretBasic {
		cfg.ClientSecret = p.cfg.Auth.Secret
		cfg.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
	}
	return cfg
}

// clientContext carries the HTTP client that authenticates token requests
// with the chosen method.
func (s *State) clientContext(ctx context.Context) context.Context {
	p := s.p
	base := p.cfg.HTTPClient
	c := *base
	c.Transport = &clientAuthTransport{base: transportOf(base), state: s}
	return context.WithValue(ctx, oauth2.HTTPClient, &c)
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// clientAuthTransport authenticates the requests x/oauth2 sends to the
// token endpoint.
type clientAuthTransport struct {
	base  http.RoundTripper
	state *State
}

func (t *clientAuthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s := t.state
	if s.TokenAuth == ClientSecretBasic || req.Method != http.MethodPost || req.URL.String() != s.Metadata.TokenEndpoint {
		return t.base.RoundTrip(req)
	}
	body, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, err
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, err
	}
	r2 := req.Clone(req.Context())
	if err := s.p.cfg.Auth.apply(s.TokenAuth, s.p.cfg.ClientID, s.p.cfg.Issuer, s.Metadata.TokenEndpoint, form, r2.Header, s.p.cfg.Now()); err != nil {
		return nil, err
	}
	encoded := form.Encode()
	r2.Body = io.NopCloser(strings.NewReader(encoded))
	r2.ContentLength = int64(len(encoded))
	r2.Header.Set("Content-Length", strconv.Itoa(len(encoded)))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader([]byte(encoded))), nil }
	return t.base.RoundTrip(r2)
}

// Authenticate authenticates a request of the client's own to one of the
// provider's endpoints (introspection, say) the way it does at the token
// endpoint, adding to form.
func (s *State) Authenticate(endpoint string, form url.Values, header http.Header) error {
	return s.p.cfg.Auth.apply(s.TokenAuth, s.p.cfg.ClientID, s.p.cfg.Issuer, endpoint, form, header, s.p.cfg.Now())
}
