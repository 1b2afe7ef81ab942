package oidcauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oidcgate/caddy-oidc/internal/metrics"
	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
)

// Sign-in failure reasons, the reason label of caddy_oidc_sign_ins_failed_total.
const (
	failState               = "state"
	failProviderError       = "provider_error"
	failNoCode              = "no_code"
	failTokenEndpoint       = "token_endpoint"
	failIDToken             = "id_token"
	failNonce               = "nonce"
	failIssuer              = "issuer"
	failUserinfo            = "userinfo"
	failRuleDenied          = "rule_denied"
	failProviderUnavailable = "provider_unavailable"
	failSessionStore        = "session_store"
)

// Logout kinds, the kind label of caddy_oidc_logouts_total.
const (
	logoutUser         = "user"
	logoutBackchannel  = "backchannel"
	logoutFrontchannel = "frontchannel"
	logoutExpired      = "expired"
)

// signedIn counts and announces a completed sign-in.
func (h *Handler) signedIn(s *Session) {
	metrics.SignInsCompleted.WithLabelValues(s.provider.metricName()).Inc()
	h.emitSession(eventSignedIn, s, "")
}

// loggedOut counts and announces the end of sessions of p's user sub
// (or provider session sid) of the given kind: the user's own sign-out
// and expiry are oidc_signed_out, the provider's logouts
// oidc_session_revoked.
func (h *Handler) loggedOut(p *oidcProvider, kind, sub, sid string) {
	metrics.Logouts.WithLabelValues(p.metricName(), kind).Inc()
	name := eventSignedOut
	if kind == logoutBackchannel || kind == logoutFrontchannel {
		name = eventSessionRevoked
	}
	h.emit(name, p, sub, sid, kind)
}

// signInFailed counts a callback that established no session. A callback
// whose login state is unknown belongs to no provider: its provider label
// is empty.
func signInFailed(p *oidcProvider, reason string) {
	name := ""
	if p != nil {
		name = p.metricName()
	}
	metrics.SignInsFailed.WithLabelValues(name, reason).Inc()
}

// providerTransport is the RoundTripper of p's requests: it measures each
// by endpoint.
func (h *Handler) providerTransport(p *oidcProvider) http.RoundTripper {
	return &measuredTransport{next: http.DefaultTransport, p: p}
}

type measuredTransport struct {
	next http.RoundTripper
	p    *oidcProvider
}

// endpointKey marks a request's context with the endpoint label its
// request is to get, for requests the URL does not tell apart.
type endpointKey struct{}

func withEndpoint(ctx context.Context, endpoint string) context.Context {
	return context.WithValue(ctx, endpointKey{}, endpoint)
}

func (t *measuredTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	endpoint, ok := req.Context().Value(endpointKey{}).(string)
	if !ok {
		endpoint = t.p.endpointOf(req.URL)
	}
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	name := t.p.metricName()
	metrics.ProviderDuration.WithLabelValues(name, endpoint).Observe(time.Since(start).Seconds())
	if err != nil || resp.StatusCode >= 500 {
		metrics.ProviderErrors.WithLabelValues(name, endpoint).Inc()
	}
	return resp, err
}

// endpointOf names the provider endpoint u is, by its discovery document:
// discovery, keys, token, userinfo, introspection or other.
func (p *oidcProvider) endpointOf(u *url.URL) string {
	if strings.HasSuffix(u.Path, "/.well-known/openid-configuration") {
		return "discovery"
	}
	st := p.op.Current()
	if st == nil {
		return "other"
	}
	at := u.Host + u.Path
	md := &st.Metadata
	for _, e := range [...]struct{ url, name string }{
		{md.TokenEndpoint, "token"},
		{md.JWKSURI, "keys"},
		{md.UserinfoEndpoint, "userinfo"},
		{md.IntrospectionEndpoint, "introspection"},
	} {
		if e.url != "" && sameEndpoint(e.url, at) {
			return e.name
		}
	}
	return "other"
}

