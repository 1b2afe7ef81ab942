package oidcauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/oidcgate/caddy-oidc/internal/keyset"
	"github.com/oidcgate/caddy-oidc/internal/verify"
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
	signingAlgs  []string // the allowed ID and logout token algorithms; default RS256
	httpClient   *http.Client
	logger       *zap.Logger
	now          func() time.Time

	state atomic.Pointer[providerState]

	mu          sync.Mutex // serializes discovery attempts
	lastErr     error
	lastAttempt time.Time
}

// providerState is what discovery learned; it never changes afterwards. The
// key set fetches the provider's keys again when a token names a key it has
// not seen, so signing-key rotation is followed, at most once per
// keyset.DefaultRefetchInterval whatever tokens anyone sends.
type providerState struct {
	oauth2             oauth2.Config // without RedirectURL, which depends on the request
	keys               *keyset.Set
	verifier           *verify.Verifier
	endSessionEndpoint string
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
		JWKSURI            string `json:"jwks_uri"`
		EndSessionEndpoint string `json:"end_session_endpoint"`
	}
	if err := op.Claims(&meta); err != nil {
		return nil, fmt.Errorf("reading provider metadata: %v", err)
	}
	if meta.JWKSURI == "" {
		return nil, errors.New("the provider's metadata has no jwks_uri")
	}
	keys := keyset.New(meta.JWKSURI, p.httpClient, 0, p.logger)
	return &providerState{
		oauth2: oauth2.Config{
			ClientID:     p.clientID,
			ClientSecret: p.clientSecret,
			Endpoint:     op.Endpoint(),
			Scopes:       p.scopes,
		},
		keys: keys,
		verifier: verify.New(verify.Config{
			Issuer:     p.issuer,
			ClientID:   p.clientID,
			Algorithms: p.signingAlgs,
			Keys:       keys,
			Now:        p.now,
		}),
		endSessionEndpoint: meta.EndSessionEndpoint,
	}, nil
}
