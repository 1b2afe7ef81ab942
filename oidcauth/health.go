package oidcauth

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/oidcgate/caddy-oidc/internal/sessionstore"
)

const (
	defaultHealthPath = "/oauth2/health"
	// healthCacheTTL is how long a health answer is reused: the endpoint
	// is public, and each check reaches the provider and the session
	// store.
	healthCacheTTL = time.Second
	// healthTimeout bounds each check.
	healthTimeout = 2 * time.Second
)

// Health states.
const (
	healthOK          = "ok"
	healthUnavailable = "unavailable"
)

// healthReport is the health endpoint's answer.
type healthReport struct {
	Status       string                    `json:"status"`
	Providers    map[string]*healthCheck   `json:"providers"`
	SessionStore *sessionStoreHealthReport `json:"session_store"`
}

type healthCheck struct {
	Status string `json:"status"`
	// Error is said only with health_details: it may name internal
	// addresses.
	Error string `json:"error,omitempty"`
}

type sessionStoreHealthReport struct {
	healthCheck
	Store string `json:"store"`
	// Invalidation is the Redis local cache's subscription: up, down or
	// off (no local cache).
	Invalidation string `json:"invalidation,omitempty"`
}

// healthCache keeps the last health answer for healthCacheTTL.
type healthCache struct {
	mu     sync.Mutex
	at     time.Time
	report *healthReport
}

// serveHealth answers 200 when every provider's discovery document can be
// read now and its keys are loaded, and the session store answers (with
// Redis's local cache on, its invalidation subscription is up too);
// else 503. For load balancers' health checks.
func (h *Handler) serveHealth(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return nil
	}
	rep := h.healthReport(r.Context())
	status := http.StatusOK
	if rep.Status != healthOK {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rep)
	return nil
}

// healthReport returns the cached report, or checks again.
func (h *Handler) healthReport(ctx context.Context) *healthReport {
	h.health.mu.Lock()
	defer h.health.mu.Unlock()
	if h.health.report != nil && time.Since(h.health.at) < healthCacheTTL {
		return h.health.report
	}
	// Not the request's context: a client that goes away must not make
	// the cached answer a failure.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), healthTimeout)
	defer cancel()
	rep := &healthReport{Status: healthOK, Providers: make(map[string]*healthCheck, len(h.providers))}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, p := range h.providers {
		wg.Go(func() {
			c := h.check(p.health(ctx))
			mu.Lock()
			rep.Providers[p.metricName()] = c
			mu.Unlock()
		})
	}
	store := &sessionStoreHealthReport{Store: backendName(h.revocations)}
	var err error
	if rs, ok := h.revocations.(*sessionstore.Redis); ok {
		store.Invalidation, err = rs.Health(ctx)
		if err == nil && store.Invalidation == sessionstore.CacheDown {
			err = errString("the invalidation subscription is down")
		}
	}
	store.healthCheck = *h.check(err)
	rep.SessionStore = store
	wg.Wait()
	for _, c := range rep.Providers {
		if c.Status != healthOK {
			rep.Status = healthUnavailable
		}
	}
	if store.Status != healthOK {
		rep.Status = healthUnavailable
	}
	if rep.Status != healthOK && (h.health.report == nil || h.health.report.Status == healthOK) {
		h.logger.Warn("health check failing", zap.Any("report", rep))
	}
	h.health.report, h.health.at = h.publicReport(rep), time.Now()
	return h.health.report
}

func (h *Handler) check(err error) *healthCheck {
	if err == nil {
		return &healthCheck{Status: healthOK}
	}
	return &healthCheck{Status: healthUnavailable, Error: err.Error()}
}

// publicReport is rep as the endpoint answers it: without the errors'
// text, which may name internal addresses, unless health_details is on.
func (h *Handler) publicReport(rep *healthReport) *healthReport {
	if h.HealthDetails {
		return rep
	}
	out := &healthReport{Status: rep.Status, Providers: make(map[string]*healthCheck, len(rep.Providers))}
	for name, c := range rep.Providers {
		out.Providers[name] = &healthCheck{Status: c.Status}
	}
	s := *rep.SessionStore
	s.Error = ""
	out.SessionStore = &s
	return out
}

// health checks p now: its discovery document can be read, and its keys
// are loaded.
func (p *oidcProvider) health(ctx context.Context) error {
	st, err := p.op.Get(ctx)
	if err != nil {
		return err
	}
	if err := st.Keys.Load(ctx); err != nil {
		return err
	}
	// Discovered once is not reachable now: read the document again.
	u := strings.TrimSuffix(p.op.Issuer(), "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(withEndpoint(ctx, "health"), http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errString("discovery answered " + resp.Status)
	}
	return nil
}

// backendName names a session store backend in metrics and the health
// report: memory, redis or storage.
func backendName(b sessionstore.Revocations) string {
	switch b.(type) {
	case *sessionstore.Redis:
		return "redis"
	case *sessionstore.StorageRevocations:
		return "storage"
	}
	return "memory"
}
