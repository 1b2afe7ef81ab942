package oidcauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
)

// Discovery is retried with exponential backoff between these bounds.
const (
	minDiscoveryBackoff = time.Second
	maxDiscoveryBackoff = 30 * time.Second
	// providerRequestTimeout bounds every request to the provider.
	providerRequestTimeout = 10 * time.Second
)

// errProviderUnavailable is wrapped by every error that means "the identity
// provider could not be reached or discovered (yet)": requests that need it
// get 503.
var errProviderUnavailable = errors.New("identity provider unavailable")

// provider discovers the OpenID provider lazily: Caddy starts, and existing
// sessions keep working, while the provider is unreachable. Discovery runs in
// the background with backoff until it succeeds; a request that needs the
// provider before then may trigger one more attempt itself.
type provider struct {
	issuer       string
	clientID     string
	clientSecret string
	scopes       []string
	signingAlgs  []string // configured allow-list; empty means the provider's own, minus "none"
	httpClient   *http.Client
	logger       *zap.Logger

	state atomic.Pointer[providerState]

	mu          sync.Mutex // serializes discovery attempts
	lastErr     error
	lastAttempt time.Time
}

// providerState is what discovery learned; it never changes afterwards. The
// key set inside the verifier fetches the provider's keys again when a token
// names a key it has not seen, so signing-key rotation is followed.
type providerState struct {
	oauth2             oauth2.Config // without RedirectURL, which depends on the request
	verifier           *oidc.IDTokenVerifier
	endSessionEndpoint string
	signingAlgs        []string
}

func (p *provider) ctx(parent context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(parent, oauth2.HTTPClient, p.httpClient), p.httpClient)
}

// run retries discovery in the background until it succeeds or ctx ends.
func (p *provider) run(ctx context.Context) {
	backoff := minDiscoveryBackoff
	for p.state.Load() == nil {
		if _, err := p.discover(ctx); err == nil {
			return
		} else if ctx.Err() == nil {
			p.logger.Warn("identity provider discovery failed; retrying",
				zap.String("issuer", p.issuer), zap.Duration("retry_in", backoff), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxDiscoveryBackoff)
	}
}

// get returns the discovered provider. If discovery has not succeeded yet,
// it waits for an attempt in progress or makes one, unless one has just
// failed: then it answers at once, so that an unreachable provider does not
// hold up every request.
func (p *provider) get(ctx context.Context) (*providerState, error) {
	if st := p.state.Load(); st != nil {
		return st, nil
	}
	return p.discover(ctx)
}

func (p *provider) discover(ctx context.Context) (*providerState, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.state.Load(); st != nil {
		return st, nil
	}
	if p.lastErr != nil && time.Since(p.lastAttempt) < minDiscoveryBackoff {
		return nil, fmt.Errorf("%w: %v", errProviderUnavailable, p.lastErr)
	}
	p.lastAttempt = time.Now()
	st, err := p.discoverOnce(ctx)
	if err != nil {
		p.lastErr = err
		return nil, fmt.Errorf("%w: %v", errProviderUnavailable, err)
	}
	p.lastErr = nil
	p.state.Store(st)
	p.logger.Info("identity provider discovered", zap.String("issuer", p.issuer))
	return st, nil
}

func (p *provider) discoverOnce(ctx context.Context) (*providerState, error) {
	ctx, cancel := context.WithTimeout(ctx, providerRequestTimeout)
	defer cancel()
	// go-oidc keeps only the HTTP client from this context for later key
	// fetches, not its deadline.
	op, err := oidc.NewProvider(p.ctx(ctx), p.issuer)
	if err != nil {
		return nil, err
	}
	var meta struct {
		EndSessionEndpoint string   `json:"end_session_endpoint"`
		SigningAlgs        []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("reading provider metadata: %v", err)
	}
	algs := p.signingAlgs
	if len(algs) == 0 {
		algs = allowedAlgs(meta.SigningAlgs)
	}
	if len(algs) == 0 {
		return nil, fmt.Errorf("provider supports no usable ID token signing algorithm (offers %v)", meta.SigningAlgs)
	}
	return &providerState{
		oauth2: oauth2.Config{
			ClientID:     p.clientID,
			ClientSecret: p.clientSecret,
			Endpoint:     op.Endpoint(),
			Scopes:       p.scopes,
		},
		verifier: op.VerifierContext(p.ctx(context.Background()), &oidc.Config{
			ClientID:             p.clientID,
			SupportedSigningAlgs: algs,
		}),
		endSessionEndpoint: meta.EndSessionEndpoint,
		signingAlgs:        algs,
	}, nil
}

// asymmetricAlgs are the ID token signature algorithms oidc_auth accepts.
// "none" and the HMAC algorithms (keyed with the client secret) are never
// accepted.
var asymmetricAlgs = []string{
	oidc.RS256, oidc.RS384, oidc.RS512,
	oidc.ES256, oidc.ES384, oidc.ES512,
	oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.EdDSA,
}

// allowedAlgs keeps the offered algorithms oidc_auth accepts; a provider that
// publishes no list is assumed to sign with RS256, the OpenID default.
func allowedAlgs(offered []string) []string {
	if len(offered) == 0 {
		return []string{oidc.RS256}
	}
	var algs []string
	for _, a := range offered {
		if slices.Contains(asymmetricAlgs, a) {
			algs = append(algs, a)
		}
	}
	return algs
}
