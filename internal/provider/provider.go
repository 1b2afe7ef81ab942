// Package provider talks to an OpenID provider on behalf of a relying
// party: discovery (repeated now and then, so that the provider's changes
// are followed without a reload), the token endpoint with the client's
// authentication (code exchange and refresh), and the userinfo endpoint.
// The tokens it gets are verified with package verify, against the key set
// of package keyset. It knows nothing of Caddy.
//
// A Provider is discovered lazily and in the background: a relying party
// starts, and serves what it can, while the provider is unreachable.
package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/keyset"
	"github.com/oidcgate/caddy-oidc/internal/verify"
)

// ErrUnavailable is wrapped by every error that means the provider could
// not be reached or discovered (yet), or answered with a server error:
// whoever needs it should answer 503 and keep what it has.
var ErrUnavailable = errors.New("identity provider unavailable")

// Defaults.
const (
	// RequestTimeout bounds every request to the provider.
	RequestTimeout = 10 * time.Second
	// DefaultRediscoveryInterval is how often a discovered provider's
	// metadata is read again.
	DefaultRediscoveryInterval = time.Hour
	// Discovery that fails is retried with exponential backoff between
	// these bounds.
	minDiscoveryBackoff = time.Second
	maxDiscoveryBackoff = 30 * time.Second
	maxDocumentSize     = 1 << 20
	// TenantPlaceholder stands for the tenant in a multi-tenant issuer
	// (Microsoft Entra ID's `/common/v2.0` documents its issuer as
	// `https://login.microsoftonline.com/{tenantid}/v2.0`).
	TenantPlaceholder = "{tenantid}"
)

// Config describes a provider and the client that talks to it.
type Config struct {
	// Issuer is the provider's issuer URL; discovery reads
	// Issuer/.well-known/openid-configuration.
	Issuer string
	// Tenants admits tokens of these tenants when the provider's metadata
	// names a multi-tenant issuer (with TenantPlaceholder); "*" admits
	// every tenant. A multi-tenant provider without Tenants is refused.
	Tenants []string
	// ClientID is the client's ID at the provider.
	ClientID string
	// Auth is how the client authenticates at the token endpoint.
	Auth ClientAuth
	// Scopes are requested at sign-in.
	Scopes []string
	// SigningAlgs are the algorithms ID tokens, logout tokens and signed
	// userinfo may be signed with (verify.Config.Algorithms).
	SigningAlgs []string
	// HTTPClient makes every request; default one with RequestTimeout.
	HTTPClient *http.Client
	// Logger gets discovery's and the key set's troubles; nil discards.
	Logger *zap.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
	// RediscoveryInterval is how often the metadata is read again once
	// known; default DefaultRediscoveryInterval.
	RediscoveryInterval time.Duration
	// IntrospectionTimeout bounds a call to the introspection endpoint;
	// default IntrospectionTimeout.
	IntrospectionTimeout time.Duration
}