// sameEndpoint reports whether the URL endpoint names host+path at.
func sameEndpoint(endpoint, at string) bool {
	_, rest, ok := strings.Cut(endpoint, "://")
	if !ok {
		return false
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest == at
}

// measuredRevocations times a session store's operations and counts its
// errors, by store name and operation.
type measuredRevocations struct {
	next sessionstore.Revocations
	name string
	// untimedChecks: the revocation checks and replay memory are in
	// memory (Caddy's storage keeps a copy there); timing them would cost
	// more than they do, on every request.
	untimedChecks bool
}

// measure wraps a store's or revocation list's operations.
func measure(backend sessionstore.Revocations, name string) sessionstore.Revocations {
	mr := measuredRevocations{next: backend, name: name, untimedChecks: name == "storage"}
	if st, ok := backend.(sessionstore.Store); ok {
		return &measuredStore{measuredRevocations: mr, store: st}
	}
	return &mr
}

// done records operation op, started at start, which ended with err.
func (m *measuredRevocations) done(op string, start time.Time, err error) {
	metrics.StoreDuration.WithLabelValues(m.name, op).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, sessionstore.ErrNotFound) {
		metrics.StoreErrors.WithLabelValues(m.name, op).Inc()
	}
}

// check records an untimed operation's error.
func (m *measuredRevocations) check(op string, err error) {
	if err != nil {
		metrics.StoreErrors.WithLabelValues(m.name, op).Inc()
	}
}

func (m *measuredRevocations) Revoke(ctx context.Context, sel sessionstore.Selector, at, until time.Time) error {
	start := time.Now()
	err := m.next.Revoke(ctx, sel, at, until)
	m.done("revoke", start, err)
	return err
}

func (m *measuredRevocations) Revoked(ctx context.Context, sel sessionstore.Selector, issuedAt time.Time) (bool, error) {
	if m.untimedChecks {
		ok, err := m.next.Revoked(ctx, sel, issuedAt)
		m.check("revoked", err)
		return ok, err
	}
	start := time.Now()
	ok, err := m.next.Revoked(ctx, sel, issuedAt)
	m.done("revoked", start, err)
	return ok, err
}

func (m *measuredRevocations) Remember(ctx context.Context, key string, until time.Time) (bool, error) {
	if m.untimedChecks {
		ok, err := m.next.Remember(ctx, key, until)
		m.check("remember", err)
		return ok, err
	}
	start := time.Now()
	ok, err := m.next.Remember(ctx, key, until)
	m.done("remember", start, err)
	return ok, err
}

func (m *measuredRevocations) Close() error { return m.next.Close() }

type measuredStore struct {
	measuredRevocations
	store sessionstore.Store
}

func (m *measuredStore) Get(ctx context.Context, id string) (sessionstore.Record, error) {
	start := time.Now()
	rec, err := m.store.Get(ctx, id)
	m.done("get", start, err)
	return rec, err
}

func (m *measuredStore) Reload(ctx context.Context, id string) (sessionstore.Record, error) {
	start := time.Now()
	rec, err := m.store.Reload(ctx, id)
	m.done("reload", start, err)
	return rec, err
}

func (m *measuredStore) Put(ctx context.Context, id string, rec sessionstore.Record) error {
	start := time.Now()
	err := m.store.Put(ctx, id, rec)
	m.done("put", start, err)
	return err
}

func (m *measuredStore) Replace(ctx context.Context, id string, old []byte, rec sessionstore.Record) (bool, error) {
	start := time.Now()
	ok, err := m.store.Replace(ctx, id, old, rec)
	m.done("replace", start, err)
	return ok, err
}

func (m *measuredStore) Delete(ctx context.Context, id string) error {
	start := time.Now()
	err := m.store.Delete(ctx, id)
	m.done("delete", start, err)
	return err
}

func (m *measuredStore) DeleteMatching(ctx context.Context, subject, sid string) (int, error) {
	start := time.Now()
	n, err := m.store.DeleteMatching(ctx, subject, sid)
	m.done("delete_matching", start, err)
	return n, err
}

func (m *measuredStore) TryLock(ctx context.Context, key string, lease time.Duration) (func(), bool, error) {
	start := time.Now()
	release, ok, err := m.store.TryLock(ctx, key, lease)
	m.done("lock", start, err)
	return release, ok, err
}

// registerMetrics puts the collectors in the config's registry, which
// Caddy's admin /metrics serves. A context of no config (a module
// provisioned on its own) has none.
func registerMetrics(reg prometheus.Registerer) error {
	return metrics.Register(reg)
}

// Interface guards
var (
	_ sessionstore.Store       = (*measuredStore)(nil)
	_ sessionstore.Revocations = (*measuredRevocations)(nil)
	_ http.RoundTripper        = (*measuredTransport)(nil)
)