// Metadata is what the provider's discovery document says (OpenID Connect
// Discovery 1.0, 3), as far as a relying party needs it.
type Metadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	IntrospectionEndpoint             string   `json:"introspection_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	IntrospectionAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	FrontchannelLogoutSupported       bool     `json:"frontchannel_logout_supported"`
	FrontchannelLogoutSessionRequired bool     `json:"frontchannel_logout_session_supported"`
	BackchannelLogoutSupported        bool     `json:"backchannel_logout_supported"`
}

// Provider is one OpenID provider, discovered in the background. It is
// safe for concurrent use.
type Provider struct {
	cfg    Config
	logger *zap.Logger

	state atomic.Pointer[State]

	mu          sync.Mutex // serializes discovery
	lastErr     error
	lastAttempt time.Time

	rediscover chan struct{} // a key-set miss asks for discovery again
	discovered chan struct{} // closed at the first successful discovery
	once       sync.Once
}

// New returns a Provider; it discovers nothing until Run or Get.
func New(cfg Config) *Provider {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: RequestTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RediscoveryInterval <= 0 {
		cfg.RediscoveryInterval = DefaultRediscoveryInterval
	}
	if cfg.IntrospectionTimeout <= 0 {
		cfg.IntrospectionTimeout = IntrospectionTimeout
	}
	cfg.Issuer = strings.TrimSpace(cfg.Issuer)
	return &Provider{
		cfg:        cfg,
		logger:     cfg.Logger,
		rediscover: make(chan struct{}, 1),
		discovered: make(chan struct{}),
	}
}

// Issuer is the configured issuer.
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// ClientID is the client's ID.
func (p *Provider) ClientID() string { return p.cfg.ClientID }

// Current returns what the last successful discovery learned, or nil.
func (p *Provider) Current() *State { return p.state.Load() }

// Get returns the discovered provider. If discovery has not succeeded yet,
// it makes an attempt, unless one has just failed: then it answers at
// once, so that an unreachable provider does not hold up every request.
func (p *Provider) Get(ctx context.Context) (*State, error) {
	if st := p.state.Load(); st != nil {
		return st, nil
	}
	return p.discover(ctx, false)
}

// Run discovers the provider, retrying with backoff until it succeeds, and
// then discovers it again every RediscoveryInterval and whenever a token
// names a key the provider's key set lacks (at most as often as the key set
// refetches), until ctx ends.
func (p *Provider) Run(ctx context.Context) {
	backoff := minDiscoveryBackoff
	for p.state.Load() == nil {
		if _, err := p.discover(ctx, false); err == nil {
			break
		} else if ctx.Err() == nil {
			p.logger.Warn("identity provider discovery failed; retrying",
				zap.String("issuer", p.cfg.Issuer), zap.Duration("retry_in", backoff), zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxDiscoveryBackoff)
	}
	t := time.NewTicker(p.cfg.RediscoveryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.rediscover:
		}
		if _, err := p.discover(ctx, true); err != nil && ctx.Err() == nil {
			// The metadata known so far stays in use.
			p.logger.Warn("reading the identity provider's metadata again failed; keeping what it said before",
				zap.String("issuer", p.cfg.Issuer), zap.Error(err))
		}
	}
}

// Discovered returns a channel closed once the provider has been
// discovered.
func (p *Provider) Discovered() <-chan struct{} { return p.discovered }

// discover reads the discovery document; with again, also when the
// provider was discovered before.
func (p *Provider) discover(ctx context.Context, again bool) (*State, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	prev := p.state.Load()
	if prev != nil && !again {
		return prev, nil
	}
	if prev == nil && p.lastErr != nil && p.cfg.Now().Sub(p.lastAttempt) < minDiscoveryBackoff {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, p.lastErr)
	}
	p.lastAttempt = p.cfg.Now()
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	md, err := p.fetchMetadata(ctx)
	if err != nil {
		p.lastErr = err
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	st, err := p.newState(md, prev)
	if err != nil {
		// A document that cannot be used is a failed attempt too: it is
		// not fetched again for every request in the meantime.
		p.lastErr = err
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	p.lastErr = nil
	p.state.Store(st)
	if prev == nil {
		p.logger.Info("identity provider discovered", zap.String("issuer", p.cfg.Issuer))
		p.once.Do(func() { close(p.discovered) })
	}
	return st, nil
}

// fetchMetadata GETs and checks the discovery document.
func (p *Provider) fetchMetadata(ctx context.Context) (*Metadata, error) {
	u := strings.TrimSuffix(p.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := p.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("discovery answered %s", resp.Status)
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("the discovery document is not JSON: %v", err)
	}
	// OpenID Connect Discovery 4.3: the issuer must be exactly the one the
	// document was looked up for, or tokens of another could pass.
	switch {
	case md.Issuer == p.cfg.Issuer:
	case strings.Contains(md.Issuer, TenantPlaceholder) && len(p.cfg.Tenants) > 0:
	case strings.Contains(md.Issuer, TenantPlaceholder):
		return nil, fmt.Errorf("the provider is multi-tenant (its issuer is %q): name the tenants to admit, or * for every tenant", md.Issuer)
	default:
		return nil, fmt.Errorf("the discovery document names issuer %q, not %q", md.Issuer, p.cfg.Issuer)
	}
	for name, v := range map[string]string{"authorization_endpoint": md.AuthorizationEndpoint, "token_endpoint": md.TokenEndpoint, "jwks_uri": md.JWKSURI} {
		if v == "" {
			return nil, fmt.Errorf("the discovery document has no %s", name)
		}
	}
	return &md, nil
}

// State is what one discovery learned. It does not change; a later
// discovery makes a new State.
type State struct {
	Metadata Metadata
	// Keys are the provider's signing keys.
	Keys *keyset.Set
	// Verifier checks the provider's tokens.
	Verifier *verify.Verifier
	// TokenAuth is the client authentication used at the token endpoint.
	TokenAuth string
	// IntrospectionAuth is the client authentication used at the
	// introspection endpoint.
	IntrospectionAuth string

	p *Provider
}

func (p *Provider) newState(md *Metadata, prev *State) (*State, error) {
	method, err := p.cfg.Auth.methodFor(md.TokenEndpointAuthMethodsSupported)
	if err != nil {
		return nil, err
	}
	keys := (*keyset.Set)(nil)
	if prev != nil && prev.Metadata.JWKSURI == md.JWKSURI {
		keys = prev.Keys // keep its keys and its refetch limit
	} else {
		keys = keyset.New(md.JWKSURI, p.cfg.HTTPClient, 0, p.logger)
		keys.OnRefetch(p.askRediscovery)
	}
	template := ""
	if strings.Contains(md.Issuer, TenantPlaceholder) {
		template = md.Issuer
	}
	return &State{
		Metadata:          *md,
		Keys:              keys,
		TokenAuth:         method,
		IntrospectionAuth: p.cfg.Auth.introspectionMethod(method, md.IntrospectionAuthMethodsSupported),
		Verifier: verify.New(verify.Config{
			Issuer:         p.cfg.Issuer,
			IssuerTemplate: template,
			Tenants:        p.cfg.Tenants,
			ClientID:       p.cfg.ClientID,
			Algorithms:     p.cfg.SigningAlgs,
			Keys:           keys,
			Now:            p.cfg.Now,
		}),
		p: p,
	}, nil
}

// askRediscovery makes Run discover the provider again soon: a token named
// a key the key set lacks, so the provider may have moved its keys.
func (p *Provider) askRediscovery() {
	select {
	case p.rediscover <- struct{}{}:
	default:
	}
}
